package diskfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// vmdkImage reads a hosted sparse extent with its descriptor embedded (VMware "Virtual Disk Format
// 5.0", "Hosted Sparse Extents"): monolithicSparse (plain grains) and streamOptimized (zlib
// compressed grains with markers, grain directory at the end, found through the footer).
type vmdkImage struct {
	baseImage
	grain      int64 // bytes
	gtEntries  int64
	compressed bool
	gtOffs     []int64 // file offset of each grain table, 0 = none
	zeroGrain  bool    // flag bit 2: a GTE of 1 is a zero grain

	mu      sync.Mutex
	gtOff   int64 // grain table in gt, -1 none
	gt      []byte
	zlba    int64 // guest offset of the grain in zbuf, -1 none
	zbuf    []byte
	cbuf    []byte
	inflate io.ReadCloser
}

// VMDK 5.0 "Hosted Sparse Extent Header" flags.
const (
	vmdkReadFlagZeroGTE    = 1 << 2
	vmdkReadFlagCompressed = 1 << 16
	vmdkReadGDAtEnd        = ^uint64(0) // "GD_AT_END": gdOffset in the head of a stream-optimized extent
	vmdkReadMarkerFooter   = 3
)

func openVMDK(r io.ReaderAt, fsize int64) (Image, error) {
	const F = "vmdk"
	img := &vmdkImage{baseImage: baseImage{r: r, fsize: fsize}, gtOff: -1, zlba: -1}
	var h [512]byte
	if err := img.readAt(F, "header", h[:], 0); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	// VMDK 5.0 "Hosted Sparse Extent Header": SparseExtentHeader, little-endian.
	version := le.Uint32(h[4:]) // version
	if version < 1 || version > 3 {
		return nil, formatErr(F, "version", 4, "version %d is not supported (want 1..3)", version)
	}
	flags := le.Uint32(h[8:])                          // flags
	capacity := le.Uint64(h[12:])                      // capacity, sectors
	grainSz := le.Uint64(h[20:])                       // grainSize, sectors
	descOff := le.Uint64(h[28:])                       // descriptorOffset, sectors
	descSz := le.Uint64(h[36:])                        // descriptorSize, sectors
	gtes := le.Uint32(h[44:])                          // numGTEsPerGT
	gdOff := le.Uint64(h[56:])                         // gdOffset, sectors
	algo := le.Uint16(h[77:])                          // compressAlgorithm
	if flags&1 != 0 && string(h[73:77]) != "\n \r\n" { // flags bit 0: newline detection test
		return nil, formatErr(F, "newline check", 73, "bytes %q, want \"\\n \\r\\n\" (file transferred in text mode?)", h[73:77])
	}
	if capacity > 1<<47 {
		return nil, formatErr(F, "capacity", 12, "%d sectors is more than 2^47", capacity)
	}
	if grainSz == 0 || grainSz > 2048 || grainSz&(grainSz-1) != 0 {
		return nil, formatErr(F, "grainSize", 20, "%d sectors is not a power of two in 1..2048", grainSz)
	}
	if gtes == 0 || gtes > 4096 {
		return nil, formatErr(F, "numGTEsPerGT", 44, "%d is outside 1..4096", gtes)
	}
	img.size = int64(capacity) * 512
	img.grain = int64(grainSz) * 512
	img.gtEntries = int64(gtes)
	img.compressed = flags&vmdkReadFlagCompressed != 0
	img.zeroGrain = flags&vmdkReadFlagZeroGTE != 0
	if img.compressed && algo != 1 { // compressAlgorithm 1: COMPRESSION_DEFLATE
		return nil, formatErr(F, "compressAlgorithm", 77, "%d is unknown (1 = deflate)", algo)
	}
	if err := img.checkDescriptor(descOff, descSz); err != nil {
		return nil, err
	}

	gdField := int64(56)
	if gdOff == vmdkReadGDAtEnd {
		// VMDK 5.0 "Stream-Optimized Compressed Sparse Extents": the footer, a copy of the header
		// with the real gdOffset, sits in the second-to-last sector, after a footer marker and
		// before the end-of-stream marker.
		if fsize < 3*512 {
			return nil, formatErr(F, "footer", max(fsize-1024, 0), "gdOffset is GD_AT_END but the file (%d bytes) is too short for footer marker, footer and end-of-stream marker", fsize)
		}
		var tail [1536]byte
		if err := img.readAt(F, "footer", tail[:], fsize-1536); err != nil {
			return nil, err
		}
		// Marker: u64 val, u32 size, u32 type (VMDK 5.0 "Stream-Optimized...": "Markers").
		if typ := le.Uint32(tail[12:]); le.Uint32(tail[8:]) != 0 || typ != vmdkReadMarkerFooter {
			return nil, formatErr(F, "footer marker", fsize-1536, "size %d type %d, want size 0 type %d", le.Uint32(tail[8:]), typ, vmdkReadMarkerFooter)
		}
		if !isZero(tail[1024:]) {
			return nil, formatErr(F, "end-of-stream marker", fsize-512, "not an all-zero sector (type %d)", le.Uint32(tail[1024+12:]))
		}
		foot := tail[512:1024]
		if string(foot[:4]) != "KDMV" {
			return nil, formatErr(F, "footer magic", fsize-1024, "%q, want \"KDMV\"", foot[:4])
		}
		if fc := le.Uint64(foot[12:]); fc != capacity {
			return nil, formatErr(F, "footer capacity", fsize-1024+12, "%d sectors, the header says %d", fc, capacity)
		}
		if fg := le.Uint64(foot[20:]); fg != grainSz {
			return nil, formatErr(F, "footer grainSize", fsize-1024+20, "%d sectors, the header says %d", fg, grainSz)
		}
		if ft := le.Uint32(foot[44:]); ft != gtes {
			return nil, formatErr(F, "footer numGTEsPerGT", fsize-1024+44, "%d, the header says %d", ft, gtes)
		}
		gdOff = le.Uint64(foot[56:])
		gdField = fsize - 1024 + 56
		if gdOff == vmdkReadGDAtEnd {
			return nil, formatErr(F, "footer gdOffset", gdField, "still GD_AT_END")
		}
	}
	fb := fileBudget(fsize)
	if err := img.readDirectory(gdOff, gdField, &fb); err != nil {
		return nil, err
	}
	if err := img.mapExtents(&fb); err != nil {
		return nil, err
	}
	return img, nil
}

