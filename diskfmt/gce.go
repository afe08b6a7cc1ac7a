package diskfmt

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/flate"
)

// gce writes a Google Compute Engine image tarball: a gzip'd GNU tar holding only disk.raw, the
// disk padded with zeros to a whole GiB (GCE image creation hangs on other sizes).
//
// The gzip member (RFC 1952) holds one deflate stream (RFC 1951) made of independent segments:
// the tar header, each 1 MiB of the disk, the tar trailer. Each segment is compressed on its own
// (no back-references into an earlier segment) and ends with a sync flush (an empty stored block)
// so the next one starts on a byte boundary; the last ends with the final block. The encoding of
// a segment depends only on its bytes, so the segments are compressed on all cores and the output
// is the same for any number of cores, and an all-zero MiB is the same bytes every time (encoded
// once, which keeps the zero padding cheap).
type gce struct{}

var _ Format = gce{}

func init() { register(gce{}, ".tar.gz") }

func (gce) Name() string { return "gce" }

const (
	gceAlign    = 1 << 30 // disk.raw is a whole number of GiB
	gceSegment  = 1 << 20 // guest bytes per deflate segment
	gceLevel    = 6
	gceFileName = "disk.raw"
)

// Write writes d to w as a GCE image tarball, strictly sequentially (w may be a pipe). The tar
// entry's modification time is the identity's Time (clamped at the Unix epoch).
func (g gce) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("gce: %w", err)
	}
	size := ceilDiv(d.Size(), gceAlign) * gceAlign
	mtime := identityFrom(ctx).Time.Truncate(time.Second)
	if mtime.Before(time.Unix(0, 0)) {
		mtime = time.Unix(0, 0)
	}
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     gceFileName,
		Mode:     0o644,
		Size:     size,
		ModTime:  mtime.UTC(),
		Format:   tar.FormatGNU,
	})
	if err != nil {
		return fmt.Errorf("gce: tar header for %s (%d bytes): %w", gceFileName, size, err)
	}
	if hdr.Len() != 512 {
		return fmt.Errorf("gce: tar header is %d bytes, want one 512-byte block", hdr.Len())
	}

	gw := &gceWriter{w: bufio.NewWriterSize(w, 1<<20)}
	// RFC 1952 section 2.3: ID1 ID2, CM 8 (deflate), FLG 0, MTIME 0 (none), XFL 0, OS 255 (unknown).
	if err := gw.write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}); err != nil {
		return fmt.Errorf("gce: writing gzip header: %w", err)
	}
	c := newGceCompressor()
	seg, err := c.segment(hdr.Bytes(), false)
	if err != nil {
		return fmt.Errorf("gce: compressing tar header: %w", err)
	}
	if err := gw.data(hdr.Bytes(), seg); err != nil {
		return fmt.Errorf("gce: writing tar header: %w", err)
	}
	prog := newProgress(ctx, size)
	if err := g.writeDisk(ctx, gw, d, size, c, prog); err != nil {
		return fmt.Errorf("gce: writing the %d-byte %s: %w", size, gceFileName, err)
	}
	// The tar trailer: two zero blocks (size is a multiple of 512, so no padding before them),
	// compressed as the last segment, with the final block.
	end := make([]byte, 1024)
	seg, err = c.segment(end, true)
	if err != nil {
		return fmt.Errorf("gce: compressing tar trailer: %w", err)
	}
	if err := gw.data(end, seg); err != nil {
		return fmt.Errorf("gce: writing tar trailer: %w", err)
	}
	// RFC 1952 section 2.3.1: CRC32 (IEEE) of the uncompressed data, then ISIZE (its length
	// mod 2^32), both little-endian.
	var t [8]byte
	binary.LittleEndian.PutUint32(t[0:], gw.crc)
	binary.LittleEndian.PutUint32(t[4:], uint32(gw.n))
	if err := gw.write(t[:]); err != nil {
		return fmt.Errorf("gce: writing gzip trailer: %w", err)
	}
	if err := gw.w.Flush(); err != nil {
		return fmt.Errorf("gce: writing: %w", err)
	}
	prog.finish()
	return nil
}

// gceWriter tracks the CRC and the length of the uncompressed data.
type gceWriter struct {
	w   *bufio.Writer
	crc uint32
	n   int64 // uncompressed bytes
	pos int64 // compressed bytes written
}

