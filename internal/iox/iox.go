// Package iox holds the small io adapters that several stages need: a reader that stops when
// its context is done, a writer that counts, and the disk file the build writes into.
package iox

import (
	"context"
	"io"
)

// CtxReader reads from R until Ctx is done; then every Read returns Ctx.Err(). A copy through
// it stops within one Read of a cancellation.
type CtxReader struct {
	Ctx context.Context
	R   io.Reader
}

func (c CtxReader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}

// CountWriter writes to W (nil: discards) and counts the bytes written in N.
type CountWriter struct {
	W io.Writer
	N int64
}

func (c *CountWriter) Write(p []byte) (int, error) {
	if c.W == nil {
		c.N += int64(len(p))
		return len(p), nil
	}
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
