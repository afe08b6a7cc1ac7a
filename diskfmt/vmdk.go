package diskfmt

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/imgfab/imgfab/internal/deflate"
)

// vmdk writes stream-optimized VMDK (VMware "Virtual Disk Format 5.0", "Stream-Optimized
// Compressed Sparse Extents"): one monolithic sparse extent with an embedded descriptor, zlib
// grains, grain tables after the grains they map, the grain directory, a footer and an
// end-of-stream marker. It is written in one strictly sequential pass (w may be a pipe).
type vmdk struct{}

var _ Format = vmdk{}

func init() { register(vmdk{}, ".vmdk") }

func (vmdk) Name() string { return "vmdk" }

const (
	vmdkSector       = 512
	vmdkGrainSectors = 128                           // grainSize: 64 KiB grains
	vmdkGrain        = vmdkGrainSectors * vmdkSector // bytes per grain
	vmdkGTEs         = 512                           // numGTEsPerGT
	vmdkGTSectors    = vmdkGTEs * 4 / vmdkSector     // a grain table is 2 KiB
	vmdkGTSpan       = vmdkGTEs * vmdkGrain          // guest bytes one grain table maps: 32 MiB
	vmdkOverhead     = vmdkGrainSectors              // overHead: sectors before the first grain
	vmdkGDAtEnd      = ^uint64(0)                    // GD_AT_END: the real gdOffset is in the footer
	vmdkFlags        = 1 | 1<<16 | 1<<17             // valid newline test, compressed grains, markers
	vmdkMaxSectors   = 1 << 32                       // grain and table offsets are 32-bit sectors
	vmdkJobBytes     = 1 << 20                       // guest bytes compressed per worker job
	vmdkGrainHdr     = 12                            // grain marker: u64 LBA, u32 compressed size
	vmdkMarkerGT     = 1                             // metadata marker types (5.0, "Markers")
	vmdkMarkerGD     = 2
	vmdkMarkerFooter = 3
	vmdkExtentName   = "disk.vmdk" // fixed, so the bytes do not depend on the output's name
	// internal/deflate at zlib's level 6 with block splitting: ~1.2 % smaller than C zlib 6
	// (qemu-img) on real grains at ~1.4× its CPU per core; all cores share the work, so it stays
	// faster than qemu-img (BENCHMARKS.md). Go's compress/zlib is 0.9 % larger than C zlib.
	vmdkCompressLvl = deflate.DefaultCompression
)

// vmdkMaxSize is the largest capacity written: 62 TiB, the largest virtual disk VMware accepts
// (vSphere 5.5 and later, "Configuration Maximums": virtual disk size 62 TB); qemu opens more (up to
// its 32 Mi grain directory entries, 1 PiB of 64 KiB grains). The grain directory then takes at
// most 7.75 MiB (4 bytes per 32 MiB of capacity).
const vmdkMaxSize = 62 << 40

// Write writes d to w as a stream-optimized VMDK. The capacity is the disk size rounded up to
// whole sectors (the padding reads as zeros); an empty disk, or one larger than 62 TiB
// (vmdkMaxSize), is an error. Holes and all-zero grains are not stored; the work and memory
// follow d's extents, apart from the grain directory (4 bytes per 32 MiB of capacity). Grains are
// compressed on all cores; the output does not depend on the number of cores.
func (v vmdk) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	size := d.Size()
	if size == 0 {
		return errors.New("vmdk: the disk is empty; a VMDK needs at least one sector (qemu rejects capacity 0)")
	}
	if size > vmdkMaxSize {
		return fmt.Errorf("vmdk: disk size %d (%d GiB) is more than the VMDK limit of %d bytes (62 TiB, VMware's largest virtual disk)", size, size>>30, int64(vmdkMaxSize))
	}
	capacity := uint64(ceilDiv(size, vmdkSector)) // sectors
	gdEntries := ceilDiv(ceilDiv(size, vmdkGrain), vmdkGTEs)
	sum := identityFrom(ctx).sum(v.Name(), size)
	cid := binary.BigEndian.Uint32(sum[:4])
	if cid >= 0xfffffffe { // ffffffff means "no parent" and fffffffe is reserved (5.0, "Header")
		cid -= 2
	}
	desc := vmdkDescriptor(cid, capacity)
	descSectors := ceilDiv(int64(len(desc)), vmdkSector)
	if 1+descSectors > vmdkOverhead {
		return fmt.Errorf("vmdk: descriptor of %d bytes does not fit before sector %d", len(desc), vmdkOverhead)
	}

	vw := &vmdkWriter{w: bufio.NewWriterSize(w, 1<<20), gd: make([]uint32, gdEntries), curGT: -1}
	// Sector 0: the header with gdOffset = GD_AT_END (5.0, "Stream-Optimized Compressed Sparse
	// Extents": the grain directory location is only known at the end, so it is in the footer).
	// Sector 1: the descriptor (descriptorOffset 1). Zeros up to overHead, where the grains start.
	head := make([]byte, vmdkOverhead*vmdkSector)
	vmdkPutHeader(head[:vmdkSector], capacity, uint64(descSectors), vmdkGDAtEnd)
	copy(head[vmdkSector:], desc)
	if err := vw.write(head); err != nil {
		return fmt.Errorf("vmdk: writing header and descriptor: %w", err)
	}

	prog := newProgress(ctx, size)
	if err := v.writeGrains(ctx, vw, d, prog); err != nil {
		return fmt.Errorf("vmdk: writing the grains of a %d-byte disk: %w", size, err)
	}
	if err := vw.flushGT(); err != nil {
		return fmt.Errorf("vmdk: writing grain table %d: %w", vw.curGT, err)
	}

	if err := vw.writeTrailer(capacity, uint64(descSectors)); err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	if err := vw.w.Flush(); err != nil {
		return fmt.Errorf("vmdk: writing: %w", err)
	}
	prog.finish()
	return nil
}