// checkDescriptor reads the embedded descriptor and refuses what this reader cannot follow: other
// extent files, a parent (delta link).
func (img *vmdkImage) checkDescriptor(off, n uint64) error {
	const F = "vmdk"
	if off == 0 || n == 0 {
		return nil // no embedded descriptor (allowed for a sparse extent file)
	}
	if n > 2048 || off > uint64(img.fsize)/512 {
		return formatErr(F, "descriptorOffset", 28, "descriptor of %d sectors at sector %d is too large or past the end of the file (%d bytes)", n, off, img.fsize)
	}
	buf := make([]byte, n*512)
	if err := img.readAt(F, "descriptor", buf, int64(off)*512); err != nil {
		return err
	}
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	extents := 0
	for _, line := range strings.Split(string(buf), "\n") {
		line = strings.TrimSpace(line)
		k, v, _ := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch {
		case k == "createType" && v != "monolithicSparse" && v != "streamOptimized":
			return formatErr(F, "descriptor createType", int64(off)*512, "%q is not supported (monolithicSparse or streamOptimized only)", v)
		case k == "parentCID" && !strings.EqualFold(v, "ffffffff"):
			return formatErr(F, "descriptor parentCID", int64(off)*512, "%s: the disk is a delta link with a parent, which is not supported", v)
		case strings.HasPrefix(line, "RW ") || strings.HasPrefix(line, "RDONLY ") || strings.HasPrefix(line, "NOACCESS "):
			extents++
		}
	}
	if extents > 1 {
		return formatErr(F, "descriptor extents", int64(off)*512, "%d extent lines; only a single embedded extent is supported", extents)
	}
	return nil
}

