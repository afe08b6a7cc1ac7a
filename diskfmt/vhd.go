package diskfmt

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// vhdFixed writes a fixed VHD (Microsoft "Virtual Hard Disk Image Format Specification"): the raw
// disk, rounded up to a whole MiB as Azure requires, followed by the 512-byte footer.
type vhdFixed struct{}

// vhdDynamic writes a dynamic VHD: footer copy, dynamic disk header, BAT, 2 MiB blocks that hold
// data, footer.
type vhdDynamic struct{}

var (
	_ Format = vhdFixed{}
	_ Format = vhdDynamic{}
)

func init() {
	register(vhdFixed{}, ".vhd")
	register(vhdDynamic{}) // --format vhd-dynamic only
}

func (vhdFixed) Name() string   { return "vhd" }
func (vhdDynamic) Name() string { return "vhd-dynamic" }

const (
	vhdFooterLen   = 512
	vhdDynHdrLen   = 1024
	vhdAlign       = 1 << 20 // virtual sizes are rounded up to a whole MiB (Azure)
	vhdBlock       = 2 << 20 // dynamic block size
	vhdBitmapLen   = 512     // sector bitmap of a 2 MiB block: 4096 bits, one sector
	vhdDiskFixed   = 2
	vhdDiskDynamic = 3
	vhdNoOffset    = ^uint64(0) // "Data Offset" of a fixed disk; dynamic header's "Data Offset"
	vhdUnusedBAT   = ^uint32(0) // BAT entry of a block that is not stored
	vhdCreatorVer  = 0x00010000 // imgfab 1.0
	vhdMaxSectors  = 1 << 32    // BAT entries are 32-bit sector offsets
	vhdMaxSize     = 2040 << 30 // the largest VHD (spec, "Hard Disk Footer Format"; qemu's VHD_MAX_SECTORS)
)

// vhdSize is the virtual size of d in a VHD: its size rounded up to a whole MiB, at most 2040 GiB.
func vhdSize(d Disk) (int64, error) {
	size := ceilDiv(d.Size(), vhdAlign) * vhdAlign
	if size > vhdMaxSize {
		return 0, fmt.Errorf("disk size %d (%d MiB rounded) is more than the VHD maximum of 2040 GiB", d.Size(), size>>20)
	}
	return size, nil
}

// vhdResized is a Disk seen with a larger size; the added bytes are zeros (outside every extent).
type vhdResized struct {
	Disk
	size int64
}

func (r vhdResized) Size() int64 { return r.size }

// Write writes d to w as a fixed VHD. When w is a seekable regular file (an *os.File or an
// *Output), holes stay holes as in raw; otherwise every byte is written, so w may be a pipe.
func (f vhdFixed) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("vhd: %w", err)
	}
	size, err := vhdSize(d)
	if err != nil {
		return fmt.Errorf("vhd: %w", err)
	}
	rd := vhdResized{d, size}
	if st, base, ok := sparseTarget(w); ok {
		err = writeRawSparse(ctx, w, st, base, rd)
	} else {
		err = writeRawStream(ctx, w, rd)
	}
	if err != nil {
		return fmt.Errorf("vhd: writing %d-byte disk: %w", size, err)
	}
	footer := vhdFooter(identityFrom(ctx), f.Name(), size, vhdDiskFixed, vhdNoOffset)
	if _, err := w.Write(footer); err != nil {
		return fmt.Errorf("vhd: writing footer at %d: %w", size, err)
	}
	return nil
}

