package diskfmt

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/imgfab/imgfab/internal/iox"
)

// qcow2 writes qcow2 version 3 images (qemu docs/interop/qcow2.rst). Uncompressed, in one
// sequential pass over the output; compressed (deflate or zstd, see compress.go), with the tables
// after the data and the header written last.
type qcow2 struct {
	compress compression
}

var _ Format = qcow2{}
var _ configurable = qcow2{}

func init() { register(qcow2{}, ".qcow2") }

func (qcow2) Name() string { return "qcow2" }

// withOptions takes Compress "", "none", "deflate" or "zstd".
func (q qcow2) withOptions(o Options) (Format, error) {
	switch o.Compress {
	case "", "none":
		return qcow2{}, nil
	case "deflate":
		return qcow2{compress: compressDeflate}, nil
	case "zstd":
		return qcow2{compress: compressZstd}, nil
	}
	return nil, fmt.Errorf("diskfmt: format qcow2 has no compression %q (valid: none, deflate, zstd)", o.Compress)
}

const (
	qcowClusterBits = 16
	qcowCluster     = 1 << qcowClusterBits // 64 KiB
	qcowRefOrder    = 4                    // 16-bit refcounts
	qcowL2Entries   = qcowCluster / 8      // 8192 eight-byte entries per L2 table
	qcowL2Span      = qcowL2Entries * qcowCluster
	qcowRefsPerBlk  = qcowCluster * 8 / (1 << qcowRefOrder) // 32768 refcounts per refcount block
	qcowRTPerClus   = qcowCluster / 8                       // refcount table entries per cluster
	qcowMaxL1       = 32 << 20 / 8                          // qemu's QCOW_MAX_L1_SIZE (32 MiB) in entries
	qcowHeaderLen   = 112
	qcowCopied      = uint64(1) << 63 // "QCOW_OFLAG_COPIED": refcount is exactly 1
)

// qcow2Layout is where everything goes, in clusters from the start of the file.
type qcow2Layout struct {
	l1Size                 int64 // L1 entries
	l1Clusters             int64
	rtClusters, rbClusters int64 // refcount table, refcount blocks
	l2Tables, dataClusters int64
	rtStart, rbStart       int64
	l1Start, l2Start       int64
	dataStart, total       int64
}

// newQcow2Layout sizes the refcount structures by fixed-point iteration: the refcount blocks must
// count every cluster of the file, themselves and the refcount table included.
func newQcow2Layout(size, l2Tables, dataClusters int64) qcow2Layout {
	l := qcow2Layout{l2Tables: l2Tables, dataClusters: dataClusters}
	l.l1Size = ceilDiv(size, qcowL2Span)
	l.l1Clusters = ceilDiv(l.l1Size*8, qcowCluster)
	for {
		total := 1 + l.rtClusters + l.rbClusters + l.l1Clusters + l2Tables + dataClusters
		rb := ceilDiv(total, qcowRefsPerBlk)
		rt := ceilDiv(rb, qcowRTPerClus)
		if rb == l.rbClusters && rt == l.rtClusters {
			l.total = total
			break
		}
		l.rbClusters, l.rtClusters = rb, rt
	}
	l.rtStart = 1
	l.rbStart = l.rtStart + l.rtClusters
	l.l1Start = l.rbStart + l.rbClusters
	l.l2Start = l.l1Start + l.l1Clusters
	l.dataStart = l.l2Start + l2Tables
	return l
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// l2Bits marks the allocated (non-zero) guest clusters of one L2 table's range.
type l2Bits [qcowL2Entries / 64]uint64

// Write writes d to w as qcow2. The size of d must be a multiple of 512. Clusters outside the
// extents of d, and all-zero clusters, stay unallocated. Uncompressed, the output is strictly
// sequential (w may be a pipe). Compressed, see writeCompressed: w should be a seekable regular
// file (an *os.File or *Output); anything else gets the image through a temporary file in
// os.TempDir.
func (q qcow2) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("qcow2: %w", err)
	}
	size := d.Size()
	if size%512 != 0 {
		return fmt.Errorf("qcow2: disk size %d is not a multiple of 512", size)
	}
	if l1 := ceilDiv(size, qcowL2Span); l1 > qcowMaxL1 {
		return fmt.Errorf("qcow2: disk size %d needs %d L1 entries, more than qemu's %d", size, l1, qcowMaxL1)
	}
	if q.compress != compressNone {
		if err := q.writeCompressed(ctx, w, d); err != nil {
			return fmt.Errorf("qcow2 (%s): %w", q.compress, err)
		}
		return nil
	}
	prog := newProgress(ctx, 2*size)
	alloc, l2Tables, dataClusters, err := qcow2Scan(ctx, d, prog)
	if err != nil {
		return fmt.Errorf("qcow2: finding the data clusters of a %d-byte disk: %w", size, err)
	}
	l := newQcow2Layout(size, l2Tables, dataClusters)
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &iox.CountWriter{W: bw}
	if err := q.writeMeta(ctx, cw, size, l, alloc); err != nil {
		return fmt.Errorf("qcow2: writing metadata: %w", err)
	}
	if err := qcow2WriteData(ctx, cw, d, alloc, prog); err != nil {
		return fmt.Errorf("qcow2: writing %d data clusters: %w", dataClusters, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("qcow2: writing: %w", err)
	}
	if cw.N != l.total*qcowCluster {
		return fmt.Errorf("qcow2: wrote %d bytes, layout says %d clusters", cw.N, l.total)
	}
	prog.finish()
	return nil
}