// readDirectory loads the grain directory at sector gdSec (read from the field at file offset
// field) and checks each grain table lies inside the file and is used once. The directory and
// the tables are charged to fb, so together they are never more than the file (overlapping
// tables would make mapExtents read more than the file).
func (img *vmdkImage) readDirectory(gdSec uint64, field int64, fb *budget) error {
	const F = "vmdk"
	gtSpan := img.grain * img.gtEntries
	n := ceilDiv(img.size, gtSpan)
	if gdSec == 0 || gdSec > uint64(img.fsize)/512 || n*4 > img.fsize-int64(gdSec)*512 {
		return formatErr(F, "gdOffset", field, "grain directory of %d entries at sector %d runs past the end of the file (%d bytes)", n, gdSec, img.fsize)
	}
	if n*4 > maxTableBytes {
		return formatErr(F, "gdOffset", field, "grain directory of %d entries is too large", n)
	}
	gdAt := int64(gdSec) * 512
	fb.take(n * 4) // fits: checked above
	raw := make([]byte, n*4)
	if err := img.readAt(F, "grain directory", raw, gdAt); err != nil {
		return err
	}
	img.gtOffs = make([]int64, n)
	seen := make(map[int64]int64, 16)
	for i := range img.gtOffs {
		at := gdAt + int64(i)*4
		s := int64(binary.LittleEndian.Uint32(raw[i*4:])) // grain directory entry: sector of a grain table
		if s == 0 {
			continue
		}
		off := s * 512
		if off > img.fsize || img.gtEntries*4 > img.fsize-off {
			return formatErr(F, "grain directory entry", at, "grain table at sector %d (offset %#x) is past the end of the file (%d bytes)", s, off, img.fsize)
		}
		if j, dup := seen[off]; dup {
			return formatErr(F, "grain directory entry", at, "grain table at sector %d is also used by entry %d", s, j)
		}
		if !fb.take(img.gtEntries * 4) {
			return formatErr(F, "grain directory entry", at, "grain table at sector %d: the grain directory and %d grain tables of %d bytes need more than the %d-byte file (tables overlap)", s, len(seen)+1, img.gtEntries*4, img.fsize)
		}
		seen[off] = int64(i)
		img.gtOffs[i] = off
	}
	return nil
}

// checkGTE validates a grain table entry (a grain's sector) found at file offset at; it returns
// whether it maps data.
func (img *vmdkImage) checkGTE(s uint32, at int64) (bool, error) {
	if s == 0 || s == 1 && img.zeroGrain {
		return false, nil
	}
	off := int64(s) * 512
	need := img.grain
	if img.compressed {
		need = 12 // the grain marker: u64 lba, u32 size
	}
	if off > img.fsize-need {
		return false, formatErr("vmdk", "grain table entry", at, "grain at sector %d (offset %#x) is past the end of the file (%d bytes)", s, off, img.fsize)
	}
	return true, nil
}

// mapExtents walks the grain tables and builds the extents. The grains mapped are bounded by the
// file (doc.go "# Limits"): plain grains take their size from fb, so together they fit the file;
// compressed grains are sector-aligned records (fb: a sector each) and may give at most
// maxInflateRatio times the file size.
func (img *vmdkImage) mapExtents(fb *budget) error {
	var exts []Extent
	var runs runCollector
	zb := inflateBudget(img.fsize)
	gt := make([]byte, img.gtEntries*4)
	for k, gtOff := range img.gtOffs {
		if gtOff == 0 {
			continue
		}
		if err := img.readAt("vmdk", "grain table", gt, gtOff); err != nil {
			return err
		}
		base := int64(k) * img.gtEntries * img.grain
		for j := int64(0); j < img.gtEntries; j++ {
			g := base + j*img.grain
			if g >= img.size {
				break
			}
			at := gtOff + j*4
			data, err := img.checkGTE(binary.LittleEndian.Uint32(gt[j*4:]), at)
			if err != nil {
				return err
			}
			if !data {
				continue
			}
			if err := img.chargeGrain(at, fb, &zb); err != nil {
				return err
			}
			runs.add(g, img.grain)
		}
		exts = runs.flush(exts)
	}
	img.exts = clipExtents(exts, img.size)
	return nil
}

// chargeGrain charges one grain, mapped by the grain table entry at file offset at, to the
// budgets: its file space to fb, and a compressed grain's guest bytes to zb.
func (img *vmdkImage) chargeGrain(at int64, fb, zb *budget) error {
	const F = "vmdk"
	if !img.compressed {
		if !fb.take(img.grain) {
			return formatErr(F, "grain table entry", at, "the grains mapped need more than the %d-byte file (grains of %d bytes repeat or overlap)", img.fsize, img.grain)
		}
		return nil
	}
	if !fb.take(512) {
		return formatErr(F, "grain table entry", at, "more compressed grains than the %d-byte file has sectors for (grains repeat)", img.fsize)
	}
	if !zb.take(img.grain) {
		return formatErr(F, "grain table entry", at, "compressed grains map more than %d times the %d-byte file, more than deflate can give (grains repeat or share data)", maxInflateRatio, img.fsize)
	}
	return nil
}

