package partition

import (
	"crypto/sha256"
	"fmt"
)

// Partition type GUIDs, from the UAPI Discoverable Partitions Specification.
const (
	TypeESP        = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EFI System Partition
	TypeRootX86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" // Linux root (x86-64)
	TypeRootARM64  = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" // Linux root (arm64)
	TypeBIOSBoot   = "21686148-6449-6E6F-744E-656564454649" // BIOS boot partition (GRUB core.img)

	// The types of a class's extra partitions (placed between the ESP and the root).
	TypeVar          = "4D21B016-B534-45C2-A9FB-5C16E091FD2D" // /var
	TypeVarTmp       = "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1" // /var/tmp
	TypeHome         = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" // /home
	TypeSrv          = "3B8F8425-20E0-4F3B-907F-1A25A76F98E8" // /srv
	TypeSwap         = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" // swap
	TypeLinuxGeneric = "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // any other Linux filesystem data
)

const (
	// MiB is the alignment of every partition.
	MiB = int64(1) << 20
	// SectorSize is the logical sector size of the images we write.
	SectorSize = 512
	// Head is the space before the first partition: protective MBR, GPT header and entries, padding.
	Head = MiB
	// Tail is the space after the last partition: backup GPT entries (16 KiB) and header, rounded to 1 MiB.
	Tail = MiB
)

// Partition is one entry of the table. Offsets and sizes are in bytes.
type Partition struct {
	Name   string // GPT partition name (UTF-16 in the table, at most 36 characters)
	Type   string // type GUID
	GUID   string // unique partition GUID
	Offset int64
	Size   int64
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Offset + p.Size }

// Layout is a whole disk: its size, GUID and partitions in table order.
type Layout struct {
	Size       int64
	GUID       string
	Partitions []Partition
}

// Spec asks for one partition: its size in bytes (rounded up to MiB); 0 for the last one means
// "the rest of the disk".
type Spec struct {
	Name string
	Type string
	GUID string
	Size int64
}

// AlignUp rounds n up to a multiple of MiB.
func AlignUp(n int64) int64 { return (n + MiB - 1) / MiB * MiB }

// Plan places the partitions one after another from Head, each aligned to 1 MiB. When diskSize is 0
// the disk is sized to fit them exactly (plus Tail); otherwise the partitions must fit and a final
// Size 0 partition takes what is left.
func Plan(diskSize int64, guid string, specs []Spec) (Layout, error) {
	if diskSize != 0 && diskSize%MiB != 0 {
		return Layout{}, fmt.Errorf("partition: disk size %d is not a whole number of MiB", diskSize)
	}
	l := Layout{GUID: guid}
	off := Head
	for i, s := range specs {
		size := AlignUp(s.Size)
		if size == 0 {
			if i != len(specs)-1 || diskSize == 0 {
				return Layout{}, fmt.Errorf("partition: %s has no size", s.Name)
			}
			size = diskSize - Tail - off
			if size < MiB {
				return Layout{}, fmt.Errorf("partition: no room left for %s: disk is %d MiB, partitions before it end at %d MiB",
					s.Name, diskSize/MiB, off/MiB)
			}
		}
		l.Partitions = append(l.Partitions, Partition{Name: s.Name, Type: s.Type, GUID: s.GUID, Offset: off, Size: size})
		off += size
	}
	if diskSize == 0 {
		diskSize = off + Tail
	}
	if off+Tail > diskSize {
		return Layout{}, fmt.Errorf("partition: partitions need %d MiB, disk is %d MiB", (off+Tail)/MiB, diskSize/MiB)
	}
	l.Size = diskSize
	return l, nil
}

// DeriveGUID makes a GUID from a seed and a purpose label: SHA-256(seed ‖ 0 ‖ label), first 16
// bytes, with the RFC 4122 version (4) and variant bits set, as systemd-repart does for the GUIDs it
// derives from its seed. The result is upper-case, as GPT tools print GUIDs.
func DeriveGUID(seed []byte, label string) string {
	b := DeriveUUID(seed, label)
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// DeriveUUID is DeriveGUID as 16 bytes in the order the UUID string is written.
func DeriveUUID(seed []byte, label string) [16]byte {
	h := sha256.New()
	h.Write(seed)
	h.Write([]byte{0})
	h.Write([]byte(label))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x40 // version 4 (RFC 4122 §4.1.3)
	b[8] = b[8]&0x3f | 0x80 // variant 10 (RFC 4122 §4.1.1)
	return b
}