func (gw *gceWriter) write(p []byte) error {
	n, err := gw.w.Write(p)
	gw.pos += int64(n)
	return err
}

// data writes the compressed segment seg of the uncompressed bytes raw.
func (gw *gceWriter) data(raw, seg []byte) error {
	gw.crc = crc32.Update(gw.crc, crc32.IEEETable, raw)
	gw.n += int64(len(raw))
	if err := gw.write(seg); err != nil {
		return fmt.Errorf("at %d: %w", gw.pos, err)
	}
	return nil
}

// gceCompressor is one worker's deflate state.
type gceCompressor struct {
	fw  *flate.Writer
	buf bytes.Buffer
}

func newGceCompressor() *gceCompressor {
	fw, err := flate.NewWriter(io.Discard, gceLevel)
	if err != nil {
		panic(err) // a constant, valid level
	}
	return &gceCompressor{fw: fw}
}

// segment compresses p on its own; it ends with a sync flush, or with the final block when last.
// The returned slice is valid until the next call.
func (c *gceCompressor) segment(p []byte, last bool) ([]byte, error) {
	c.buf.Reset()
	c.fw.Reset(&c.buf)
	if _, err := c.fw.Write(p); err != nil {
		return nil, err
	}
	var err error
	if last {
		err = c.fw.Close()
	} else {
		err = c.fw.Flush()
	}
	return c.buf.Bytes(), err
}

// gceJob is one segment of the disk.
type gceJob struct {
	off  int64
	data []byte // nil for an all-zero segment outside the extents
	zero bool   // all zero: use the shared encoding
	out  []byte
	err  error
	done chan struct{}
}

// writeDisk compresses the disk padded to size in gceSegment pieces on GOMAXPROCS workers and
// writes them in order. Pieces outside the extents are not read.
func (gce) writeDisk(ctx context.Context, gw *gceWriter, d Disk, size int64, c *gceCompressor, prog *progress) error {
	zeroRaw := zeros[:gceSegment]
	zs, err := c.segment(zeroRaw, false)
	if err != nil {
		return fmt.Errorf("compressing a zero segment: %w", err)
	}
	zeroSeg := bytes.Clone(zs)

	nw := max(runtime.GOMAXPROCS(0), 1)
	work := make(chan *gceJob, nw)
	order := make(chan *gceJob, 2*nw)
	quit := make(chan struct{})
	pool := sync.Pool{New: func() any { return &gceJob{} }}
	var wg sync.WaitGroup
	for range nw {
		wg.Go(func() {
			c := newGceCompressor()
			for j := range work {
				if isZero(j.data) {
					j.zero = true
				} else {
					seg, err := c.segment(j.data, false)
					j.out, j.err = append(j.out[:0], seg...), err
				}
				close(j.done)
			}
		})
	}
	wg.Go(func() { // the reader: segments in order
		defer close(order)
		defer close(work)
		exts := d.Extents()
		for off := int64(0); off < size; off += gceSegment {
			j := pool.Get().(*gceJob)
			j.off, j.zero, j.out, j.err = off, false, j.out[:0], nil
			j.done = make(chan struct{})
			for len(exts) > 0 && exts[0].End() <= off {
				exts = exts[1:]
			}
			inExt := len(exts) > 0 && exts[0].Off < off+gceSegment
			if !inExt {
				j.zero = true
				close(j.done)
			} else {
				if cap(j.data) < gceSegment {
					j.data = make([]byte, gceSegment)
				}
				j.data = j.data[:gceSegment]
				if err := ctx.Err(); err != nil {
					j.err = err
				} else {
					j.err = vhdReadBlock(d, &exts, j.data, off)
				}
				if j.err != nil {
					close(j.done)
				}
			}
			select {
			case order <- j:
			case <-quit:
				return
			}
			if j.err != nil {
				return
			}
			if inExt {
				select {
				case work <- j:
				case <-quit:
					return
				}
			}
		}
	})
	err = func() error {
		for j := range order {
			<-j.done
			if j.err != nil {
				return fmt.Errorf("segment at %d: %w", j.off, j.err)
			}
			if j.zero {
				err = gw.data(zeroRaw, zeroSeg)
			} else {
				err = gw.data(j.data, j.out)
			}
			if err != nil {
				return fmt.Errorf("segment at %d: %w", j.off, err)
			}
			prog.to(j.off + gceSegment)
			pool.Put(j)
		}
		return nil
	}()
	close(quit)
	wg.Wait()
	return err
}
