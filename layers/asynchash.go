package layers

import (
	"crypto/sha256"
	"io"
	"sync"
)

// asyncSHA256 is a sha256 computed by a goroutine of its own: Write copies the bytes and hands
// them over, so a blob's digest check does not slow the goroutine that decompresses it (they
// share nothing but the bytes; on two cores the hash runs beside the decompressor). Write and Sum
// are called from one goroutine; stop (also after Sum) ends the hashing goroutine.
type asyncSHA256 struct {
	ch   chan *[]byte
	sum  chan []byte
	once sync.Once
	pool sync.Pool
}

const asyncHashChunk = 256 << 10

func newAsyncSHA256() *asyncSHA256 {
	a := &asyncSHA256{ch: make(chan *[]byte, 8), sum: make(chan []byte, 1)}
	a.pool.New = func() any { b := make([]byte, 0, asyncHashChunk); return &b }
	go func() {
		h := sha256.New()
		for b := range a.ch {
			h.Write(*b)
			a.pool.Put(b)
		}
		a.sum <- h.Sum(nil)
	}()
	return a
}

var _ io.Writer = (*asyncSHA256)(nil)

func (a *asyncSHA256) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		b := a.pool.Get().(*[]byte)
		k := min(len(p), cap(*b))
		*b = append((*b)[:0], p[:k]...)
		a.ch <- b
		p = p[k:]
	}
	return n, nil
}

// Sum waits for the bytes written so far to be hashed and appends the digest to b. No Write may
// follow.
func (a *asyncSHA256) Sum(b []byte) []byte {
	a.stop()
	s := <-a.sum
	a.sum <- s // a second Sum gets it too
	return append(b, s...)
}

// stop ends the hashing goroutine once the bytes written so far are hashed.
func (a *asyncSHA256) stop() { a.once.Do(func() { close(a.ch) }) }

// closeFunc is a func as an io.Closer.
type closeFunc func() error

func (f closeFunc) Close() error { return f() }