// writeTrailer writes the grain directory and the footer. Grain directory: a metadata marker (val
// = sectors of metadata that follow, size 0, type 2), then the GD (u32 sector offsets of the
// grain tables, 0 where a table would be all zero), padded to a sector. Then the footer marker
// (type 3, one sector follows), the footer (a copy of the header holding the real gdOffset), and
// the end-of-stream marker (an all-zero sector, type 0).
func (vw *vmdkWriter) writeTrailer(capacity, descSectors uint64) error {
	gdSectors := ceilDiv(int64(len(vw.gd))*4, vmdkSector)
	gdOffset := vw.pos/vmdkSector + 1
	if gdOffset+gdSectors+3 > vmdkMaxSectors {
		return fmt.Errorf("output reaches sector %d, past the 32-bit sector offsets", gdOffset+gdSectors+3)
	}
	at := vw.pos
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, zeros[:vmdkSector]...)
	vmdkPutMarker(buf, uint64(gdSectors), vmdkMarkerGD)
	for _, off := range vw.gd { // in pieces, so the buffer stays small whatever the capacity
		if len(buf) == cap(buf) {
			if err := vw.write(buf); err != nil {
				return fmt.Errorf("writing grain directory at %d: %w", at, err)
			}
			buf = buf[:0]
		}
		buf = binary.LittleEndian.AppendUint32(buf, off)
	}
	pad := int(-vw.pos-int64(len(buf))) & (vmdkSector - 1)
	buf = append(buf, zeros[:pad]...)
	f := make([]byte, 3*vmdkSector)
	vmdkPutMarker(f, 1, vmdkMarkerFooter)
	vmdkPutHeader(f[vmdkSector:2*vmdkSector], capacity, descSectors, uint64(gdOffset))
	if err := vw.write(append(buf, f...)); err != nil {
		return fmt.Errorf("writing grain directory and footer at %d: %w", at, err)
	}
	return nil
}

// vmdkPutHeader fills a 512-byte SparseExtentHeader (5.0, "Hosted Sparse Extent Header";
// little-endian, packed).
func vmdkPutHeader(h []byte, capacity, descSectors, gdOffset uint64) {
	le := binary.LittleEndian
	clear(h)
	copy(h[0:4], "KDMV")                   // 0: magicNumber
	le.PutUint32(h[4:], 3)                 // 4: version (3 for stream-optimized; ESXi rejects lower)
	le.PutUint32(h[8:], vmdkFlags)         // 8: flags
	le.PutUint64(h[12:], capacity)         // 12: capacity (sectors)
	le.PutUint64(h[20:], vmdkGrainSectors) // 20: grainSize (sectors)
	le.PutUint64(h[28:], 1)                // 28: descriptorOffset (sectors)
	le.PutUint64(h[36:], descSectors)      // 36: descriptorSize (sectors)
	le.PutUint32(h[44:], vmdkGTEs)         // 44: numGTEsPerGT
	le.PutUint64(h[48:], 0)                // 48: rgdOffset: no redundant GD (flag bit 1 clear)
	le.PutUint64(h[56:], gdOffset)         // 56: gdOffset (sectors)
	le.PutUint64(h[64:], vmdkOverhead)     // 64: overHead (sectors)
	h[72] = 0                              // 72: uncleanShutdown
	copy(h[73:77], "\n \r\n")              // 73: singleEndLineChar, nonEndLineChar, doubleEndLineChar1/2
	le.PutUint16(h[77:], 1)                // 77: compressAlgorithm: 1 = deflate (zlib)
	_ = h[vmdkSector-1]                    // 79..511: pad
}

