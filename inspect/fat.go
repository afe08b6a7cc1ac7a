package inspect

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"unicode/utf16"
)

// fatFS is a minimal read-only FAT12/16/32 reader: enough to list directories and read small files of
// an EFI system partition by path. Offsets are from Microsoft's "FAT: General Overview of On-Disk
// Format" (fatgen103), cited as [fatgen §N]. The FAT is read one entry at a time (never whole), every
// cluster number is checked against the cluster count and every chain is bounded by it.
type fatFS struct {
	r          io.ReaderAt
	size       int64 // partition size
	bps        int64 // bytes per sector
	clusBytes  int64
	fatOff     int64 // byte offset of the first FAT
	bits       int   // 12, 16 or 32
	clusters   int64 // count of data clusters (numbered 2..clusters+1)
	dataOff    int64 // byte offset of cluster 2
	rootOff    int64 // FAT12/16: byte offset of the fixed root directory
	rootLen    int64 // FAT12/16: its length in bytes
	rootClus   int64 // FAT32: first cluster of the root directory
	label, vol string
	serial     uint32
	left       int64 // bytes this reader may still read (maxFATRead)
}

const (
	maxFATDir  = 1 << 20 // largest directory read (32768 entries)
	maxFATFile = 1 << 20 // largest file read whole (loader.conf, entries)
	// maxFATRead bounds all the reads of one fatFS: directory entries may share clusters (32768
	// entries naming one 1 MiB file), so the per-file limits alone do not bound the sum.
	maxFATRead = 16 << 20
)

