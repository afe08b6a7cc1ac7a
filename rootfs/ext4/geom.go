package ext4

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Fixed format parameters (EXT4.md §1, §2).
const (
	bs             = 4096  // block size
	bpg            = 32768 // blocks per group
	inodeSize      = 256
	inodesPerBlock = bs / inodeSize
	descSize       = 64
	flexLog        = 4              // s_log_groups_per_flex
	extPerBlock    = (bs - 12) / 12 // 340 extent entries per tree block (EXT4.md §6)
	maxLinks       = 65000
	firstIno       = 12
	rootIno        = 2
	journalIno     = 8
	lostFoundIno   = 11
)

var (
	le         = binary.LittleEndian
	be         = binary.BigEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	zeroBlock  [bs]byte
)

// crcRaw is ext4's crc32c without final inversion (EXT4.md §0).
func crcRaw(c uint32, p []byte) uint32 { return ^crc32.Update(^c, castagnoli, p) }

func crcU32(c, v uint32) uint32 {
	var b [4]byte
	le.PutUint32(b[:], v)
	return crcRaw(c, b[:])
}

// hasSuper reports whether group g holds a superblock/GDT copy: 0, 1 and powers of 3, 5, 7 (EXT4.md §2).
func hasSuper(g int64) bool {
	if g <= 1 {
		return true
	}
	for _, b := range [...]int64{3, 5, 7} {
		x := g
		for x%b == 0 {
			x /= b
		}
		if x == 1 {
			return true
		}
	}
	return false
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func roundUp(a, b int64) int64 { return ceilDiv(a, b) * b }

// geometry is the group layout of a filesystem of a given block count (EXT4.md §2).
type geometry struct {
	blocks int64  // s_blocks_count
	groups int64  // group count
	gdt    int64  // GDT blocks
	ipg    uint32 // inodes per group
	itb    int64  // inode table blocks per group
}

func (g geometry) inodes() int64 { return int64(g.ipg) * g.groups }

// superEnd returns the first block after the superblock+GDT copy of group gr, or the group start if it has none.
func (g geometry) superEnd(gr int64) int64 {
	if hasSuper(gr) {
		return gr*bpg + 1 + g.gdt
	}
	return gr * bpg
}

// groupBlocks is the number of blocks of group gr (the last one may be short).
func (g geometry) groupBlocks(gr int64) int64 {
	if gr == g.groups-1 {
		return g.blocks - gr*bpg
	}
	return bpg
}

// newGeometry computes the geometry for blocks (EXT4.md §2, as lib/ext2fs/initialize.c): inode count from
// the 16 KiB ratio (at least minInodes), ipg rounded up to full table blocks, and a last group too small
// for its metadata plus 50 blocks dropped (grow=false, as mke2fs) or grown to that size (grow=true).
func newGeometry(blocks, minInodes int64, grow bool) (geometry, error) {
	for {
		if blocks < 1 {
			return geometry{}, fmt.Errorf("ext4: filesystem of %d blocks is too small", blocks)
		}
		var g geometry
		g.blocks = blocks
		g.groups = ceilDiv(blocks, bpg)
		inodes := blocks * bs / 16384
		if inodes < minInodes {
			inodes = minInodes
		}
		ipg := roundUp(ceilDiv(inodes, g.groups), inodesPerBlock)
		if ipg < inodesPerBlock {
			ipg = inodesPerBlock
		}
		if ipg > bpg {
			ipg = bpg
		}
		if ipg*g.groups > 0xFFFFFFFF {
			ipg = (0xFFFFFFFF / g.groups) &^ (inodesPerBlock - 1)
		}
		g.ipg = uint32(ipg)
		g.itb = ipg / inodesPerBlock
		g.gdt = ceilDiv(g.groups*descSize, bs)
		rem := blocks % bpg
		if rem == 0 {
			return g, nil
		}
		overhead := 3 + g.itb
		if hasSuper(g.groups - 1) {
			overhead += 1 + g.gdt
		}
		if rem >= overhead+50 {
			return g, nil
		}
		if grow {
			blocks = roundUp(blocks-rem+overhead+50, 256)
			continue
		}
		if g.groups == 1 {
			return geometry{}, fmt.Errorf("ext4: filesystem of %d blocks is too small: needs at least %d", blocks, overhead+50)
		}
		blocks -= rem
	}
}

// journalBlocks is the journal size mke2fs picks for a filesystem of n blocks (EXT4.md §10).
func journalBlocks(n int64) int64 {
	switch {
	case n < 32*1024:
		return 1024
	case n < 256*1024:
		return 4096
	case n < 512*1024:
		return 8192
	case n < 4*1024*1024:
		return 16384
	case n < 8*1024*1024:
		return 32768
	case n < 16*1024*1024:
		return 65536
	case n < 32*1024*1024:
		return 131072
	}
	return 262144
}

// treeBlocks is the number of extent tree blocks needed for n extents (EXT4.md §6).
func treeBlocks(n int) int64 {
	var t int64
	for n > 4 {
		n = int(ceilDiv(int64(n), extPerBlock))
		t += int64(n)
	}
	return t
}
