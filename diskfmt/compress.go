package diskfmt

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/imgfab/imgfab/internal/iox"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// compression is the per-cluster compression of a qcow2 image.
type compression uint8

const (
	compressNone compression = iota
	compressDeflate
	compressZstd
)

func (c compression) String() string {
	switch c {
	case compressDeflate:
		return "deflate"
	case compressZstd:
		return "zstd"
	}
	return "none"
}

// qcowType is the header's compression_type byte (qcow2.rst "Header", byte 104): 0 zlib
// (deflate), 1 zstd.
func (c compression) qcowType() byte {
	if c == compressZstd {
		return 1
	}
	return 0
}

const (
	// qcowCompressedBit marks a compressed L2 entry (qcow2.rst "Cluster mapping", L2 table
	// entry bit 62).
	qcowCompressedBit = uint64(1) << 62
	// qcowCsizeShift is x = 62 - (cluster_bits - 8) of qcow2.rst "Compressed Clusters
	// Descriptor": bits 0..x-1 are the host byte offset, bits x..61 the number of additional
	// 512-byte sectors. With 64 KiB clusters x = 54.
	qcowCsizeShift = 62 - (qcowClusterBits - 8)
	qcowCsizeMask  = 1<<(62-qcowCsizeShift) - 1 // 8 bits: at most 255 additional sectors
	qcowSector     = 512

	// Compression levels: deflate 6 (klauspost/compress/flate), zstd "default" (about zstd -3).
	qcowDeflateLevel = 6
	qcowZstdLevel    = zstd.SpeedBetterCompression

	cjobClusters = 16 // clusters per compression job (1 MiB of guest)
	cjobBytes    = cjobClusters * qcowCluster
)

// clusterCompressor compresses single clusters; each worker goroutine has its own.
type clusterCompressor interface {
	// compress appends the compressed form of p to dst.
	compress(dst, p []byte) ([]byte, error)
}

func newClusterCompressor(c compression) (clusterCompressor, error) {
	switch c {
	case compressDeflate:
		fw, err := flate.NewWriter(nil, qcowDeflateLevel)
		if err != nil {
			return nil, err
		}
		return &deflateCompressor{fw: fw}, nil
	case compressZstd:
		// One frame per cluster (qcow2.rst "compression_type": zstd), no checksum (qemu does not
		// write one either), the content size in the frame header.
		// The window is the cluster: nothing reaches further back, and the smaller tables make
		// each cluster's encode ~20 % faster.
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
			zstd.WithEncoderLevel(qcowZstdLevel), zstd.WithWindowSize(qcowCluster))
		if err != nil {
			return nil, err
		}
		return zstdCompressor{enc}, nil
	}
	return nil, fmt.Errorf("no compressor for %v", c)
}

// deflateCompressor writes raw RFC 1951 deflate (no zlib header), as qcow2 compression type 0
// wants. The stream may refer back up to 32 KiB; qemu inflates each cluster in one call into a
// 64 KiB buffer, so its 4 KiB window setting does not limit that (checked with qemu-img compare).
type deflateCompressor struct {
	fw  *flate.Writer
	out appendWriter
}

func (c *deflateCompressor) compress(dst, p []byte) ([]byte, error) {
	c.out.b = dst
	c.fw.Reset(&c.out)
	if _, err := c.fw.Write(p); err != nil {
		return dst, err
	}
	if err := c.fw.Close(); err != nil {
		return dst, err
	}
	return c.out.b, nil
}

type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

type zstdCompressor struct{ enc *zstd.Encoder }

func (c zstdCompressor) compress(dst, p []byte) ([]byte, error) { return c.enc.EncodeAll(p, dst), nil }

// A cjob is one piece of the guest (up to cjobClusters clusters) and what became of each cluster.
type cjob struct {
	off  int64  // guest offset, cluster-aligned
	in   []byte // the guest bytes, whole clusters
	out  []byte // the compressed clusters, back to back
	kind [cjobClusters]int8
	end  [cjobClusters]int32 // for clusterCompressed: the end of its bytes in out
	err  error
	done chan struct{}
}

const (
	clusterZero       = iota // all zeros: left unallocated
	clusterPlain             // stored as it is (compression did not shrink it)
	clusterCompressed        // stored compressed
)

