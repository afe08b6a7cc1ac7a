package initrd

import (
	"context"
	"io"
)

// keepBack is how many bytes already read input keeps, so that the bytes a decoder read past
// the end of its stream (bzip2 looks for a next "BZ") can be given back.
const keepBack = 16

// input is the raw initrd: a buffer over the caller's reader that counts offsets, lets the
// segment scanner peek at magic numbers and serves the decoders byte by byte (io.ByteReader, so
// that flate and bzip2 read no further than their stream).
type input struct {
	r      io.Reader
	ctx    context.Context
	buf    []byte
	lo, hi int   // buf[lo:hi] is read from r and not yet consumed
	off    int64 // input offset of buf[lo]
	err    error // from r (or ctx), returned once buf is drained
}

func newInput(ctx context.Context, r io.Reader) *input {
	return &input{r: r, ctx: ctx, buf: make([]byte, 64<<10)}
}

// fill reads until n bytes are buffered or r fails; n is at most len(buf)-keepBack.
func (in *input) fill(n int) {
	for empty := 0; in.hi-in.lo < n && in.err == nil; {
		if in.hi == len(in.buf) { // move the unread bytes and keepBack before them to the front
			k := min(in.lo, keepBack)
			copy(in.buf, in.buf[in.lo-k:in.hi])
			in.hi -= in.lo - k
			in.lo = k
		}
		if err := in.ctx.Err(); err != nil {
			in.err = err
			return
		}
		m, err := in.r.Read(in.buf[in.hi:])
		in.hi += m
		if err != nil {
			in.err = err
		} else if m == 0 {
			if empty++; empty == 100 {
				in.err = io.ErrNoProgress
			}
		}
	}
}

func (in *input) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if in.lo == in.hi {
		in.fill(1)
		if in.lo == in.hi {
			return 0, in.err
		}
	}
	n := copy(p, in.buf[in.lo:in.hi])
	in.lo += n
	in.off += int64(n)
	return n, nil
}

func (in *input) ReadByte() (byte, error) {
	if in.lo == in.hi {
		in.fill(1)
		if in.lo == in.hi {
			return 0, in.err
		}
	}
	b := in.buf[in.lo]
	in.lo++
	in.off++
	return b, nil
}

// Peek returns the next n bytes without consuming them; fewer (with the error) at the end.
func (in *input) Peek(n int) ([]byte, error) {
	in.fill(n)
	if in.hi-in.lo < n {
		return in.buf[in.lo:in.hi], in.err
	}
	return in.buf[in.lo : in.lo+n], nil
}

// Discard consumes n bytes that Peek returned.
func (in *input) Discard(n int) {
	in.lo += n
	in.off += int64(n)
}

// unread gives back the last n bytes consumed, n at most keepBack; false if it cannot.
func (in *input) unread(n int) bool {
	if n > in.lo {
		return false
	}
	in.lo -= n
	in.off -= int64(n)
	return true
}