// qcow2Scan marks the clusters of d that are not all zero (scanNonZero). It returns the marks per L1 entry (nil where an L2 range has no data), the number of
// L2 tables and the number of data clusters.
func qcow2Scan(ctx context.Context, d Disk, prog *progress) ([]*l2Bits, int64, int64, error) {
	size := d.Size()
	alloc := make([]*l2Bits, ceilDiv(size, qcowL2Span))
	var l2Tables, dataClusters int64
	buf := make([]byte, qcowCluster)
	err := scanNonZero(ctx, d, qcowCluster, buf, func(c int64) {
		t := alloc[c/qcowL2Entries]
		if t == nil {
			t = new(l2Bits)
			alloc[c/qcowL2Entries] = t
			l2Tables++
		}
		e := c % qcowL2Entries
		t[e/64] |= 1 << (e % 64)
		dataClusters++
	}, prog)
	return alloc, l2Tables, dataClusters, err
}

// clusterRanges rounds extents out to whole clusters and merges those that then touch.
func clusterRanges(exts []Extent) []Extent {
	var out []Extent
	for _, e := range exts {
		start := e.Off / qcowCluster * qcowCluster
		end := ceilDiv(e.End(), qcowCluster) * qcowCluster
		if n := len(out); n > 0 && out[n-1].End() >= start {
			out[n-1].Len = max(out[n-1].End(), end) - out[n-1].Off
			continue
		}
		out = append(out, Extent{start, end - start})
	}
	return out
}

// writeMeta writes every cluster before the data: header, refcount table, refcount blocks, L1
// table, L2 tables. It checks ctx between the refcount blocks and between the L2 tables, whose
// number follows the data.
func (qcow2) writeMeta(ctx context.Context, cw *iox.CountWriter, size int64, l qcow2Layout, alloc []*l2Bits) error {
	be := binary.BigEndian
	c := make([]byte, qcowCluster)

	qcow2Header(c, size, l.l1Size, l.l1Start*qcowCluster, l.rtStart*qcowCluster, l.rtClusters, compressNone)
	if _, err := cw.Write(c); err != nil { // bytes 105..111 padding, then zeros
		return fmt.Errorf("header: %w", err)
	}

	// Refcount table (qcow2.rst "Host cluster management"): entry i is the offset of refcount
	// block i; the rest of its clusters is zero.
	for k := int64(0); k < l.rtClusters; k++ {
		clear(c)
		for i := int64(0); i < qcowRTPerClus; i++ {
			if b := k*qcowRTPerClus + i; b < l.rbClusters {
				be.PutUint64(c[i*8:], uint64((l.rbStart+b)*qcowCluster))
			}
		}
		if _, err := cw.Write(c); err != nil {
			return fmt.Errorf("refcount table cluster %d: %w", k, err)
		}
	}

	// Refcount blocks: 16-bit big-endian refcounts, 1 for every cluster of the file.
	for b := int64(0); b < l.rbClusters; b++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(c)
		for i := int64(0); i < qcowRefsPerBlk && b*qcowRefsPerBlk+i < l.total; i++ {
			be.PutUint16(c[i*2:], 1)
		}
		if _, err := cw.Write(c); err != nil {
			return fmt.Errorf("refcount block %d: %w", b, err)
		}
	}

	// L1 table (qcow2.rst "Cluster mapping"): bits 9-55 the L2 table offset, bit 63 COPIED;
	// 0 for an unallocated L2 table. Its last cluster is zero-padded.
	next := l.l2Start
	for k := int64(0); k < l.l1Clusters; k++ {
		clear(c)
		for i := int64(0); i < qcowCluster/8; i++ {
			if e := k*qcowCluster/8 + i; e < l.l1Size && alloc[e] != nil {
				be.PutUint64(c[i*8:], uint64(next*qcowCluster)|qcowCopied)
				next++
			}
		}
		if _, err := cw.Write(c); err != nil {
			return fmt.Errorf("L1 table cluster %d: %w", k, err)
		}
	}

	// L2 tables, in L1 order: a standard cluster descriptor (bit 0 "all zeros" clear, bits 9-55
	// the host cluster offset), bit 62 clear (not compressed), bit 63 COPIED. Data clusters are
	// laid out in guest order, so the n-th allocated cluster lives at dataStart + n.
	data := l.dataStart
	for e, t := range alloc {
		if t == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(c)
		for w, word := range t {
			for word != 0 {
				i := w*64 + bits.TrailingZeros64(word)
				word &= word - 1
				be.PutUint64(c[i*8:], uint64(data*qcowCluster)|qcowCopied)
				data++
			}
		}
		if _, err := cw.Write(c); err != nil {
			return fmt.Errorf("L2 table for guest offset %d: %w", int64(e)*qcowL2Span, err)
		}
	}
	if data != l.dataStart+l.dataClusters || next != l.l2Start+l.l2Tables {
		return fmt.Errorf("layout mismatch: %d data clusters and %d L2 tables counted, %d and %d mapped",
			l.dataClusters, l.l2Tables, data-l.dataStart, next-l.l2Start)
	}
	if cw.N != l.dataStart*qcowCluster {
		return fmt.Errorf("layout mismatch: metadata is %d bytes, data should start at cluster %d", cw.N, l.dataStart)
	}
	return nil
}

