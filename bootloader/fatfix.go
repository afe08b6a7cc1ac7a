package bootloader

import (
	"encoding/binary"
	"fmt"
	"io"
)

// fixFAT32 repairs two defects of the FAT32 filesystems go-diskfs v1.9.4 writes, which make
// `fsck.vfat -n` fail:
//
//   - the ".." entry of a directory in the root directory points at cluster 2 (the root's cluster);
//     the FAT specification (Microsoft FAT32 File System Specification 1.03, §6.7 "." and ".."
//     entries) says it must be 0 when the parent is the root;
//   - FSInfo's free-cluster count and next-free hint are left at 0xFFFFFFFF ("unknown"); fsck.vfat
//     reports "Free cluster summary uninitialized". They are set from the FAT (FSInfo layout: FAT
//     specification §5, FSI_Free_Count at 488, FSI_Nxt_Free at 492), in both FSInfo copies.
//
// rw is the ESP region (offset 0 = boot sector).
func fixFAT32(rw interface {
	io.ReaderAt
	io.WriterAt
}) error {
	bs := make([]byte, 512)
	if _, err := rw.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("reading boot sector: %w", err)
	}
	// BPB offsets: FAT specification §3.1 and §3.3.
	bps := int64(binary.LittleEndian.Uint16(bs[11:13]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	nfats := int64(bs[16])
	total := int64(binary.LittleEndian.Uint32(bs[32:36]))
	fatSectors := int64(binary.LittleEndian.Uint32(bs[36:40]))
	rootCluster := binary.LittleEndian.Uint32(bs[44:48])
	fsInfo := int64(binary.LittleEndian.Uint16(bs[48:50]))
	backupBoot := int64(binary.LittleEndian.Uint16(bs[50:52]))
	if bps != 512 || spc == 0 || nfats == 0 || fatSectors == 0 {
		return fmt.Errorf("unexpected BPB: %d bytes/sector, %d sectors/cluster, %d FATs of %d sectors", bps, spc, nfats, fatSectors)
	}
	dataStart := (reserved + nfats*fatSectors) * bps
	clusterBytes := spc * bps
	clusters := (total - reserved - nfats*fatSectors) / spc

	fat := make([]byte, fatSectors*bps)
	if _, err := rw.ReadAt(fat, reserved*bps); err != nil {
		return fmt.Errorf("reading FAT: %w", err)
	}
	next := func(c uint32) uint32 { return binary.LittleEndian.Uint32(fat[4*int64(c):]) & 0x0FFFFFFF }
	clusterOff := func(c uint32) int64 { return dataStart + int64(c-2)*clusterBytes }

	// Walk the root directory's cluster chain and fix ".." of each subdirectory.
	buf := make([]byte, clusterBytes)
	for c, n := rootCluster, 0; c >= 2 && c < 0x0FFFFFF8; c, n = next(c), n+1 {
		if n > int(clusters) {
			return fmt.Errorf("root directory cluster chain loops")
		}
		if _, err := rw.ReadAt(buf, clusterOff(c)); err != nil {
			return fmt.Errorf("reading root directory: %w", err)
		}
		for i := 0; i < len(buf); i += 32 {
			e := buf[i : i+32]
			if e[0] == 0 {
				break
			}
			attr := e[11]
			if e[0] == 0xE5 || attr == 0x0F || attr&0x10 == 0 || e[0] == '.' {
				continue
			}
			sub := uint32(binary.LittleEndian.Uint16(e[20:22]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:28]))
			if sub < 2 {
				continue
			}
			dotdot := make([]byte, 32)
			off := clusterOff(sub) + 32
			if _, err := rw.ReadAt(dotdot, off); err != nil {
				return fmt.Errorf("reading '..' entry: %w", err)
			}
			if string(dotdot[0:11]) != "..         " {
				continue
			}
			dotdot[20], dotdot[21], dotdot[26], dotdot[27] = 0, 0, 0, 0
			if _, err := rw.WriteAt(dotdot, off); err != nil {
				return fmt.Errorf("writing '..' entry: %w", err)
			}
		}
	}

	free, nextFree := uint32(0), uint32(0xFFFFFFFF)
	for c := uint32(2); c < uint32(clusters)+2; c++ {
		if next(c) == 0 {
			free++
			if nextFree == 0xFFFFFFFF {
				nextFree = c
			}
		}
	}
	info := make([]byte, 8)
	binary.LittleEndian.PutUint32(info[0:4], free)
	binary.LittleEndian.PutUint32(info[4:8], nextFree)
	for _, sector := range []int64{fsInfo, backupBoot + fsInfo} {
		if sector == 0 || sector == 0xFFFF {
			continue
		}
		sig := make([]byte, 4)
		if _, err := rw.ReadAt(sig, sector*bps); err != nil {
			return fmt.Errorf("reading FSInfo: %w", err)
		}
		if string(sig) != "RRaA" { // FSI_LeadSig
			continue
		}
		if _, err := rw.WriteAt(info, sector*bps+488); err != nil {
			return fmt.Errorf("writing FSInfo: %w", err)
		}
	}
	return nil
}

// setFAT32Serial writes the volume serial number (BS_VolID, FAT specification §3.3: offset 67 of
// the FAT32 boot sector, u32 little-endian) into the boot sector and its backup (BPB_BkBootSec,
// offset 50). go-diskfs writes 0 when asked for a reproducible filesystem.
func setFAT32Serial(rw interface {
	io.ReaderAt
	io.WriterAt
}, serial uint32) error {
	bs := make([]byte, 512)
	if _, err := rw.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("reading boot sector: %w", err)
	}
	var v [4]byte
	binary.LittleEndian.PutUint32(v[:], serial)
	sectors := []int64{0}
	if backup := int64(binary.LittleEndian.Uint16(bs[50:52])); backup != 0 {
		sectors = append(sectors, backup)
	}
	for _, sector := range sectors {
		if _, err := rw.WriteAt(v[:], sector*512+67); err != nil {
			return fmt.Errorf("writing the volume serial (sector %d): %w", sector, err)
		}
	}
	return nil
}