// vhdFooter returns the 512-byte hard disk footer (VHD spec, "Hard Disk Footer Format"; all fields
// big-endian). The unique ID is derived from the identity, the format name and the size.
func vhdFooter(id Identity, format string, size int64, diskType uint32, dataOffset uint64) []byte {
	be := binary.BigEndian
	h := make([]byte, vhdFooterLen)
	copy(h[0:8], "conectix")            // 0: Cookie
	be.PutUint32(h[8:], 2)              // 8: Features: reserved bit always set
	be.PutUint32(h[12:], 0x00010000)    // 12: File Format Version 1.0
	be.PutUint64(h[16:], dataOffset)    // 16: Data Offset: all ones for a fixed disk
	be.PutUint32(h[24:], id.vhdTime())  // 24: Time Stamp: seconds since 2000-01-01 UTC
	copy(h[28:32], "qem2")              // 28: Creator Application: qemu then trusts Current Size
	be.PutUint32(h[32:], vhdCreatorVer) // 32: Creator Version
	copy(h[36:40], "Wi2k")              // 36: Creator Host OS: Windows
	be.PutUint64(h[40:], uint64(size))  // 40: Original Size
	be.PutUint64(h[48:], uint64(size))  // 48: Current Size
	be.PutUint32(h[56:], vhdCHS(size))  // 56: Disk Geometry
	be.PutUint32(h[60:], diskType)      // 60: Disk Type
	// 64: Checksum, below. 68: Unique Id (16 bytes).
	sum := id.sum(format, size)
	copy(h[68:84], sum[:16])
	h[68+6] = h[68+6]&0x0f | 0x80 // RFC 9562 version 8 (custom: a SHA-256 name hash)
	h[68+8] = h[68+8]&0x3f | 0x80 // RFC 9562 variant
	h[84] = 0                     // 84: Saved State; 85..511 reserved, zero
	be.PutUint32(h[64:], vhdChecksum(h))
	return h
}

// vhdChecksum is the one's complement of the sum of all bytes with the checksum field (64..67 in
// the footer, 36..39 in the dynamic header) taken as zero; the caller leaves it zero.
func vhdChecksum(b []byte) uint32 {
	var s uint32
	for _, c := range b {
		s += uint32(c)
	}
	return ^s
}

// vhdCHS computes the disk geometry by the VHD spec's algorithm (Appendix, "CHS Calculation"):
// cylinders (u16), heads (u8), sectors per track (u8), packed big-endian.
func vhdCHS(size int64) uint32 {
	total := size / 512
	total = min(total, 65535*16*255)
	var spt, heads, cth int64
	if total >= 65535*16*63 {
		spt, heads = 255, 16
		cth = total / spt
	} else {
		spt = 17
		cth = total / spt
		heads = max((cth+1023)/1024, 4)
		if cth >= heads*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = total / spt
		}
		if cth >= heads*1024 {
			spt, heads = 63, 16
			cth = total / spt
		}
	}
	cyl := cth / heads
	return uint32(cyl)<<16 | uint32(heads)<<8 | uint32(spt)
}

// Write writes d to w as a dynamic VHD, strictly sequentially (w may be a pipe). The data is read
// twice: once to find the 2 MiB blocks that hold non-zero bytes, once to copy them.
func (f vhdDynamic) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("vhd-dynamic: %w", err)
	}
	size, err := vhdSize(d)
	if err != nil {
		return fmt.Errorf("vhd-dynamic: %w", err)
	}
	entries := ceilDiv(size, vhdBlock) // Max Table Entries: exactly this many (Azure)
	if entries > math.MaxUint32 {
		return fmt.Errorf("vhd-dynamic: disk size %d needs %d BAT entries, more than 2^32", size, entries)
	}
	prog := newProgress(ctx, 2*size)

	// Pass 1: mark the blocks that hold non-zero bytes.
	used := make([]bool, entries)
	buf := make([]byte, vhdBlock)
	if err := scanNonZero(ctx, d, vhdBlock, buf[:1<<20], func(b int64) { used[b] = true }, prog); err != nil {
		return fmt.Errorf("vhd-dynamic: finding the data blocks of a %d-byte disk: %w", size, err)
	}

	// Layout (VHD spec, "Dynamic Disk Header Format"): footer copy at 0, the dynamic header at
	// 512, the BAT at 1536 padded to a sector, then the blocks in guest order, each its sector
	// bitmap then 2 MiB of data, then the footer.
	const batOff = vhdFooterLen + vhdDynHdrLen
	batLen := ceilDiv(entries*4, 512) * 512
	blocksOff := batOff + batLen
	bat := make([]byte, batLen)
	for i := range bat {
		bat[i] = 0xff // unused entries, and the padding like qemu's
	}
	next := blocksOff / 512 // sector of the next block's bitmap
	var nused int64
	for i, u := range used {
		if !u {
			continue
		}
		if next >= vhdMaxSectors {
			return fmt.Errorf("vhd-dynamic: block %d would start at sector %d, past the 32-bit BAT entries", i, next)
		}
		binary.BigEndian.PutUint32(bat[4*i:], uint32(next))
		next += (vhdBitmapLen + vhdBlock) / 512
		nused++
	}

	id := identityFrom(ctx)
	footer := vhdFooter(id, f.Name(), size, vhdDiskDynamic, vhdFooterLen)
	bw := bufio.NewWriterSize(w, 1<<20)
	var pos int64
	write := func(what string, p []byte) error {
		n, err := bw.Write(p)
		pos += int64(n)
		if err != nil {
			return fmt.Errorf("vhd-dynamic: writing %s at %d: %w", what, pos-int64(n), err)
		}
		return nil
	}
	if err := write("footer copy", footer); err != nil {
		return err
	}
	if err := write("dynamic disk header", vhdDynHeader(batOff, uint32(entries))); err != nil {
		return err
	}
	if err := write("BAT", bat); err != nil {
		return err
	}

	// Pass 2: each used block: its sector bitmap (all sectors present: all ones), then its data.
	bitmap := make([]byte, vhdBitmapLen)
	for i := range bitmap {
		bitmap[i] = 0xff
	}
	exts := d.Extents()
	for i, u := range used {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("vhd-dynamic: %w", err)
		}
		off := int64(i) * vhdBlock
		if !u {
			prog.to(size + off + vhdBlock)
			continue
		}
		if err := vhdReadBlock(d, &exts, buf, off); err != nil {
			return fmt.Errorf("vhd-dynamic: block %d: %w", i, err)
		}
		if err := write(fmt.Sprintf("block %d bitmap", i), bitmap); err != nil {
			return err
		}
		if err := write(fmt.Sprintf("block %d", i), buf); err != nil {
			return err
		}
		prog.to(size + off + vhdBlock)
	}
	if err := write("footer", footer); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("vhd-dynamic: writing: %w", err)
	}
	if want := blocksOff + nused*(vhdBitmapLen+vhdBlock) + vhdFooterLen; pos != want {
		return fmt.Errorf("vhd-dynamic: wrote %d bytes, layout says %d", pos, want)
	}
	prog.finish()
	return nil
}