// qcow2Header fills c[:qcowHeaderLen] with a version 3 header (qcow2.rst "Header"); the caller
// keeps the rest of cluster 0 zero, which ends the header extensions (qcow2.rst "Header
// extensions": type 0 is the end of the area). Offsets are in bytes from the start of the image.
func qcow2Header(c []byte, size, l1Size, l1Off, rtOff, rtClusters int64, ct compression) {
	be := binary.BigEndian
	var incompat uint64
	if ct == compressZstd {
		incompat |= 1 << 3 // bit 3: "Compression type bit", compression_type is non-zero
	}
	copy(c[0:4], "QFI\xfb")                  // magic
	be.PutUint32(c[4:], 3)                   // version
	be.PutUint64(c[8:], 0)                   // backing_file_offset: none
	be.PutUint32(c[16:], 0)                  // backing_file_size
	be.PutUint32(c[20:], qcowClusterBits)    // cluster_bits
	be.PutUint64(c[24:], uint64(size))       // size (guest bytes)
	be.PutUint32(c[32:], 0)                  // crypt_method: none
	be.PutUint32(c[36:], uint32(l1Size))     // l1_size (entries)
	be.PutUint64(c[40:], uint64(l1Off))      // l1_table_offset
	be.PutUint64(c[48:], uint64(rtOff))      // refcount_table_offset
	be.PutUint32(c[56:], uint32(rtClusters)) // refcount_table_clusters
	be.PutUint32(c[60:], 0)                  // nb_snapshots
	be.PutUint64(c[64:], 0)                  // snapshots_offset
	be.PutUint64(c[72:], incompat)           // incompatible_features
	be.PutUint64(c[80:], 0)                  // compatible_features
	be.PutUint64(c[88:], 0)                  // autoclear_features
	be.PutUint32(c[96:], qcowRefOrder)       // refcount_order
	be.PutUint32(c[100:], qcowHeaderLen)     // header_length
	c[104] = ct.qcowType()                   // compression_type: 0 deflate (also when unused), 1 zstd
	clear(c[105:qcowHeaderLen])              // padding to header_length
}

// qcow2WriteData copies the allocated clusters in guest order, reading runs of them in pieces of
// at most chunkSize.
func qcow2WriteData(ctx context.Context, cw *iox.CountWriter, d Disk, alloc []*l2Bits, prog *progress) error {
	size := d.Size()
	buf := make([]byte, chunkSize)
	const maxRun = chunkSize / qcowCluster
	flush := func(first, n int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		off := first * qcowCluster
		p := buf[:n*qcowCluster]
		if err := readFull(d, p, off); err != nil {
			return err
		}
		if _, err := cw.Write(p); err != nil {
			return fmt.Errorf("writing guest clusters at %d (+%d): %w", off, len(p), err)
		}
		prog.to(size + off + int64(len(p)))
		return nil
	}
	first, n := int64(-1), int64(0) // the current run of allocated clusters
	for e, t := range alloc {
		if t == nil {
			continue
		}
		for w, word := range t {
			for word != 0 {
				c := int64(e)*qcowL2Entries + int64(w*64+bits.TrailingZeros64(word))
				word &= word - 1
				if n > 0 && c == first+n && n < maxRun {
					n++
					continue
				}
				if n > 0 {
					if err := flush(first, n); err != nil {
						return err
					}
				}
				first, n = c, 1
			}
		}
	}
	if n > 0 {
		return flush(first, n)
	}
	return nil
}
