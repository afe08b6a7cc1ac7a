package diskfmt

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Sum is the sha256 and length of a written output file.
type Sum struct {
	SHA256 string // hex; "" when the output was not hashed
	Bytes  int64
}

// WriteOutput writes d to out in format f and returns its length and, when hash is set, the
// sha256 of what it wrote, hashed on the fly by a goroutine of its own (on another core) rather
// than by reading the file back. Holes the writer seeks over or truncates to are hashed as zeros.
// Where the writer goes back over bytes already hashed (no format here does), the file is hashed
// from its start after the write. While it writes, the written range is handed to the kernel for
// writeback every writebackEvery bytes, so the fsync of Commit has little left to do. out is not
// committed.
func WriteOutput(ctx context.Context, out *Output, f Format, d Disk, hash bool) (Sum, error) {
	hw := newHashWriter(out, hash)
	err := f.Write(ctx, hw, d)
	sum, ok := hw.finish()
	if err != nil {
		return Sum{}, fmt.Errorf("diskfmt: writing %s as %s: %w", out.path, f.Name(), err)
	}
	if !ok {
		return FileSum(ctx, out.File)
	}
	return sum, nil
}

// writebackEvery is how many bytes a hashWriter or a WritebackFile lets through between two
// writeback hints.
const writebackEvery = 64 << 20

// hashWriter passes a format writer's writes and seeks to an Output and feeds the same bytes, in
// file order, to a sha256 running in its own goroutine (ch is nil when it does not hash). It keeps the Output's Seek, Truncate and
// Stat, so the raw and fixed-VHD writers still leave holes.
type hashWriter struct {
	out    *Output
	pos    int64 // file offset of the next write
	hashed int64 // bytes fed to the hash so far
	end    int64 // the file's size as the writer left it
	broken bool  // bytes already hashed were written again
	synced int64 // bytes handed to writeback
	ch     chan hashChunk
	done   chan Sum
	pool   sync.Pool
}

// hashChunk is data (buf[:n], returned to the pool after hashing) or a run of zeros.
type hashChunk struct {
	buf   *[]byte
	n     int
	zeros int64
}

const hashBuf = 1 << 20

func newHashWriter(out *Output, hash bool) *hashWriter {
	w := &hashWriter{out: out}
	if !hash {
		return w
	}
	w.ch, w.done = make(chan hashChunk, 8), make(chan Sum, 1)
	w.pool.New = func() any { b := make([]byte, hashBuf); return &b }
	go w.hash()
	return w
}

func (w *hashWriter) hash() {
	h := sha256.New()
	zero := make([]byte, hashBuf)
	var n int64
	for c := range w.ch {
		if c.buf != nil {
			h.Write((*c.buf)[:c.n])
			w.pool.Put(c.buf)
			n += int64(c.n)
			continue
		}
		for z := c.zeros; z > 0; {
			k := min(z, hashBuf)
			h.Write(zero[:k])
			z -= k
		}
		n += c.zeros
	}
	w.done <- Sum{SHA256: fmt.Sprintf("%x", h.Sum(nil)), Bytes: n}
}

// feedZeros hashes the gap up to off as zeros; it reports false when off is behind the hash.
func (w *hashWriter) feedZeros(off int64) bool {
	if w.ch == nil {
		return true
	}
	if off < w.hashed {
		return false
	}
	if off > w.hashed {
		w.ch <- hashChunk{zeros: off - w.hashed}
		w.hashed = off
	}
	return true
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.out.Write(p)
	if !w.broken && !w.feedZeros(w.pos) {
		w.broken = true
	}
	if !w.broken && w.ch != nil {
		for q := p[:n]; len(q) > 0; {
			b := w.pool.Get().(*[]byte)
			k := copy(*b, q)
			w.ch <- hashChunk{buf: b, n: k}
			q = q[k:]
		}
		w.hashed += int64(n)
	}
	w.pos += int64(n)
	w.end = max(w.end, w.pos)
	if w.pos-w.synced >= writebackEvery {
		_ = unix.SyncFileRange(int(w.out.Fd()), w.synced, w.pos-w.synced, unix.SYNC_FILE_RANGE_WRITE)
		w.synced = w.pos
	}
	return n, err
}

func (w *hashWriter) Seek(off int64, whence int) (int64, error) {
	pos, err := w.out.Seek(off, whence)
	if err == nil {
		w.pos = pos
	}
	return pos, err
}

func (w *hashWriter) Truncate(size int64) error {
	if err := w.out.Truncate(size); err != nil {
		return err
	}
	if size < w.hashed {
		w.broken = true
	}
	w.end = size
	return nil
}

func (w *hashWriter) Stat() (fs.FileInfo, error) { return w.out.Stat() }

// finish hashes the zeros up to the file's end and returns the sum; ok is false when the writer
// went back over hashed bytes, so the sum does not describe the file.
func (w *hashWriter) finish() (Sum, bool) {
	if w.ch == nil {
		return Sum{Bytes: w.end}, true
	}
	if !w.broken {
		w.feedZeros(w.end)
	}
	close(w.ch)
	s := <-w.done
	return s, !w.broken
}

// FileSum hashes a file from its start: holes (SEEK_HOLE) are hashed as zeros without being
// read, so a sparse 20 GiB raw costs the hashing of its zeros, not 20 GiB of read(2).
func FileSum(ctx context.Context, f *os.File) (Sum, error) {
	d, err := OpenFile(f)
	if err != nil {
		return Sum{}, err
	}
	h := sha256.New()
	buf := make([]byte, hashBuf)
	zero := make([]byte, hashBuf)
	var pos int64
	for _, e := range append(d.Extents(), Extent{Off: d.Size()}) {
		for ; pos < e.Off; pos += min(e.Off-pos, hashBuf) {
			h.Write(zero[:min(e.Off-pos, hashBuf)])
		}
		for pos < e.End() {
			if err := ctx.Err(); err != nil {
				return Sum{}, err
			}
			n, err := f.ReadAt(buf[:min(e.End()-pos, hashBuf)], pos)
			h.Write(buf[:n])
			pos += int64(n)
			if err != nil && !(err == io.EOF && n > 0) {
				return Sum{}, fmt.Errorf("diskfmt: hashing %s at %d: %w", f.Name(), pos, err)
			}
		}
	}
	return Sum{SHA256: fmt.Sprintf("%x", h.Sum(nil)), Bytes: pos}, nil
}