// openFAT parses the boot sector [fatgen §3.1–3.3]: BPB_BytsPerSec 11, BPB_SecPerClus 13,
// BPB_RsvdSecCnt 14, BPB_NumFATs 16, BPB_RootEntCnt 17, BPB_TotSec16 19, BPB_FATSz16 22,
// BPB_TotSec32 32; FAT32: BPB_FATSz32 36, BPB_RootClus 44, BS_VolID 67, BS_VolLab 71, BS_FilSysType 82;
// FAT12/16: BS_VolID 39, BS_VolLab 43, BS_FilSysType 54. The type follows from the cluster count
// [fatgen §3.5]: under 4085 FAT12, under 65525 FAT16, else FAT32.
func openFAT(r io.ReaderAt, size int64) (*fatFS, error) {
	b := make([]byte, 512)
	if err := readAt(r, size, b, 0, "FAT boot sector"); err != nil {
		return nil, err
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, errors.New("FAT boot sector: no 0x55AA signature at byte 510")
	}
	f := &fatFS{r: r, size: size, left: maxFATRead}
	f.bps = int64(le.Uint16(b[11:]))
	spc := int64(b[13])
	rsvd := int64(le.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEnts := int64(le.Uint16(b[17:]))
	tot := int64(le.Uint16(b[19:]))
	if tot == 0 {
		tot = int64(le.Uint32(b[32:]))
	}
	fatSz := int64(le.Uint16(b[22:]))
	if fatSz == 0 {
		fatSz = int64(le.Uint32(b[36:]))
	}
	if (f.bps != 512 && f.bps != 1024 && f.bps != 2048 && f.bps != 4096) || spc == 0 || spc&(spc-1) != 0 || rsvd == 0 || nfats == 0 || fatSz == 0 {
		return nil, fmt.Errorf("FAT boot sector: BPB bytes/sector %d (byte 11), sectors/cluster %d (byte 13), reserved %d (byte 14), FATs %d (byte 16), FAT size %d sectors: not a valid FAT",
			f.bps, spc, rsvd, nfats, fatSz)
	}
	f.clusBytes = spc * f.bps
	f.fatOff = rsvd * f.bps
	rootSecs := (rootEnts*32 + f.bps - 1) / f.bps
	first := rsvd + nfats*fatSz + rootSecs
	if tot*f.bps > size || first >= tot {
		return nil, fmt.Errorf("FAT boot sector: %d sectors of %d bytes (data from sector %d) do not fit the %d-byte partition", tot, f.bps, first, size)
	}
	f.clusters = (tot - first) / spc
	f.dataOff = first * f.bps
	switch {
	case f.clusters < 4085:
		f.bits = 12
	case f.clusters < 65525:
		f.bits = 16
	default:
		f.bits = 32
	}
	if int64(f.bits)*(f.clusters+2)/8 > fatSz*f.bps {
		return nil, fmt.Errorf("FAT boot sector: a FAT of %d sectors cannot hold %d clusters", fatSz, f.clusters)
	}
	if f.bits == 32 {
		f.rootClus = int64(le.Uint32(b[44:]))
		f.serial, f.label = le.Uint32(b[67:]), strings.TrimRight(string(b[71:82]), " ")
	} else {
		f.rootOff, f.rootLen = (rsvd+nfats*fatSz)*f.bps, rootEnts*32
		f.serial, f.label = le.Uint32(b[39:]), strings.TrimRight(string(b[43:54]), " ")
	}
	return f, nil
}

// errFATBudget is the error of a read past maxFATRead; loops over directory entries stop at it.
var errFATBudget = errors.New("the FAT reader's budget is spent")

// readAt reads len(p) bytes at partition offset off, charged to the reader's budget.
func (f *fatFS) readAt(p []byte, off int64, what string) error {
	if int64(len(p)) > f.left {
		return fmt.Errorf("%s: %w: %d MiB read (files or directories sharing clusters?)", what, errFATBudget, maxFATRead>>20)
	}
	f.left -= int64(len(p))
	return readAt(f.r, f.size, p, off, what)
}

// next returns the FAT entry of cluster c [fatgen §4]: 0 for a free cluster, -1 at the end of a chain.
func (f *fatFS) next(c int64) (int64, error) {
	var b [4]byte
	var v int64
	switch f.bits {
	case 32:
		if err := f.readAt(b[:4], f.fatOff+c*4, "FAT32 entry"); err != nil {
			return 0, err
		}
		v = int64(le.Uint32(b[:]) & 0x0FFFFFFF)
		if v >= 0x0FFFFFF8 {
			return -1, nil
		}
	case 16:
		if err := f.readAt(b[:2], f.fatOff+c*2, "FAT16 entry"); err != nil {
			return 0, err
		}
		v = int64(le.Uint16(b[:]))
		if v >= 0xFFF8 {
			return -1, nil
		}
	default:
		if err := f.readAt(b[:2], f.fatOff+c+c/2, "FAT12 entry"); err != nil {
			return 0, err
		}
		v = int64(le.Uint16(b[:]))
		if c%2 == 1 {
			v >>= 4
		}
		v &= 0xFFF
		if v >= 0xFF8 {
			return -1, nil
		}
	}
	return v, nil
}

// read reads up to limit bytes of the chain starting at cluster c (size < 0: the whole chain, for
// directories). It fails when the chain leaves the data area, loops or is longer than limit.
func (f *fatFS) read(c, size, limit int64, what string) ([]byte, error) {
	if size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d this reader takes", what, size, limit)
	}
	out := make([]byte, 0, max(size, 0))
	for steps := int64(0); ; steps++ {
		if size >= 0 && int64(len(out)) >= size {
			return out[:size], nil
		}
		if c == -1 {
			if size >= 0 {
				return nil, fmt.Errorf("%s: cluster chain ends after %d bytes, the entry says %d", what, len(out), size)
			}
			return out, nil
		}
		if c < 2 || c > f.clusters+1 || steps > f.clusters {
			return nil, fmt.Errorf("%s: cluster %d after %d clusters is outside [2, %d] or the chain loops", what, c, steps, f.clusters+1)
		}
		if int64(len(out)) > limit {
			return nil, fmt.Errorf("%s: more than %d bytes", what, limit)
		}
		n := len(out)
		out = slices.Grow(out, int(f.clusBytes))[:n+int(f.clusBytes)]
		if err := f.readAt(out[n:], f.dataOff+(c-2)*f.clusBytes, what); err != nil {
			return nil, err
		}
		var err error
		if c, err = f.next(c); err != nil {
			return nil, err
		}
	}
}

// fatEntry is one directory entry.
type fatEntry struct {
	name  string
	dir   bool
	clus  int64
	size  int64
	label bool // a volume label entry
}