// compressJob classifies and compresses the clusters of j.
func compressJob(j *cjob, cc clusterCompressor) {
	j.out = j.out[:0]
	for i := 0; i*qcowCluster < len(j.in); i++ {
		p := j.in[i*qcowCluster : (i+1)*qcowCluster]
		if isZero(p) {
			j.kind[i] = clusterZero
			continue
		}
		start := len(j.out)
		out, err := cc.compress(j.out, p)
		if err != nil {
			j.err = fmt.Errorf("compressing guest cluster at %d: %w", j.off+int64(i)*qcowCluster, err)
			return
		}
		if len(out)-start >= qcowCluster { // did not shrink: store the cluster plain
			j.out = out[:start]
			j.kind[i] = clusterPlain
			continue
		}
		j.out = out
		j.kind[i] = clusterCompressed
		j.end[i] = int32(len(out))
	}
}

// writeCompressed writes a qcow2 image whose data clusters are compressed one by one.
//
// Layout: cluster 0 is the header; then, in guest order, the data: compressed clusters packed
// byte after byte (a host cluster may hold the ends and starts of several), plain clusters
// (those that did not shrink) cluster-aligned, each L2 table right after the data of its 512 MiB
// of guest, each refcount block after the 2 GiB of the file it counts; at the end the L1 table,
// the refcount table and the last refcount blocks. The header, which points at the L1 and
// refcount tables, is written last, so w must seek: when w is not a seekable regular file (a
// pipe), the image is written to a temporary file in os.TempDir ($TMPDIR) and then copied to w.
//
// The guest is read once. Clusters are compressed in parallel (GOMAXPROCS workers, jobs of 1 MiB
// of guest) and placed in guest order, so the output does not depend on the number of workers.
// Memory is about 2 MiB per worker plus one L2 table, one refcount block and the L1 table.
func (q qcow2) writeCompressed(ctx context.Context, w io.Writer, d Disk) error {
	if st, base, ok := sparseTarget(w); ok {
		return q.writeCompressedAt(ctx, w, st, base, d)
	}
	tmp, err := os.CreateTemp("", "imgfab-qcow2-*")
	if err != nil {
		return fmt.Errorf("creating a temporary file for a non-seekable output: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := q.writeCompressedAt(ctx, tmp, tmp, 0, d); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewinding temporary file %s: %w", tmp.Name(), err)
	}
	if _, err := io.Copy(w, iox.CtxReader{Ctx: ctx, R: tmp}); err != nil {
		return fmt.Errorf("copying temporary file %s to the output: %w", tmp.Name(), err)
	}
	return nil
}