// vmdkPutMarker fills a one-sector metadata marker (5.0, "Stream-Optimized Compressed Sparse
// Extents", Marker): u64 val (sectors of metadata that follow), u32 size (0), u32 type, then zeros.
func vmdkPutMarker(m []byte, val uint64, typ uint32) {
	clear(m[:vmdkSector])
	binary.LittleEndian.PutUint64(m[0:], val)
	binary.LittleEndian.PutUint32(m[8:], 0)
	binary.LittleEndian.PutUint32(m[12:], typ)
}

// vmdkDescriptor is the embedded descriptor (5.0, "The Descriptor File"). The geometry is the SCSI
// one (255 heads, 63 sectors) that VMware gives an lsilogic disk; toolsVersion 2147483647 ("tools
// unmanaged") keeps vSphere guest customisation available.
func vmdkDescriptor(cid uint32, capacity uint64) []byte {
	cyl := min(ceilDiv(int64(capacity), 255*63), 65535)
	return fmt.Appendf(nil, `# Disk DescriptorFile
version=1
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.toolsVersion = "2147483647"
ddb.virtualHWVersion = "4"
`, cid, capacity, vmdkExtentName, cyl)
}

// vmdkWriter is the output position and the grain table being filled.
type vmdkWriter struct {
	w     *bufio.Writer
	pos   int64 // bytes written, always a multiple of 512 between records
	gd    []uint32
	curGT int64 // index of the grain table being filled, -1 for none
	gt    [vmdkGTEs]uint32
}

func (vw *vmdkWriter) write(p []byte) error {
	n, err := vw.w.Write(p)
	vw.pos += int64(n)
	return err
}

// grain records the grain record about to be written at vw.pos for guest grain g, first writing
// the finished grain table when g starts a new one.
func (vw *vmdkWriter) grain(g int64) error {
	if t := g / vmdkGTEs; t != vw.curGT {
		if err := vw.flushGT(); err != nil {
			return fmt.Errorf("writing grain table %d: %w", vw.curGT, err)
		}
		vw.curGT = t
		clear(vw.gt[:])
	}
	s := vw.pos / vmdkSector
	if s >= vmdkMaxSectors {
		return fmt.Errorf("grain %d at sector %d: past the 32-bit sector offsets of a VMDK", g, s)
	}
	vw.gt[g%vmdkGTEs] = uint32(s) // GTE: the sector of the grain marker
	return nil
}

// flushGT writes the grain table being filled (a GT marker, then 512 u32 GTEs, 0 = not stored)
// and records its sector in the grain directory. Only tables with a stored grain are written.
func (vw *vmdkWriter) flushGT() error {
	if vw.curGT < 0 {
		return nil
	}
	var b [(1 + vmdkGTSectors) * vmdkSector]byte
	vmdkPutMarker(b[:], vmdkGTSectors, vmdkMarkerGT)
	for i, e := range vw.gt {
		binary.LittleEndian.PutUint32(b[vmdkSector+4*i:], e)
	}
	s := vw.pos/vmdkSector + 1
	if s >= vmdkMaxSectors {
		return fmt.Errorf("at sector %d: past the 32-bit sector offsets of a VMDK", s)
	}
	vw.gd[vw.curGT] = uint32(s)
	vw.curGT = -1
	return vw.write(b[:])
}

// vmdkJob is a run of whole grains of the guest, compressed by a worker into grain records.
type vmdkJob struct {
	off  int64  // guest offset, a multiple of vmdkGrain
	data []byte // the guest bytes, a whole number of grains
	out  []byte // grain records of the non-zero grains, each padded to 512
	recs []vmdkRec
	err  error
	done chan struct{}
}

type vmdkRec struct {
	grain int64 // guest grain number
	n     int   // bytes of out
}