// vhdDynHeader returns the 1024-byte dynamic disk header (VHD spec, "Dynamic Disk Header Format";
// big-endian). There is no parent: the parent fields and locators are zero.
func vhdDynHeader(batOff int64, entries uint32) []byte {
	be := binary.BigEndian
	h := make([]byte, vhdDynHdrLen)
	copy(h[0:8], "cxsparse")             // 0: Cookie
	be.PutUint64(h[8:], vhdNoOffset)     // 8: Data Offset: unused, all ones
	be.PutUint64(h[16:], uint64(batOff)) // 16: Table Offset: absolute byte offset of the BAT
	be.PutUint32(h[24:], 0x00010000)     // 24: Header Version 1.0
	be.PutUint32(h[28:], entries)        // 28: Max Table Entries
	be.PutUint32(h[32:], vhdBlock)       // 32: Block Size
	// 36: Checksum, below. 40: Parent Unique ID, 56: Parent Time Stamp, 64: Parent Unicode Name,
	// 576: Parent Locator Entries, 768: reserved: all zero.
	be.PutUint32(h[36:], vhdChecksum(h))
	return h
}

// vhdBlockRanges rounds extents out to whole 2 MiB blocks and merges those that then touch.
func vhdBlockRanges(exts []Extent) []Extent {
	var out []Extent
	for _, e := range exts {
		if e.Len == 0 {
			continue
		}
		start := e.Off / vhdBlock * vhdBlock
		end := ceilDiv(e.End(), vhdBlock) * vhdBlock
		if n := len(out); n > 0 && out[n-1].End() >= start {
			out[n-1].Len = max(out[n-1].End(), end) - out[n-1].Off
			continue
		}
		out = append(out, Extent{start, end - start})
	}
	return out
}

// vhdReadBlock fills buf with the guest bytes at off, reading only the parts inside the extents
// (the rest is zeros). *exts is advanced past the extents that end before the block, so a caller
// going through the blocks in order reads each extent list entry a bounded number of times.
func vhdReadBlock(d Disk, exts *[]Extent, buf []byte, off int64) error {
	clear(buf)
	end := off + int64(len(buf))
	for len(*exts) > 0 && (*exts)[0].End() <= off {
		*exts = (*exts)[1:]
	}
	for _, e := range *exts {
		if e.Off >= end {
			break
		}
		lo, hi := max(e.Off, off), min(e.End(), end)
		if lo < hi {
			if err := readFull(d, buf[lo-off:hi-off], lo); err != nil {
				return err
			}
		}
	}
	return nil
}
