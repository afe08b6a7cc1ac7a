package inspect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

var le = binary.LittleEndian

// table is a parsed partition table.
type table struct {
	kind  string // "gpt", "mbr", "none"
	guid  string
	parts []Partition
	warns []string
}

// readAt reads exactly len(p) bytes at off of r (a disk of the given size); what names the structure.
func readAt(r io.ReaderAt, size int64, p []byte, off int64, what string) error {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return fmt.Errorf("%s: bytes [%d, +%d) lie outside the %d-byte disk", what, off, len(p), size)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: reading %d bytes at %d: %w", what, len(p), off, err)
}

// guidString formats a GUID stored in the GPT's mixed-endian form (UEFI spec, Appendix A: the first
// three fields little-endian) as upper-case text, as partition.DeriveGUID and sgdisk print it.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}

const (
	maxGPTEntryBytes = 1 << 20 // partition entry array read whole (the usual one is 16 KiB)
	gptSig           = "EFI PART"
)

// readTable finds a GPT (512- or 4096-byte sectors; the backup header when the primary is damaged),
// else an MBR, else nothing.
func readTable(r io.ReaderAt, size int64) (table, error) {
	mbr := make([]byte, 512)
	if size < 512 {
		return table{kind: "none"}, nil
	}
	if err := readAt(r, size, mbr, 0, "MBR"); err != nil {
		return table{}, err
	}
	var warns []string
	for _, ss := range []int64{512, 4096} {
		if size < 2*ss {
			continue
		}
		t, err := readGPT(r, size, ss, ss)
		if err == nil {
			return t, nil
		}
		if err == errNoGPT {
			continue
		}
		// Primary damaged: try the backup header in the last sector.
		bt, berr := readGPT(r, size, ss, size/ss*ss-ss)
		if berr == nil {
			bt.warns = append(bt.warns, fmt.Sprintf("primary GPT unusable (%v); read the backup header", err))
			return bt, nil
		}
		return table{}, err
	}
	// Master boot record: signature 0x55AA at 510, four 16-byte entries from 446 (type at +4, first
	// LBA at +8, sector count at +12).
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return table{kind: "none", warns: warns}, nil
	}
	t := table{kind: "mbr", warns: warns}
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		typ := e[4]
		if typ == 0 {
			continue
		}
		if typ == 0xEE {
			return table{}, fmt.Errorf("MBR entry %d at byte %d is a GPT protective entry (type 0xEE), but no valid GPT header was found at LBA 1", i+1, 446+16*i)
		}
		start, count := int64(le.Uint32(e[8:])), int64(le.Uint32(e[12:]))
		t.parts = append(t.parts, Partition{Number: i + 1, TypeGUID: fmt.Sprintf("0x%02X", typ), Type: mbrTypeName(typ),
			Offset: start * 512, Size: count * 512})
	}
	if len(t.parts) == 0 {
		t.kind = "none"
	}
	return t, nil
}

var errNoGPT = fmt.Errorf("no GPT signature")

