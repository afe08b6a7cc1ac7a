package diskfmt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/imgfab/imgfab/internal/deflate"
)

// A gzip member (RFC 1952) written as one deflate stream of independent segments: a prefix
// (GCE's tar header), each gzSegment of the disk padded with zeros to a given size, and a suffix
// (GCE's tar trailer). Each segment is compressed on its own by internal/deflate (zlib's level-6
// matching with block splitting: smaller than GNU gzip -6) and ends with a sync flush so the next
// starts on a byte boundary; the last one carries the final block. A segment's encoding depends
// only on its bytes, so segments are compressed on all cores and the output is the same for any
// number of cores; an all-zero segment is the same bytes every time (encoded once, which keeps
// holes and padding cheap). Used by gce and raw.gz.

const (
	gzSegment = 1 << 20 // guest bytes per deflate segment
	gzLevel   = deflate.DefaultCompression
)

// gzWriter tracks the CRC and the length of the uncompressed data.
type gzWriter struct {
	w   *bufio.Writer
	crc uint32
	n   int64 // uncompressed bytes
	pos int64 // compressed bytes written
}

func (gw *gzWriter) write(p []byte) error {
	n, err := gw.w.Write(p)
	gw.pos += int64(n)
	return err
}

// data writes the compressed segment seg of the uncompressed bytes raw.
func (gw *gzWriter) data(raw, seg []byte) error {
	gw.crc = crc32.Update(gw.crc, crc32.IEEETable, raw)
	gw.n += int64(len(raw))
	if err := gw.write(seg); err != nil {
		return fmt.Errorf("at %d: %w", gw.pos, err)
	}
	return nil
}

// zeroSegment writes the shared encoding seg of a whole gzSegment of zeros. The CRC is advanced
// without reading the zeros: appending n zero bytes multiplies the CRC register by x^(8n) modulo
// the polynomial, a linear map on the 32-bit register computed once (crcZeroSegment), so an
// empty disk costs its compressed output, not a CRC over every byte.
func (gw *gzWriter) zeroSegment(seg []byte) error {
	gw.crc = ^crcZeroSegment().apply(^gw.crc)
	gw.n += gzSegment
	if err := gw.write(seg); err != nil {
		return fmt.Errorf("at %d: %w", gw.pos, err)
	}
	return nil
}

// crcMatrix is a linear map on the CRC-32 register: column i is the image of bit i.
type crcMatrix [32]uint32

func (m *crcMatrix) apply(r uint32) uint32 {
	var v uint32
	for i := 0; r != 0; i, r = i+1, r>>1 {
		if r&1 != 0 {
			v ^= m[i]
		}
	}
	return v
}

// crcZeroSegment is the map of the raw CRC-32 register (IEEE, no pre- or post-inversion) over
// gzSegment zero bytes, found by running each basis register through crc32.Update.
var crcZeroSegment = sync.OnceValue(func() *crcMatrix {
	var m crcMatrix
	for i := range m {
		m[i] = ^crc32.Update(^(uint32(1) << i), crc32.IEEETable, zeros[:gzSegment])
	}
	return &m
})

