package partition

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// MBR partition type bytes for the partitions imgfab makes.
const (
	MBRTypeESP      = 0xEF // EFI System Partition on an MBR disk (UEFI spec §5.2.2)
	MBRTypeFAT32LBA = 0x0C // FAT32 with LBA addressing
	MBRTypeLinux    = 0x83 // Linux native
	MBRTypeSwap     = 0x82 // Linux swap
)

// MBR layout facts, from the UEFI spec §5.2.1 "Legacy Master Boot Record" (Table 5-1, 5-2).
const (
	mbrSignatureOff = 440     // UniqueMBRDiskSignature, u32 LE
	mbrTableOff     = 446     // PartitionRecord[4], 16 bytes each
	mbrEntrySize    = 16      // BootIndicator, StartingCHS[3], OSType, EndingCHS[3], StartingLBA u32, SizeInLBA u32
	mbrBootSigOff   = 510     // 0x55 0xAA
	mbrMaxEntries   = 4       // primary partitions only
	mbrBootable     = 0x80    // BootIndicator of the active partition
	mbrMaxLBA       = 1 << 32 // StartingLBA and SizeInLBA are u32
)

// MBRType maps a GPT type GUID of this package to the MBR type byte used for it.
func MBRType(typeGUID string) (byte, error) {
	switch typeGUID {
	case TypeESP:
		return MBRTypeESP, nil
	case TypeRootX86_64, TypeRootARM64, TypeVar, TypeVarTmp, TypeHome, TypeSrv, TypeLinuxGeneric:
		return MBRTypeLinux, nil
	case TypeSwap:
		return MBRTypeSwap, nil
	}
	return 0, fmt.Errorf("partition: type %s has no MBR equivalent here", typeGUID)
}

// DiskSignature derives the MBR disk signature from a seed like DeriveGUID does: the first four
// bytes of SHA-256(seed ‖ 0 ‖ "mbr-disk-signature"), little-endian; never 0 (0 means "none" to
// some tools, and the kernel's PARTUUID would not be unique).
func DiskSignature(seed []byte) uint32 { return deriveU32(seed, "mbr-disk-signature") }

// FATSerial derives the volume serial number of the ESP's FAT filesystem (its UUID as Linux shows
// it, XXXX-XXXX) the same way, with the label "fat-volume-serial"; never 0.
func FATSerial(seed []byte) uint32 { return deriveU32(seed, "fat-volume-serial") }

// deriveU32 is the first non-zero little-endian u32 of SHA-256(seed ‖ 0 ‖ label), else 1.
func deriveU32(seed []byte, label string) uint32 {
	h := sha256.New()
	h.Write(seed)
	h.Write([]byte{0})
	h.Write([]byte(label))
	sum := h.Sum(nil)
	for i := 0; i+4 <= len(sum); i += 4 {
		if s := binary.LittleEndian.Uint32(sum[i:]); s != 0 {
			return s
		}
	}
	return 1
}

// MBRPartUUID is the kernel's PARTUUID of partition n (1-based) of an MBR disk with signature sig,
// for root=PARTUUID=: "ssssssss-nn" in lower-case hex (Linux block/partitions/msdos.c, "%08x-%02x").
func MBRPartUUID(sig uint32, n int) string { return fmt.Sprintf("%08x-%02x", sig, n) }

// WriteMBR writes an MBR partition table for l into sector 0 of w: the disk signature (bytes
// 440–443), bytes 444–445 zero, up to four primary entries (LBA; CHS of the 255-head 63-sector
// geometry, or FE FF FF past cylinder 1023) and 0x55AA. The partition at index bootable (0-based;
// −1 for none) gets the active flag. Bytes 0–439 (boot code) are not written. Partition types come
// from MBRType. l.Size must stay within 2 TiB (u32 sector numbers).
func WriteMBR(w io.WriterAt, l Layout, sig uint32, bootable int) error {
	if len(l.Partitions) > mbrMaxEntries {
		return fmt.Errorf("writing MBR: %d partitions, an MBR holds %d", len(l.Partitions), mbrMaxEntries)
	}
	if l.Size/SectorSize > mbrMaxLBA {
		return fmt.Errorf("writing MBR: disk is %d MiB, an MBR addresses at most %d MiB", l.Size/MiB, int64(mbrMaxLBA)*SectorSize/MiB)
	}
	if sig == 0 {
		return fmt.Errorf("writing MBR: disk signature 0")
	}
	if bootable >= len(l.Partitions) {
		return fmt.Errorf("writing MBR: bootable partition %d of %d", bootable+1, len(l.Partitions))
	}
	var b [SectorSize - mbrSignatureOff]byte // bytes 440–511 of sector 0
	binary.LittleEndian.PutUint32(b[0:], sig)
	for i, p := range l.Partitions {
		typ, err := MBRType(p.Type)
		if err != nil {
			return fmt.Errorf("writing MBR: partition %d (%s): %w", i+1, p.Name, err)
		}
		if p.Offset%SectorSize != 0 || p.Size%SectorSize != 0 || p.Size <= 0 || p.Offset < SectorSize {
			return fmt.Errorf("writing MBR: partition %d (%s) at %d size %d is not sector-aligned", i+1, p.Name, p.Offset, p.Size)
		}
		if p.End() > l.Size {
			return fmt.Errorf("writing MBR: partition %d (%s) ends at %d, past the disk's %d bytes", i+1, p.Name, p.End(), l.Size)
		}
		start, n := p.Offset/SectorSize, p.Size/SectorSize
		e := b[mbrTableOff-mbrSignatureOff+i*mbrEntrySize:][:mbrEntrySize]
		if i == bootable {
			e[0] = mbrBootable
		}
		copy(e[1:4], chs(start))
		e[4] = typ
		copy(e[5:8], chs(start+n-1))
		binary.LittleEndian.PutUint32(e[8:], uint32(start))
		binary.LittleEndian.PutUint32(e[12:], uint32(n))
	}
	b[mbrBootSigOff-mbrSignatureOff] = 0x55
	b[mbrBootSigOff-mbrSignatureOff+1] = 0xAA
	if _, err := w.WriteAt(b[:], mbrSignatureOff); err != nil {
		return fmt.Errorf("writing MBR: %w", err)
	}
	return nil
}

// chs encodes lba as a 3-byte CHS address (head; sector | cylinder bits 8–9 << 6; cylinder bits
// 0–7) in the 255-head, 63-sector geometry; past cylinder 1023 it is FE FF FF, the usual "use LBA"
// value.
func chs(lba int64) []byte {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	if c > 1023 {
		return []byte{0xFE, 0xFF, 0xFF}
	}
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}
