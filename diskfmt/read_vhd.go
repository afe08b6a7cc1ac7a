package diskfmt

import (
	"encoding/binary"
	"io"
	"os"
	"sync"
)

// vhdImage reads fixed and dynamic VHDs (Microsoft "Virtual Hard Disk Image Format
// Specification" 1.0). The virtual size is the footer's Current Size. Differencing disks are
// refused.
type vhdImage struct {
	baseImage
	dynamic   bool
	blockSize int64
	bitmapLen int64    // bytes of the sector bitmap before each block, padded to a sector
	bat       []uint32 // sector of each block, 0xFFFFFFFF = unallocated
	batOff    int64

	mu    sync.Mutex
	bmBlk int64 // block whose bitmap is in bm, -1 none
	bm    []byte
}

const vhdReadUnused = 0xFFFFFFFF

// vhdReadChecksum is the one's complement of the byte sum of b with the 4 checksum bytes at ck
// counted as zero (VHD spec "Hard Disk Footer Format": Checksum; "Dynamic Disk Header Format":
// Checksum).
func vhdReadChecksum(b []byte, ck int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= ck && i < ck+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// openVHD reads the footer at file offset at: 0 for a dynamic disk's copy, fsize-512 for the
// footer at the end.
func openVHD(r io.ReaderAt, fsize int64, f *os.File, at int64) (Image, error) {
	const F = "vhd"
	img := &vhdImage{baseImage: baseImage{r: r, fsize: fsize}, bmBlk: -1}
	var ft [512]byte
	if err := img.readAt(F, "footer", ft[:], at); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	// VHD spec "Hard Disk Footer Format", big-endian.
	if got, want := be.Uint32(ft[64:]), vhdReadChecksum(ft[:], 64); got != want { // Checksum
		return nil, formatErr(F, "footer checksum", at+64, "%#08x, the footer's bytes give %#08x", got, want)
	}
	if v := be.Uint32(ft[12:]); v>>16 != 1 { // File Format Version: major 1
		return nil, formatErr(F, "footer file format version", at+12, "%#08x, want major version 1", v)
	}
	cur := be.Uint64(ft[48:]) // Current Size
	if cur > 1<<48 {
		return nil, formatErr(F, "footer current size", at+48, "%d bytes is more than 2^48", cur)
	}
	img.size = int64(cur)
	dataOff := be.Uint64(ft[16:])           // Data Offset
	switch typ := be.Uint32(ft[60:]); typ { // Disk Type
	case 2: // fixed: the data is the first Current Size bytes, then the footer
		if at != fsize-512 {
			return nil, formatErr(F, "footer disk type", at+60, "a fixed disk's footer copy at the start of the file")
		}
		if img.size > fsize-512 {
			return nil, formatErr(F, "footer current size", at+48, "%d bytes of data do not fit before the footer (file %d bytes)", img.size, fsize)
		}
		exts, err := dataExtents(f, img.size)
		if err != nil {
			return nil, err
		}
		img.exts = exts
		return img, nil
	case 3:
		img.dynamic = true
	case 4:
		return nil, formatErr(F, "footer disk type", at+60, "a differencing disk (type 4) needs its parent, which is not supported")
	default:
		return nil, formatErr(F, "footer disk type", at+60, "%d is not fixed (2) or dynamic (3)", typ)
	}
	if err := img.openDynamic(int64(dataOff), at+16); err != nil {
		return nil, err
	}
	return img, nil
}

// openDynamic reads the dynamic disk header at hdrOff (from the footer field at file offset field)
// and the block allocation table.
func (img *vhdImage) openDynamic(hdrOff, field int64) error {
	const F = "vhd"
	if hdrOff < 0 || hdrOff%512 != 0 || hdrOff > img.fsize-1024 {
		return formatErr(F, "footer data offset", field, "dynamic header offset %#x is unaligned or past the end of the file (%d bytes)", uint64(hdrOff), img.fsize)
	}
	var h [1024]byte
	if err := img.readAt(F, "dynamic header", h[:], hdrOff); err != nil {
		return err
	}
	be := binary.BigEndian
	// VHD spec "Dynamic Disk Header Format", big-endian.
	if string(h[:8]) != "cxsparse" { // Cookie
		return formatErr(F, "dynamic header cookie", hdrOff, "%q, want \"cxsparse\"", h[:8])
	}
	if got, want := be.Uint32(h[36:]), vhdReadChecksum(h[:], 36); got != want { // Checksum
		return formatErr(F, "dynamic header checksum", hdrOff+36, "%#08x, the header's bytes give %#08x", got, want)
	}
	if v := be.Uint32(h[24:]); v>>16 != 1 { // Header Version
		return formatErr(F, "dynamic header version", hdrOff+24, "%#08x, want major version 1", v)
	}
	batOff := be.Uint64(h[16:])         // Table Offset
	entries := int64(be.Uint32(h[28:])) // Max Table Entries
	bs := int64(be.Uint32(h[32:]))      // Block Size
	if bs < 512 || bs > 256<<20 || bs&(bs-1) != 0 {
		return formatErr(F, "dynamic header block size", hdrOff+32, "%d is not a power of two in 512..256 MiB", bs)
	}
	img.blockSize = bs
	img.bitmapLen = ceilDiv(bs/512/8, 512) * 512
	if need := ceilDiv(img.size, bs); entries < need {
		return formatErr(F, "dynamic header max table entries", hdrOff+28, "%d entries cannot map %d bytes in %d-byte blocks (needs %d)", entries, img.size, bs, need)
	}
	if batOff > uint64(img.fsize) || entries*4 > img.fsize-int64(batOff) {
		return formatErr(F, "dynamic header table offset", hdrOff+16, "BAT of %d entries at %#x runs past the end of the file (%d bytes)", entries, batOff, img.fsize)
	}
	img.batOff = int64(batOff)
	return img.readBAT(ceilDiv(img.size, bs), hdrOff) // only the entries that map the disk are used
}

// readBAT reads the first n entries of the block allocation table and maps the allocated blocks.
// The blocks mapped are bounded by the file (doc.go "# Limits"): each takes its bitmap and data
// from the file's bytes, with the BAT's, so blocks that repeat or overlap are found once they
// would need more than the file.
func (img *vhdImage) readBAT(n, hdrOff int64) error {
	const F = "vhd"
	if n*4 > maxTableBytes {
		return formatErr(F, "dynamic header max table entries", hdrOff+28, "BAT of %d entries is too large", n)
	}
	raw := make([]byte, n*4)
	if err := img.readAt(F, "BAT", raw, img.batOff); err != nil {
		return err
	}
	fb := fileBudget(img.fsize)
	fb.take(n * 4) // read above, so inside the file
	img.bat = make([]uint32, n)
	var exts []Extent
	for i := range img.bat {
		s := binary.BigEndian.Uint32(raw[i*4:])
		img.bat[i] = s
		if s == vhdReadUnused {
			continue
		}
		b := int64(i)
		if err := img.checkBlock(b); err != nil {
			return err
		}
		g := b * img.blockSize
		data := min(img.blockSize, img.size-g)
		if !fb.take(img.bitmapLen + data) {
			return formatErr(F, "BAT entry", img.batOff+b*4, "block %d at sector %d: the blocks mapped need more than the %d-byte file (blocks of %d bytes repeat or overlap)", b, s, img.fsize, img.bitmapLen+img.blockSize)
		}
		exts = addRun(exts, g, data)
	}
	img.exts = exts
	return nil
}

// checkBlock verifies that block b's bitmap and data lie inside the file.
func (img *vhdImage) checkBlock(b int64) error {
	s := int64(img.bat[b])
	data := min(img.blockSize, img.size-b*img.blockSize)
	if off := s * 512; off > img.fsize-img.bitmapLen-data {
		return formatErr("vhd", "BAT entry", img.batOff+b*4, "block %d at sector %d (offset %#x, %d bytes with its bitmap) is past the end of the file (%d bytes)", b, s, off, img.bitmapLen+data, img.fsize)
	}
	return nil
}

func (img *vhdImage) Format() string {
	if img.dynamic {
		return "vhd-dynamic"
	}
	return "vhd"
}

// ReadAt reads guest bytes; safe for concurrent use.
func (img *vhdImage) ReadAt(p []byte, off int64) (int, error) {
	p, eof := guestRead(p, off, img.size)
	if eof != nil && len(p) == 0 {
		return 0, eof
	}
	if !img.dynamic {
		if err := img.readAt("vhd", "data", p, off); err != nil {
			return 0, err
		}
		return len(p), eof
	}
	done := 0
	for done < len(p) {
		g := off + int64(done)
		in := g % img.blockSize
		n := int(min(int64(len(p)-done), img.blockSize-in))
		if err := img.readBlock(p[done:done+n], g/img.blockSize, in); err != nil {
			return done, err
		}
		done += n
	}
	return done, eof
}

// readBlock fills p from block b starting at byte in, honouring the block's sector bitmap (VHD
// spec "Block Allocation Table and Data Blocks": a clear bit means the sector holds no data).
func (img *vhdImage) readBlock(p []byte, b, in int64) error {
	const F = "vhd"
	if img.bat[b] == vhdReadUnused {
		clear(p)
		return nil
	}
	if err := img.checkBlock(b); err != nil {
		return err
	}
	base := int64(img.bat[b]) * 512
	img.mu.Lock()
	if img.bmBlk != b {
		if img.bm == nil {
			img.bm = make([]byte, img.bitmapLen)
		}
		img.bmBlk = -1
		if err := img.readAt(F, "block bitmap", img.bm, base); err != nil {
			img.mu.Unlock()
			return err
		}
		img.bmBlk = b
	}
	// Runs of sectors with the same bitmap bit; bit 7 of byte 0 is the block's first sector.
	type run struct {
		set      bool
		from, to int64 // byte range in p
	}
	var runs []run
	for i := int64(0); i < int64(len(p)); {
		sec := (in + i) / 512
		set := img.bm[sec/8]&(0x80>>(sec%8)) != 0
		end := min((sec+1)*512-in, int64(len(p)))
		if k := len(runs); k > 0 && runs[k-1].set == set {
			runs[k-1].to = end
		} else {
			runs = append(runs, run{set, i, end})
		}
		i = end
	}
	img.mu.Unlock()
	for _, r := range runs {
		if !r.set {
			clear(p[r.from:r.to])
			continue
		}
		if err := img.readAt(F, "block data", p[r.from:r.to], base+img.bitmapLen+in+r.from); err != nil {
			return err
		}
	}
	return nil
}