// writeGzipSegments writes to w one gzip member holding prefix, the disk padded with zeros to
// size, then suffix. The header has no name, no comment and MTIME 0 (RFC 1952 2.3: none).
func writeGzipSegments(ctx context.Context, w io.Writer, prefix []byte, d Disk, size int64, suffix []byte, prog *progress) error {
	gw := &gzWriter{w: bufio.NewWriterSize(w, 1<<20)}
	// RFC 1952 section 2.3: ID1 ID2, CM 8 (deflate), FLG 0, MTIME 0 (none), XFL 0, OS 255 (unknown).
	if err := gw.write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}); err != nil {
		return fmt.Errorf("writing gzip header: %w", err)
	}
	enc, err := deflate.NewEncoder(gzLevel)
	if err != nil {
		return err
	}
	if len(prefix) > 0 {
		if err := gw.data(prefix, enc.AppendSegment(nil, prefix, false)); err != nil {
			return fmt.Errorf("writing the %d bytes before the disk: %w", len(prefix), err)
		}
	}
	if err := gzipDisk(ctx, gw, d, size, enc, prog); err != nil {
		return err
	}
	if err := gw.data(suffix, enc.AppendSegment(nil, suffix, true)); err != nil {
		return fmt.Errorf("writing the %d bytes after the disk: %w", len(suffix), err)
	}
	// RFC 1952 section 2.3.1: CRC32 (IEEE) of the uncompressed data, then ISIZE (its length
	// mod 2^32), both little-endian.
	var t [8]byte
	binary.LittleEndian.PutUint32(t[0:], gw.crc)
	binary.LittleEndian.PutUint32(t[4:], uint32(gw.n))
	if err := gw.write(t[:]); err != nil {
		return fmt.Errorf("writing gzip trailer: %w", err)
	}
	if err := gw.w.Flush(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// gzJob is one segment of the disk.
type gzJob struct {
	off  int64
	data []byte // the segment's bytes; unused for an all-zero segment outside the extents
	zero bool   // a whole all-zero segment: use the shared encoding
	out  []byte
	err  error
	done chan struct{}
}

// gzipDisk compresses the disk padded to size in gzSegment pieces on GOMAXPROCS workers and
// writes them in order. Pieces outside the extents are not read. The context is checked before
// every segment, holes included, so a cancelled write stops within one segment per worker.
func gzipDisk(ctx context.Context, gw *gzWriter, d Disk, size int64, enc *deflate.Encoder, prog *progress) error {
	zeroRaw := zeros[:gzSegment]
	zeroSeg := bytes.Clone(enc.AppendSegment(nil, zeroRaw, false))

	nw := max(runtime.GOMAXPROCS(0), 1)
	work := make(chan *gzJob, nw)
	order := make(chan *gzJob, 2*nw)
	quit := make(chan struct{})
	pool := sync.Pool{New: func() any { return &gzJob{} }}
	var wg sync.WaitGroup
	for range nw {
		wg.Go(func() {
			enc, _ := deflate.NewEncoder(gzLevel) // a constant, valid level
			for j := range work {
				if len(j.data) == gzSegment && isZero(j.data) {
					j.zero = true
				} else {
					j.out = enc.AppendSegment(j.out[:0], j.data, false)
				}
				close(j.done)
			}
		})
	}
	wg.Go(func() { // the reader: segments in order
		defer close(order)
		defer close(work)
		exts := d.Extents()
		for off := int64(0); off < size; off += gzSegment {
			n := min(gzSegment, size-off)
			j := pool.Get().(*gzJob)
			j.off, j.zero, j.out, j.err = off, false, j.out[:0], nil
			j.done = make(chan struct{})
			for len(exts) > 0 && exts[0].End() <= off {
				exts = exts[1:]
			}
			if cap(j.data) < gzSegment {
				j.data = make([]byte, gzSegment)
			}
			j.data = j.data[:n]
			inExt := len(exts) > 0 && exts[0].Off < off+n
			switch j.err = ctx.Err(); {
			case j.err != nil: // cancelled: checked for every segment, holes included
				close(j.done)
			case !inExt && n == gzSegment:
				j.zero = true
				close(j.done)
			case !inExt:
				clear(j.data) // a short last segment of zeros: compressed like data
			default:
				if j.err = vhdReadBlock(d, &exts, j.data, off); j.err != nil {
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
			if !j.zero {
				select {
				case work <- j:
				case <-quit:
					return
				}
			}
		}
	})
	err := func() error {
		for j := range order {
			<-j.done
			if j.err != nil {
				return fmt.Errorf("segment at %d: %w", j.off, j.err)
			}
			var err error
			if j.zero {
				err = gw.zeroSegment(zeroSeg)
			} else {
				err = gw.data(j.data, j.out)
			}
			if err != nil {
				return fmt.Errorf("segment at %d: %w", j.off, err)
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