// list reads a directory: the root when clus == 0 [fatgen §6 (short entries: DIR_Name 0, DIR_Attr 11,
// DIR_NTRes 12, DIR_FstClusHI 20, DIR_FstClusLO 26, DIR_FileSize 28) and §7 (long names: LDIR_Ord 0,
// LDIR_Name1 1, LDIR_Attr 11, LDIR_Chksum 13, LDIR_Name2 14, LDIR_Name3 28)].
func (f *fatFS) list(clus int64) ([]fatEntry, error) {
	var b []byte
	var err error
	switch {
	case clus != 0:
		b, err = f.read(clus, -1, maxFATDir, "FAT directory")
	case f.bits == 32:
		b, err = f.read(f.rootClus, -1, maxFATDir, "FAT root directory")
	default:
		if f.rootLen > maxFATDir {
			return nil, fmt.Errorf("FAT root directory of %d bytes", f.rootLen)
		}
		b = make([]byte, f.rootLen)
		err = f.readAt(b, f.rootOff, "FAT root directory")
	}
	if err != nil {
		return nil, err
	}
	var out []fatEntry
	var lfn []uint16
	var lfnSum byte
	for i := 0; i+32 <= len(b); i += 32 {
		e := b[i : i+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			lfn = nil
			continue
		}
		attr := e[11]
		if attr&0x3F == 0x0F { // long name part; parts come last-first
			if e[0]&0x40 != 0 {
				lfn = nil
			}
			part := make([]uint16, 0, 13)
			for _, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				part = append(part, le.Uint16(e[o:]))
			}
			lfn, lfnSum = append(part, lfn...), e[13]
			continue
		}
		short := e[0:11]
		var sum byte
		for _, c := range short {
			sum = (sum&1)<<7 + sum>>1 + c
		}
		name := ""
		if lfn != nil && sum == lfnSum {
			if k := indexU16(lfn, 0); k >= 0 {
				lfn = lfn[:k]
			}
			name = string(utf16.Decode(lfn))
		}
		lfn = nil
		if attr&0x08 != 0 && attr&0x10 == 0 { // volume label
			out = append(out, fatEntry{name: strings.TrimRight(string(short), " "), label: true})
			continue
		}
		if name == "" {
			base, ext := strings.TrimRight(string(short[0:8]), " "), strings.TrimRight(string(short[8:11]), " ")
			if short[0] == 0x05 {
				base = "\xe5" + base[1:]
			}
			if e[12]&0x08 != 0 {
				base = strings.ToLower(base)
			}
			if e[12]&0x10 != 0 {
				ext = strings.ToLower(ext)
			}
			name = base
			if ext != "" {
				name += "." + ext
			}
		}
		if name == "." || name == ".." {
			continue
		}
		out = append(out, fatEntry{name: name, dir: attr&0x10 != 0,
			clus: int64(le.Uint16(e[20:]))<<16 | int64(le.Uint16(e[26:])), size: int64(le.Uint32(e[28:]))})
	}
	return out, nil
}

func indexU16(s []uint16, v uint16) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// lookup finds a path ("loader/entries") case-insensitively, as FAT names are.
func (f *fatFS) lookup(p string) (fatEntry, error) {
	cur := fatEntry{dir: true}
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" {
			continue
		}
		if !cur.dir {
			return fatEntry{}, fmt.Errorf("%s: not a directory", p)
		}
		es, err := f.list(cur.clus)
		if err != nil {
			return fatEntry{}, fmt.Errorf("%s: %w", p, err)
		}
		found := false
		for _, e := range es {
			if !e.label && strings.EqualFold(e.name, c) {
				cur, found = e, true
				break
			}
		}
		if !found {
			return fatEntry{}, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
	}
	return cur, nil
}

// readFile reads a small file by path.
func (f *fatFS) readFile(p string) ([]byte, error) {
	e, err := f.lookup(p)
	if err != nil {
		return nil, err
	}
	if e.dir {
		return nil, fmt.Errorf("%s: is a directory", p)
	}
	if e.size == 0 {
		return nil, nil
	}
	b, err := f.read(e.clus, e.size, maxFATFile, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// volumeLabel is the label in the root directory (what blkid reports), else the boot sector's.
func (f *fatFS) volumeLabel() string {
	if es, err := f.list(0); err == nil {
		for _, e := range es {
			if e.label {
				return e.name
			}
		}
	}
	if f.label == "NO NAME" {
		return ""
	}
	return f.label
}