func (*vmdkImage) Format() string { return "vmdk" }

// ReadAt reads guest bytes; safe for concurrent use.
func (img *vmdkImage) ReadAt(p []byte, off int64) (int, error) {
	p, eof := guestRead(p, off, img.size)
	if eof != nil && len(p) == 0 {
		return 0, eof
	}
	done := 0
	for done < len(p) {
		g := off + int64(done)
		in := g % img.grain
		n := int(min(int64(len(p)-done), img.grain-in))
		if err := img.readGrain(p[done:done+n], g-in, in); err != nil {
			return done, err
		}
		done += n
	}
	return done, eof
}

// readGrain fills p from the grain at guest offset g, starting at byte in of the grain.
func (img *vmdkImage) readGrain(p []byte, g, in int64) error {
	const F = "vmdk"
	img.mu.Lock()
	defer img.mu.Unlock()
	gi := g / img.grain
	gtOff := img.gtOffs[gi/img.gtEntries]
	if gtOff == 0 {
		clear(p)
		return nil
	}
	if img.gtOff != gtOff {
		if img.gt == nil {
			img.gt = make([]byte, img.gtEntries*4)
		}
		img.gtOff = -1
		if err := img.readAt(F, "grain table", img.gt, gtOff); err != nil {
			return err
		}
		img.gtOff = gtOff
	}
	at := gtOff + gi%img.gtEntries*4
	s := binary.LittleEndian.Uint32(img.gt[gi%img.gtEntries*4:])
	data, err := img.checkGTE(s, at)
	if err != nil {
		return err
	}
	if !data {
		clear(p)
		return nil
	}
	off := int64(s) * 512
	if !img.compressed {
		return img.readAt(F, "grain", p, off+in)
	}
	if img.zlba != g {
		if err := img.decompress(g, off); err != nil {
			return err
		}
	}
	copy(p, img.zbuf[in:])
	return nil
}

// decompress reads the compressed grain for guest offset g at file offset off (VMDK 5.0
// "Compressed grains": u64 lba, u32 size, then zlib data) into zbuf. Call with mu held.
func (img *vmdkImage) decompress(g, off int64) error {
	const F = "vmdk"
	if img.zbuf == nil {
		img.zbuf = make([]byte, img.grain)
	}
	img.zlba = -1
	var hdr [12]byte
	if err := img.readAt(F, "grain marker", hdr[:], off); err != nil {
		return err
	}
	le := binary.LittleEndian
	if lba := le.Uint64(hdr[:]); lba != uint64(g/512) {
		return formatErr(F, "grain marker lba", off, "sector %d, but the grain table maps it to sector %d", lba, g/512)
	}
	n := int64(le.Uint32(hdr[8:]))
	// zlib's worst case expansion is a few bytes per 16 KiB; allow generously more.
	if n == 0 || n > img.grain+img.grain/8+1024 {
		return formatErr(F, "grain marker size", off+8, "compressed size %d is zero or larger than a %d-byte grain can need", n, img.grain)
	}
	if n > img.fsize-off-12 {
		return formatErr(F, "grain marker size", off+8, "compressed size %d runs past the end of the file (%d bytes)", n, img.fsize)
	}
	if int64(cap(img.cbuf)) < n {
		img.cbuf = make([]byte, img.grain+img.grain/8+1024)
	}
	in := img.cbuf[:n]
	if err := img.readAt(F, "compressed grain", in, off+12); err != nil {
		return err
	}
	var err error
	if img.inflate == nil {
		img.inflate, err = zlib.NewReader(bytes.NewReader(in))
	} else {
		err = img.inflate.(zlib.Resetter).Reset(bytes.NewReader(in), nil)
	}
	// The last grain may be cut at the capacity; the rest reads as zeros.
	want := min(img.grain, img.size-g)
	got := 0
	if err == nil {
		got, err = io.ReadFull(img.inflate, img.zbuf)
		if errors.Is(err, io.ErrUnexpectedEOF) && int64(got) >= want {
			clear(img.zbuf[got:])
			err = nil
		}
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return formatErr(F, "compressed grain", off, "%d bytes decompress to %d bytes, want %d", n, got, want)
		}
		return formatErr(F, "compressed grain", off, "%d bytes do not decompress: %v", n, err)
	}
	img.zlba = g
	return nil
}
