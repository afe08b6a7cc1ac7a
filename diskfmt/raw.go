package diskfmt

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// raw is the plain disk image: guest byte i at file offset i.
type raw struct{}

var _ Format = raw{}

func init() { register(raw{}, ".raw", ".img") }

func (raw) Name() string { return "raw" }

const (
	chunkSize = 4 << 20  // bytes read from the disk at a time
	rawBlock  = 64 << 10 // all-zero blocks of this size (guest-aligned) become holes
)

// seekTruncater is what the raw writer needs to leave holes.
type seekTruncater interface {
	io.Seeker
	Truncate(size int64) error
}

// Write writes d to w. When w can Seek and Truncate (an *os.File or an *Output) and is a regular
// file, holes and all-zero 64 KiB blocks are seeked over, and the file is truncated to the end of the
// disk, so they stay holes; the disk starts at w's current offset and anything after it in the file
// is dropped. Otherwise every byte is written, zeros included.
func (raw) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	var err error
	if st, base, ok := sparseTarget(w); ok {
		err = writeRawSparse(ctx, w, st, base, d)
	} else {
		err = writeRawStream(ctx, w, d)
	}
	if err != nil {
		return fmt.Errorf("raw: writing %d-byte disk: %w", d.Size(), err)
	}
	return nil
}

// sparseTarget reports whether w is a seekable regular file and returns its current offset.
func sparseTarget(w io.Writer) (seekTruncater, int64, bool) {
	st, ok := w.(seekTruncater)
	if !ok {
		return nil, 0, false
	}
	if s, ok := w.(interface{ Stat() (fs.FileInfo, error) }); ok {
		fi, err := s.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil, 0, false // a block device must get its zeros written
		}
	}
	if s, ok := w.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok && appendMode(s) {
		return nil, 0, false // O_APPEND ignores our seeks
	}
	base, err := st.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0, false
	}
	return st, base, true
}

// appendMode reports whether a file descriptor has O_APPEND set.
func appendMode(s interface {
	SyscallConn() (syscall.RawConn, error)
}) bool {
	rc, err := s.SyscallConn()
	if err != nil {
		return false
	}
	var fl int
	var ferr error
	if err := rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
		return true // unknown: do not risk seeking
	}
	return fl&unix.O_APPEND != 0
}

func writeRawSparse(ctx context.Context, w io.Writer, st seekTruncater, base int64, d Disk) error {
	size := d.Size()
	// Drop old content first, so the bytes we seek over read as zeros.
	if err := st.Truncate(base); err != nil {
		return fmt.Errorf("truncating output to %d: %w", base, err)
	}
	pos := base // the file offset
	prog := newProgress(ctx, size)
	buf := make([]byte, chunkSize)
	err := forEachChunk(ctx, d, d.Extents(), buf, func(off int64, p []byte) error {
		// Write the runs of non-zero guest-aligned blocks of p.
		for i := 0; i < len(p); {
			j := i + int(rawBlock-(off+int64(i))%rawBlock) // end of this block
			j = min(j, len(p))
			if isZero(p[i:j]) {
				i = j
				continue
			}
			k := j // extend the run over following non-zero blocks
			for k < len(p) {
				e := min(k+rawBlock, len(p))
				if isZero(p[k:e]) {
					break
				}
				k = e
			}
			at := base + off + int64(i)
			if pos != at {
				if _, err := st.Seek(at, io.SeekStart); err != nil {
					return fmt.Errorf("seeking output to %d: %w", at, err)
				}
			}
			n, err := w.Write(p[i:k])
			pos = at + int64(n)
			if err != nil {
				return fmt.Errorf("writing at %d (+%d): %w", at, k-i, err)
			}
			i = k
		}
		prog.to(off + int64(len(p)))
		return nil
	})
	if err != nil {
		return err
	}
	if err := st.Truncate(base + size); err != nil {
		return fmt.Errorf("truncating output to %d: %w", base+size, err)
	}
	if _, err := st.Seek(base+size, io.SeekStart); err != nil {
		return fmt.Errorf("seeking output to %d: %w", base+size, err)
	}
	prog.finish()
	return nil
}

func writeRawStream(ctx context.Context, w io.Writer, d Disk) error {
	size := d.Size()
	prog := newProgress(ctx, size)
	var pos int64 // guest offset written up to
	fill := func(to int64) error {
		for pos < to {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := int(min(to-pos, int64(len(zeros))))
			m, err := w.Write(zeros[:n])
			pos += int64(m)
			if err != nil {
				return fmt.Errorf("writing zeros at %d: %w", pos, err)
			}
			prog.to(pos)
		}
		return nil
	}
	buf := make([]byte, chunkSize)
	err := forEachChunk(ctx, d, d.Extents(), buf, func(off int64, p []byte) error {
		if err := fill(off); err != nil {
			return err
		}
		n, err := w.Write(p)
		pos += int64(n)
		if err != nil {
			return fmt.Errorf("writing at %d (+%d): %w", off, len(p), err)
		}
		prog.to(pos)
		return nil
	})
	if err != nil {
		return err
	}
	if err := fill(size); err != nil {
		return err
	}
	prog.finish()
	return nil
}

// forEachChunk reads the ranges exts of d in pieces of at most len(buf) bytes whose boundaries fall
// on multiples of len(buf) in the guest, and calls fn with each piece and its guest offset. Bytes
// past d.Size() read as zeros. It checks ctx between pieces.
// scanNonZero calls mark(i), in increasing order, for each unit-sized, unit-aligned block i of d
// that holds a non-zero byte. It reads only d's extents, and of each block only until its first
// non-zero byte shows: a 4 KiB probe first (data blocks usually show it there), then the rest in
// reads of up to len(buf). So a disk full of data costs about one small read per block, not a
// copy of every byte.
func scanNonZero(ctx context.Context, d Disk, unit int64, buf []byte, mark func(int64), prog *progress) error {
	const probe = 4 << 10
	last := int64(-1) // the last block marked
	for _, e := range d.Extents() {
		for off := e.Off; off < e.End(); {
			if err := ctx.Err(); err != nil {
				return err
			}
			blk := off / unit
			blkEnd := min((blk+1)*unit, e.End())
			if blk == last {
				off = blkEnd
				continue
			}
			n := min(int64(len(buf)), blkEnd-off)
			if off == blk*unit || off == e.Off {
				n = min(n, probe)
			}
			p := buf[:n]
			if err := readFull(d, p, off); err != nil {
				return err
			}
			if !isZero(p) {
				mark(blk)
				last = blk
			}
			off += n
			prog.to(min(off, d.Size()))
		}
	}
	return nil
}

func forEachChunk(ctx context.Context, d Disk, exts []Extent, buf []byte, fn func(off int64, p []byte) error) error {
	step := int64(len(buf))
	for _, e := range exts {
		for off := e.Off; off < e.End(); {
			if err := ctx.Err(); err != nil {
				return err
			}
			end := min((off/step+1)*step, e.End())
			p := buf[:end-off]
			if err := readFull(d, p, off); err != nil {
				return err
			}
			if err := fn(off, p); err != nil {
				return err
			}
			off = end
		}
	}
	return nil
}