// writeCompressedAt writes the image to w, whose current offset is base; st seeks and truncates w.
func (q qcow2) writeCompressedAt(ctx context.Context, w io.Writer, st seekTruncater, base int64, d Disk) error {
	size := d.Size()
	cw := &qcowCompWriter{
		bw:   bufio.NewWriterSize(w, 1<<20),
		l1:   make([]uint64, ceilDiv(size, qcowL2Span)),
		l2:   make([]uint64, qcowL2Entries),
		l2At: -1,
		refs: make([]uint16, qcowRefsPerBlk),
	}
	// Cluster 0: room for the header, written at the end.
	if err := cw.cluster(zeros[:qcowCluster]); err != nil {
		return fmt.Errorf("writing header cluster: %w", err)
	}
	prog := newProgress(ctx, size)
	err := compressClusters(ctx, d, q.compress, func(j *cjob) error {
		start := 0
		for i := 0; i*qcowCluster < len(j.in); i++ {
			guest := j.off + int64(i)*qcowCluster
			switch j.kind[i] {
			case clusterPlain:
				if err := cw.plain(guest, j.in[i*qcowCluster:(i+1)*qcowCluster]); err != nil {
					return err
				}
			case clusterCompressed:
				end := int(j.end[i])
				if err := cw.compressed(guest, j.out[start:end]); err != nil {
					return err
				}
				start = end
			}
		}
		prog.to(min(j.off+int64(len(j.in)), size))
		return nil
	})
	if err != nil {
		return err
	}
	total, err := cw.finish()
	if err != nil {
		return err
	}
	if err := cw.bw.Flush(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	hdr := make([]byte, qcowHeaderLen)
	qcow2Header(hdr, size, int64(len(cw.l1)), cw.l1Off, cw.rtOff, cw.rtClusters, q.compress)
	if _, err := st.Seek(base, io.SeekStart); err != nil {
		return fmt.Errorf("seeking to the header at %d: %w", base, err)
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("writing header at %d: %w", base, err)
	}
	if err := st.Truncate(base + total); err != nil { // drop anything an old file had after the image
		return fmt.Errorf("truncating output to %d: %w", base+total, err)
	}
	if _, err := st.Seek(base+total, io.SeekStart); err != nil {
		return fmt.Errorf("seeking output to %d: %w", base+total, err)
	}
	prog.finish()
	return nil
}

// compressClusters reads the data clusters of d in guest order, compresses them on GOMAXPROCS
// goroutines and calls put with each job, in guest order, from the calling goroutine.
func compressClusters(ctx context.Context, d Disk, c compression, put func(*cjob) error) error {
	workers := runtime.GOMAXPROCS(0)
	nJobs := workers + 4
	comps := make([]clusterCompressor, workers)
	for i := range comps {
		var err error
		if comps[i], err = newClusterCompressor(c); err != nil {
			return fmt.Errorf("setting up %v compression: %w", c, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	free := make(chan *cjob, nJobs)
	for range nJobs {
		free <- &cjob{in: make([]byte, cjobBytes), out: make([]byte, 0, cjobBytes)}
	}
	work := make(chan *cjob, nJobs)
	order := make(chan *cjob, nJobs)
	var wg sync.WaitGroup

	wg.Go(func() { // reader: jobs in guest order
		defer close(order)
		defer close(work)
		for _, e := range clusterRanges(d.Extents()) {
			for off := e.Off; off < e.End(); off += cjobBytes {
				var j *cjob
				select {
				case j = <-free:
				case <-ctx.Done():
					return
				}
				j.off, j.in, j.err, j.done = off, j.in[:min(cjobBytes, e.End()-off)], nil, make(chan struct{})
				if err := readFull(d, j.in, off); err != nil {
					j.err = err
					close(j.done)
					order <- j
					return
				}
				order <- j // never blocks: at most nJobs jobs exist
				work <- j
			}
		}
	})
	for _, cc := range comps {
		wg.Go(func() {
			for j := range work {
				if ctx.Err() == nil {
					compressJob(j, cc)
				} else {
					j.err = ctx.Err()
				}
				close(j.done)
			}
		})
	}
	defer func() {
		cancel()
		for j := range order { // let the reader and the workers finish before returning
			<-j.done
		}
		wg.Wait()
	}()

	for j := range order {
		<-j.done
		if j.err != nil {
			return j.err
		}
		if err := put(j); err != nil {
			return err
		}
		free <- j
	}
	return ctx.Err()
}

// qcowCompWriter lays out a compressed qcow2 image as it is written; offsets are in bytes from the
// start of the image.
type qcowCompWriter struct {
	bw  *bufio.Writer
	pos int64 // bytes written

	l1   []uint64 // L1 table (qcow2.rst "Cluster mapping")
	l2   []uint64 // the L2 table being filled
	l2At int64    // its L1 index, -1 for none

	refs    []uint16 // refcounts of host clusters [win*qcowRefsPerBlk, (win+1)*qcowRefsPerBlk)
	win     int64
	rbOff   []int64  // file offsets of the refcount blocks written so far, by block index
	pending [][]byte // finished refcount blocks (for windows len(rbOff)...) not yet written

	l1Off, rtOff, rtClusters int64 // set by finish
}

func (cw *qcowCompWriter) write(p []byte) error {
	n, err := cw.bw.Write(p)
	cw.pos += int64(n)
	return err
}

// ref adds one reference to host cluster c. Clusters are referenced in increasing order (a
// cluster may be referenced again as long as no later one was), so the refcounts of a window
// are final once a cluster after it is referenced.
func (cw *qcowCompWriter) ref(c int64) error {
	for c >= (cw.win+1)*qcowRefsPerBlk {
		blk := make([]byte, qcowCluster)
		for i, r := range cw.refs { // qcow2.rst "Host cluster management": refcount_order 4, big-endian u16
			binary.BigEndian.PutUint16(blk[i*2:], r)
		}
		cw.pending = append(cw.pending, blk)
		clear(cw.refs)
		cw.win++
	}
	i := c - cw.win*qcowRefsPerBlk
	if i < 0 {
		return fmt.Errorf("layout: host cluster %d referenced after refcount block %d was finished", c, cw.win)
	}
	if cw.refs[i] == 0xffff {
		return fmt.Errorf("layout: host cluster %d has more than 65535 references", c)
	}
	cw.refs[i]++
	return nil
}

// align pads to the next cluster boundary. The padding lies in a cluster already referenced.
func (cw *qcowCompWriter) align() error {
	if n := -cw.pos & (qcowCluster - 1); n != 0 {
		return cw.write(zeros[:n])
	}
	return nil
}

// cluster writes p (one cluster) at the next cluster boundary, with refcount 1.
func (cw *qcowCompWriter) cluster(p []byte) error {
	if err := cw.align(); err != nil {
		return err
	}
	if err := cw.ref(cw.pos / qcowCluster); err != nil {
		return err
	}
	return cw.write(p)
}

// flushPending writes the finished refcount blocks, at the next cluster boundary.
func (cw *qcowCompWriter) flushPending() error {
	for len(cw.pending) > 0 {
		blk := cw.pending[0]
		cw.pending = cw.pending[1:]
		if err := cw.align(); err != nil {
			return err
		}
		off := cw.pos
		if err := cw.cluster(blk); err != nil {
			return fmt.Errorf("refcount block %d at %d: %w", len(cw.rbOff), off, err)
		}
		cw.rbOff = append(cw.rbOff, off)
	}
	return nil
}

// l2For makes the L2 table being filled the one for guest offset g, first writing out the one of
// the previous 512 MiB range when g is in a new one.
func (cw *qcowCompWriter) l2For(g int64) error {
	if at := g / qcowL2Span; at != cw.l2At {
		if err := cw.flushL2(); err != nil {
			return err
		}
		cw.l2At = at
	}
	return nil
}

// flushL2 writes the L2 table being filled and points its L1 entry at it (qcow2.rst "Cluster
// mapping": L1 entry bits 9-55 the L2 table offset, bit 63 COPIED as its refcount is 1).
func (cw *qcowCompWriter) flushL2() error {
	if cw.l2At < 0 {
		return nil
	}
	if err := cw.flushPending(); err != nil {
		return err
	}
	if err := cw.align(); err != nil {
		return err
	}
	off := cw.pos
	blk := make([]byte, qcowCluster)
	for i, e := range cw.l2 {
		binary.BigEndian.PutUint64(blk[i*8:], e)
	}
	if err := cw.cluster(blk); err != nil {
		return fmt.Errorf("L2 table for guest offset %d at %d: %w", cw.l2At*qcowL2Span, off, err)
	}
	cw.l1[cw.l2At] = uint64(off) | qcowCopied
	clear(cw.l2)
	cw.l2At = -1
	return nil
}

// plain stores the guest cluster at g uncompressed: a standard cluster descriptor (qcow2.rst
// "Standard Cluster Descriptor": bits 9-55 the cluster-aligned host offset; L2 entry bit 63 COPIED
// as the refcount is 1).
func (cw *qcowCompWriter) plain(g int64, p []byte) error {
	if err := cw.l2For(g); err != nil {
		return err
	}
	if err := cw.flushPending(); err != nil {
		return err
	}
	if err := cw.align(); err != nil {
		return err
	}
	off := cw.pos
	cw.l2[g%qcowL2Span/qcowCluster] = uint64(off) | qcowCopied
	if err := cw.cluster(p); err != nil {
		return fmt.Errorf("guest cluster %d at %d: %w", g, off, err)
	}
	return nil
}

// compressed stores the compressed guest cluster at g right after the previous bytes (qcow2.rst
// "Compressed Clusters Descriptor": bits 0..53 the host byte offset, bits 54..61 the number of
// 512-byte sectors after the one holding that offset; L2 entry bit 62 set, bit 63 clear). Each
// host cluster the sectors touch gets one reference, as qemu-img check counts them.
func (cw *qcowCompWriter) compressed(g int64, p []byte) error {
	if err := cw.l2For(g); err != nil {
		return err
	}
	if err := cw.flushPending(); err != nil {
		return err
	}
	off := cw.pos
	last := (off + int64(len(p)) - 1) / qcowSector // last sector touched
	extra := last - off/qcowSector
	if extra > qcowCsizeMask || off >= 1<<qcowCsizeShift {
		return fmt.Errorf("guest cluster %d: %d compressed bytes at %d do not fit a compressed descriptor", g, len(p), off)
	}
	cw.l2[g%qcowL2Span/qcowCluster] = qcowCompressedBit | uint64(extra)<<qcowCsizeShift | uint64(off)
	if err := cw.write(p); err != nil {
		return fmt.Errorf("guest cluster %d: writing %d compressed bytes at %d: %w", g, len(p), off, err)
	}
	for c := off / qcowCluster; c <= (last*qcowSector+qcowSector-1)/qcowCluster; c++ {
		if err := cw.ref(c); err != nil {
			return err
		}
	}
	return nil
}

// finish writes the last L2 table, the L1 table, the refcount table and the last refcount blocks,
// and returns the image size. The refcount structures are sized by fixed-point iteration: the
// last blocks count every cluster up to the end, themselves included.
func (cw *qcowCompWriter) finish() (int64, error) {
	if err := cw.flushL2(); err != nil {
		return 0, err
	}
	if err := cw.flushPending(); err != nil {
		return 0, err
	}
	if err := cw.align(); err != nil {
		return 0, err
	}
	if int64(len(cw.rbOff)) != cw.win {
		return 0, fmt.Errorf("layout: %d refcount blocks written before window %d", len(cw.rbOff), cw.win)
	}
	p := cw.pos / qcowCluster
	l1Clusters := ceilDiv(int64(len(cw.l1))*8, qcowCluster)
	var rt, nb int64 = 1, 1
	var total int64
	for {
		total = p + l1Clusters + rt + nb
		nb2 := ceilDiv(total, qcowRefsPerBlk) - cw.win
		rt2 := ceilDiv(cw.win+nb2, qcowRTPerClus)
		if nb2 == nb && rt2 == rt {
			break
		}
		nb, rt = nb2, rt2
	}
	cw.l1Off = p * qcowCluster
	cw.rtOff = (p + l1Clusters) * qcowCluster
	cw.rtClusters = rt
	rbStart := p + l1Clusters + rt

	// L1 table, zero-padded to whole clusters.
	be := binary.BigEndian
	c := make([]byte, qcowCluster)
	for k := int64(0); k < l1Clusters; k++ {
		clear(c)
		for i := int64(0); i < qcowCluster/8 && k*qcowCluster/8+i < int64(len(cw.l1)); i++ {
			be.PutUint64(c[i*8:], cw.l1[k*qcowCluster/8+i])
		}
		if err := cw.write(c); err != nil {
			return 0, fmt.Errorf("L1 table cluster %d: %w", k, err)
		}
	}
	// Refcount table (qcow2.rst "Host cluster management"): entry i is the offset of refcount
	// block i.
	for k := int64(0); k < rt; k++ {
		clear(c)
		for i := int64(0); i < qcowRTPerClus; i++ {
			b := k*qcowRTPerClus + i
			switch {
			case b < cw.win:
				be.PutUint64(c[i*8:], uint64(cw.rbOff[b]))
			case b < cw.win+nb:
				be.PutUint64(c[i*8:], uint64((rbStart+b-cw.win)*qcowCluster))
			}
		}
		if err := cw.write(c); err != nil {
			return 0, fmt.Errorf("refcount table cluster %d: %w", k, err)
		}
	}
	// The last refcount blocks: the current window's counts, and 1 for every cluster from p on.
	for b := cw.win; b < cw.win+nb; b++ {
		clear(c)
		for i := int64(0); i < qcowRefsPerBlk; i++ {
			r := uint16(0)
			if b == cw.win {
				r = cw.refs[i]
			}
			if cl := b*qcowRefsPerBlk + i; cl >= p && cl < total {
				r = 1
			}
			be.PutUint16(c[i*2:], r)
		}
		if err := cw.write(c); err != nil {
			return 0, fmt.Errorf("refcount block %d: %w", b, err)
		}
	}
	if cw.pos != total*qcowCluster {
		return 0, fmt.Errorf("layout: wrote %d bytes, layout says %d clusters", cw.pos, total)
	}
	return cw.pos, nil
}