// writeGrains reads the extents of d (rounded out to whole grains) in jobs of up to vmdkJobBytes,
// compresses them on GOMAXPROCS workers and writes the records in guest order.
func (vmdk) writeGrains(ctx context.Context, vw *vmdkWriter, d Disk, prog *progress) error {
	nw := max(runtime.GOMAXPROCS(0), 1)
	work := make(chan *vmdkJob, nw)
	order := make(chan *vmdkJob, 2*nw)
	quit := make(chan struct{})
	pool := sync.Pool{New: func() any { return &vmdkJob{data: make([]byte, vmdkJobBytes)} }}
	var wg sync.WaitGroup
	for range nw {
		wg.Go(func() {
			c := newVmdkCompressor()
			for j := range work {
				j.err = c.job(j)
				close(j.done)
			}
		})
	}
	wg.Go(func() { // the reader: jobs in guest order
		defer close(order)
		defer close(work)
		send := func(j *vmdkJob) bool {
			select {
			case order <- j:
			case <-quit:
				return false
			}
			if j.err != nil {
				return false
			}
			select {
			case work <- j:
				return true
			case <-quit:
				return false
			}
		}
		for _, e := range vmdkGrainRanges(d.Extents()) {
			for off := e.Off; off < e.End(); {
				end := min((off/vmdkJobBytes+1)*vmdkJobBytes, e.End())
				j := pool.Get().(*vmdkJob)
				j.off, j.data, j.out, j.recs, j.err = off, j.data[:end-off], j.out[:0], j.recs[:0], nil
				j.done = make(chan struct{})
				if err := ctx.Err(); err != nil {
					j.err = err
				} else if err := readFull(d, j.data, off); err != nil {
					j.err = err
				}
				if j.err != nil {
					close(j.done)
				}
				if !send(j) {
					return
				}
				off = end
			}
		}
	})
	err := func() error {
		for j := range order {
			<-j.done
			if j.err != nil {
				return j.err
			}
			out := j.out
			for _, r := range j.recs {
				if err := vw.grain(r.grain); err != nil {
					return err
				}
				if err := vw.write(out[:r.n]); err != nil {
					return fmt.Errorf("writing grain %d at %d: %w", r.grain, vw.pos, err)
				}
				out = out[r.n:]
			}
			prog.to(j.off + int64(len(j.data)))
			pool.Put(j)
		}
		return nil
	}()
	close(quit)
	wg.Wait()
	return err
}

// vmdkGrainRanges rounds extents out to whole grains and merges those that then touch.
func vmdkGrainRanges(exts []Extent) []Extent {
	var out []Extent
	for _, e := range exts {
		if e.Len == 0 {
			continue
		}
		start := e.Off / vmdkGrain * vmdkGrain
		end := ceilDiv(e.End(), vmdkGrain) * vmdkGrain
		if n := len(out); n > 0 && out[n-1].End() >= start {
			out[n-1].Len = max(out[n-1].End(), end) - out[n-1].Off
			continue
		}
		out = append(out, Extent{start, end - start})
	}
	return out
}

// vmdkCompressor is one worker's zlib state.
type vmdkCompressor struct {
	enc *deflate.Encoder
	rec []byte
}

func newVmdkCompressor() *vmdkCompressor {
	enc, err := deflate.NewEncoder(vmdkCompressLvl)
	if err != nil {
		panic(err) // a constant, valid level
	}
	return &vmdkCompressor{enc: enc}
}

// job turns each non-zero grain of j into a grain record (5.0, "Grain Marker"): u64 LBA (the
// guest sector of the grain), u32 size of the compressed data, the zlib (RFC 1950) stream of the
// whole grain, zeros up to the next sector.
func (c *vmdkCompressor) job(j *vmdkJob) error {
	for i := 0; i < len(j.data); i += vmdkGrain {
		g := j.data[i : i+vmdkGrain]
		if isZero(g) {
			continue
		}
		rec := c.enc.AppendZlib(append(c.rec[:0], zeros[:vmdkGrainHdr]...), g)
		c.rec = rec
		n := len(rec) - vmdkGrainHdr
		if n > 2*vmdkGrain-vmdkGrainHdr { // qemu reads at most two grains for a record
			return errors.New("compressed grain larger than two grains")
		}
		binary.LittleEndian.PutUint64(rec[0:], uint64((j.off+int64(i))/vmdkSector))
		binary.LittleEndian.PutUint32(rec[8:], uint32(n))
		start := len(j.out)
		j.out = append(j.out, rec...)
		pad := int(ceilDiv(int64(len(rec)), vmdkSector)*vmdkSector) - len(rec)
		j.out = append(j.out, zeros[:pad]...)
		j.recs = append(j.recs, vmdkRec{grain: (j.off + int64(i)) / vmdkGrain, n: len(j.out) - start})
	}
	return nil
}