// readGPT reads the GPT header at byte hdrOff with sector size ss (UEFI 2.10 §5.3.2, "GPT Header":
// Signature 0, Revision 8, HeaderSize 12, HeaderCRC32 16, MyLBA 24, AlternateLBA 32, FirstUsableLBA 40,
// LastUsableLBA 48, DiskGUID 56, PartitionEntryLBA 72, NumberOfPartitionEntries 80,
// SizeOfPartitionEntry 84, PartitionEntryArrayCRC32 88) and its entry array.
func readGPT(r io.ReaderAt, size, ss, hdrOff int64) (table, error) {
	h := make([]byte, 512)
	if err := readAt(r, size, h, hdrOff, "GPT header"); err != nil {
		return table{}, err
	}
	if string(h[0:8]) != gptSig {
		if hdrOff == ss {
			return table{}, errNoGPT
		}
		return table{}, fmt.Errorf("GPT header at byte %d: signature %q, want %q", hdrOff, h[0:8], gptSig)
	}
	hsize := le.Uint32(h[12:])
	if hsize < 92 || hsize > 512 {
		return table{}, fmt.Errorf("GPT header at byte %d: HeaderSize %d (at byte %d) not in [92, 512]", hdrOff, hsize, hdrOff+12)
	}
	want := le.Uint32(h[16:])
	c := bytes.Clone(h[:hsize])
	clear(c[16:20])
	if got := crc32.ChecksumIEEE(c); got != want {
		return table{}, fmt.Errorf("GPT header at byte %d: HeaderCRC32 %#08x (at byte %d), computed %#08x", hdrOff, want, hdrOff+16, got)
	}
	entLBA, n, esize := int64(le.Uint64(h[72:])), int64(le.Uint32(h[80:])), int64(le.Uint32(h[84:]))
	// Each bound is checked alone before n*esize is formed: both are up to 2^32-1, and their
	// product would wrap.
	if esize < 128 || esize%8 != 0 || esize > maxGPTEntryBytes || n > maxGPTEntryBytes/esize {
		return table{}, fmt.Errorf("GPT header at byte %d: %d entries of %d bytes (at bytes %d, %d): want entries of 128 bytes or a multiple of 8 beyond, at most %d bytes in all",
			hdrOff, n, esize, hdrOff+80, hdrOff+84, maxGPTEntryBytes)
	}
	if entLBA < 0 || entLBA > size/ss {
		return table{}, fmt.Errorf("GPT header at byte %d: PartitionEntryLBA %d (at byte %d) beyond the %d-byte disk", hdrOff, entLBA, hdrOff+72, size)
	}
	arr := make([]byte, n*esize)
	if err := readAt(r, size, arr, entLBA*ss, "GPT partition entries"); err != nil {
		return table{}, err
	}
	if want, got := le.Uint32(h[88:]), crc32.ChecksumIEEE(arr); got != want {
		return table{}, fmt.Errorf("GPT header at byte %d: PartitionEntryArrayCRC32 %#08x (at byte %d), computed %#08x over the %d entries at byte %d",
			hdrOff, want, hdrOff+88, got, n, entLBA*ss)
	}
	t := table{kind: "gpt", guid: guidString(h[56:72])}
	// Entries (UEFI 2.10 §5.3.3, "GPT Partition Entry Array"): PartitionTypeGUID 0, UniquePartitionGUID
	// 16, StartingLBA 32, EndingLBA 40 (inclusive), Attributes 48, PartitionName 56 (36 UTF-16LE units).
	for i := int64(0); i < n; i++ {
		e := arr[i*esize : (i+1)*esize]
		if bytes.Equal(e[0:16], make([]byte, 16)) {
			continue // unused entry
		}
		first, last := le.Uint64(e[32:]), le.Uint64(e[40:])
		if last < first || last >= uint64(size/ss) {
			return table{}, fmt.Errorf("GPT entry %d at byte %d: LBAs %d..%d outside the %d-sector disk", i+1, entLBA*ss+i*esize, first, last, size/ss)
		}
		u := make([]uint16, 36)
		for k := range u {
			u[k] = le.Uint16(e[56+2*k:])
		}
		name := string(utf16.Decode(u))
		if k := strings.IndexByte(name, 0); k >= 0 {
			name = name[:k]
		}
		typ := guidString(e[0:16])
		t.parts = append(t.parts, Partition{Number: int(i + 1), Name: name, TypeGUID: typ, Type: typeName(typ),
			GUID: guidString(e[16:32]), Offset: int64(first) * ss, Size: int64(last-first+1) * ss})
	}
	return t, nil
}

func mbrTypeName(t byte) string {
	switch t {
	case 0x83:
		return "linux-generic"
	case 0x82:
		return "swap"
	case 0xEF:
		return "esp"
	case 0x0B, 0x0C:
		return "fat32"
	case 0x06, 0x0E:
		return "fat16"
	case 0x07:
		return "ntfs-exfat"
	case 0x05, 0x0F, 0x85:
		return "extended"
	case 0x8E:
		return "lvm"
	case 0xFD:
		return "raid"
	}
	return ""
}
