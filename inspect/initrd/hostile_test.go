package initrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// allocated is the bytes f allocates.
func allocated(f func()) uint64 {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// raw is a header with field values as given (namesize -1: the name's), then the name, its NUL
// and padding, then data (unpadded, as given).
func raw(magic string, e ent, size, namesize int64, check uint32, data string) []byte {
	var w bytes.Buffer
	header(&w, magic, e, size, namesize, check)
	w.WriteString(e.name)
	w.WriteByte(0)
	pad(&w)
	w.WriteString(data)
	return w.Bytes()
}

var trailer = newc("070701")

// TestHostile feeds malformed and over-limit initrds: each must fail with an *Error that says
// what and where, wrapping ErrLimit when a limit is the cause, without allocating from the sizes
// the input claims.
func TestHostile(t *testing.T) {
	small := newc("070701", file("a", "data"))
	aligned := func(b []byte) []byte { return cat(b, zeros((4-len(b)%4)%4)) }
	lzmaBig := cat([]byte{0x5d, 0, 0, 0, 0xff}, bytes.Repeat([]byte{0xff}, 8), zeros(32)) // 4 GiB dictionary
	zstdBig := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0x01, 0x00, 0x00}               // window 2^31, one empty raw block
	tight := defaultLimits
	tight.bytes, tight.pad, tight.segments, tight.link = 1<<20, 64, 3, 16
	few := defaultLimits
	few.entries = 5
	cases := []struct {
		name  string
		input func(t *testing.T) []byte
		lim   limits
		want  string // in the error message
		limit bool   // wraps ErrLimit
	}{
		{"name size 0xFFFFFFFF", func(t *testing.T) []byte { return raw("070701", file("a", ""), 0, 0xFFFFFFFF, 0, "") },
			defaultLimits, "segment 0 (none at input offset 0): entry 0 at offset 0: name size 4294967295: more than 4096", true},
		{"name size 0", func(t *testing.T) []byte { return cat(raw("070701", file("", ""), 0, 0, 0, ""), trailer) },
			defaultLimits, "name size 0: no name", false},
		{"name not NUL-terminated", func(t *testing.T) []byte { return cat(raw("070701", file("abcd", ""), 0, 3, 0, ""), trailer) },
			defaultLimits, `name "ab": not NUL-terminated`, false},
		{"NUL in name", func(t *testing.T) []byte { return cat(raw("070701", file("a\x00b", ""), 0, -1, 0, ""), trailer) },
			defaultLimits, `name "a\x00b": NUL at 1`, false},
		{"file size 0xFFFFFFFF, 10 bytes of data", func(t *testing.T) []byte {
			return raw("070701", file("big", ""), 0xFFFFFFFF, -1, 0, "0123456789")
		}, defaultLimits, "entry 0 at offset 0: big: data (4294967285 bytes left of 4294967295): unexpected EOF", false},
		{"file size 0xFFFFFFFF in gzip", func(t *testing.T) []byte {
			return compress(t, "gzip", raw("070701", file("big", ""), 0xFFFFFFFF, -1, 0, "0123456789"))
		}, defaultLimits, "segment 0 (gzip at input offset 0): entry 0 at offset 0: big: data (4294967285 bytes left of 4294967295): unexpected EOF", false},
		{"unterminated", func(t *testing.T) []byte { return small[:len(small)-len(trailer)] },
			defaultLimits, "entry 1 at offset 116: header (an archive must end with TRAILER!!!): unexpected EOF", false},
		{"unterminated in zstd", func(t *testing.T) []byte { return compress(t, "zstd", small[:len(small)-len(trailer)]) },
			defaultLimits, "segment 0 (zstd at input offset 0): entry 1 at offset 116: header (an archive must end with TRAILER!!!): unexpected EOF", false},
		{"truncated gzip", func(t *testing.T) []byte { c := compress(t, "gzip", sample("070701")); return c[:len(c)/2] },
			defaultLimits, "segment 0 (gzip at input offset 0)", false},
		{"garbage after trailer", func(t *testing.T) []byte { return cat(small, []byte("GARBAGE!GARBAGE!")) },
			defaultLimits, fmt.Sprintf("initrd: input offset %d: unknown data 47 41 52 42 41 47 45 21 after 1 segments", len(small)), false},
		{"garbage after a compressed segment", func(t *testing.T) []byte { return cat(compress(t, "xz", small), []byte("\x01junk")) },
			defaultLimits, "unknown data 01 6a 75 6e 6b after 1 segments", false},
		{"junk after an archive in gzip", func(t *testing.T) []byte { return compress(t, "gzip", cat(small, []byte("junk"))) },
			defaultLimits, fmt.Sprintf("segment 0 (gzip at input offset 0): at offset %d: junk after an archive: 6a 75 6e 6b", len(small)), false},
		{"bad magic", func(t *testing.T) []byte {
			return cat(small, compress(t, "zstd", cat(newc("070701", file("x", "y"))[:116], []byte("0707xx"), zeros(200))))
		}, defaultLimits, fmt.Sprintf(`initrd: segment 1 (zstd at input offset %d): entry 1 at offset 116: bad magic "0707xx"`, len(small)), false},
		{"bad hex", func(t *testing.T) []byte {
			b := bytes.Clone(small)
			copy(b[6+8*6:], "0000004G") // filesize
			return b
		}, defaultLimits, `entry 0 at offset 0: header field filesize: bad hex "0000004G"`, false},
		{"no file type", func(t *testing.T) []byte { return newc("070701", ent{name: "x", mode: 0o644}) },
			defaultLimits, `name "x": mode 0644 is no file type`, false},
		{"070702 checksum", func(t *testing.T) []byte { return cat(raw("070702", file("x", ""), 4, -1, 0x1234, "abcd"), trailer) },
			defaultLimits, "x: header field check: 0x00001234, the data sums to 0x0000018a", false},
		{"trailer with data", func(t *testing.T) []byte { return raw("070701", ent{name: "TRAILER!!!"}, 4, -1, 0, "abcd") },
			defaultLimits, "trailer with 4 bytes of data", false},
		{"symlink target over the limit", func(t *testing.T) []byte { return newc("070701", link("l", strings.Repeat("x", 17))) },
			tight, `symlink "l": target of 17 bytes: more than 16`, true},
		{"NUL in symlink target", func(t *testing.T) []byte { return newc("070701", link("l", "a\x00b")) },
			defaultLimits, `symlink "l": target "a\x00b" has a NUL`, false},
		{"compression bomb", func(t *testing.T) []byte {
			return compress(t, "gzip", newc("070701", file("bomb", strings.Repeat("\x00", 64<<20))))
		}, tight, "bomb: data", true},
		{"compression bomb in Summarize", nil, tight, "bomb", true},
		{"cpio unaligned after a compressed segment", func(t *testing.T) []byte {
			g := compress(t, "gzip", small)
			return cat(g, zeros(4-len(g)%4+1), small) // a cpio at offset 1 mod 4
		}, defaultLimits, "cpio archive at an unaligned offset", false},
		{"broken padding after an uncompressed archive", func(t *testing.T) []byte {
			return cat(small, zeros(2), compress(t, "gzip", small))
		}, defaultLimits, fmt.Sprintf("input offset %d: broken padding: 2 zero bytes", len(small)+2), false},
		{"zero padding over the limit", func(t *testing.T) []byte { return cat(small, zeros(68), small) },
			tight, fmt.Sprintf("input offset %d: zero padding longer than 64 bytes", len(small)), true},
		{"zero padding over the limit in a stream", func(t *testing.T) []byte { return compress(t, "zstd", cat(small, zeros(68), small)) },
			tight, fmt.Sprintf("at offset %d: zero padding longer than 64 bytes", len(small)), true},
		{"segments over the limit", func(t *testing.T) []byte { return cat(small, small, small, small) },
			tight, fmt.Sprintf("input offset %d: more than 3 segments", 3*len(small)), true},
		{"entries over the limit", func(t *testing.T) []byte {
			return newc("070701", dir("1"), dir("2"), dir("3"), dir("4"), dir("5"), dir("6"))
		}, few, "entry 5 at offset 560: more than 5 entries", true},
		{"xz dictionary of 4 GiB", func(t *testing.T) []byte {
			b := compress(t, "xz", small)
			i := bytes.Index(b[12:], []byte{0x21, 0x01}) // the LZMA2 filter flags in the first block header
			if i < 0 {
				t.Fatal("no LZMA2 filter flags")
			}
			b[12+i+2] = 40
			return b
		}, defaultLimits, "LZMA2 dictionary of 4294967295 bytes: over the limit (134217728)", true},
		{"zstd window of 2 GiB", func(t *testing.T) []byte { return zstdBig }, defaultLimits, "segment 0 (zstd at input offset 0): at offset 0: zstd stream: window size exceeded", true},
		{"lzma dictionary of 4 GiB", func(t *testing.T) []byte { return lzmaBig }, defaultLimits, "lzma header: lzma: header dictionary size 4278190080 exceeds configured dictionary capacity 134217728", true},
		{"lzo", func(t *testing.T) []byte { return aligned([]byte("\x89LZO\x00\x0d\x0a\x1a\x0a")) }, defaultLimits, "lzo-compressed segment", false},
		{"odc cpio", func(t *testing.T) []byte { return []byte("070707000000000000") }, defaultLimits, `cpio archive in format "070707"`, false},
		{"xz block header cut short", func(t *testing.T) []byte { return compress(t, "xz", small)[:14] }, defaultLimits, "xz block header at stream offset 12: unexpected EOF", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			var n uint64
			if c.input == nil { // Summarize on the bomb
				b := compress(t, "gzip", newc("070701", file("bomb", strings.Repeat("\x00", 64<<20))))
				n = allocated(func() { _, err = summarize(context.Background(), bytes.NewReader(b), c.lim) })
			} else {
				b := c.input(t)
				n = allocated(func() { _, _, err = listing(t, b, c.lim) })
			}
			if err == nil {
				t.Fatal("no error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%T, not an *Error: %v", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n%v\nwant it to contain\n%s", err, c.want)
			}
			if isLimit(err) != c.limit {
				t.Errorf("wraps ErrLimit: %v, want %v", isLimit(err), c.limit)
			}
			// The lzma and zstd decoders allocate their tables; nothing allocates a claimed size.
			if n > 16<<20 {
				t.Errorf("allocated %d MiB", n>>20)
			}
		})
	}
}

// TestContext: a cancelled context stops the reader before the next entry and at the next read
// of the input.
func TestContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Summarize(ctx, bytes.NewReader(sample("070701"))); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	b := compress(t, "gzip", newc("070701", file("big", strings.Repeat("x", 1<<20)), file("after", "")))
	r := &cancelAfter{r: bytes.NewReader(b), n: 1, cancel: cancel}
	s, err := Summarize(ctx, r)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during: %v", err)
	}
	if s != nil && s.Has("after") {
		t.Error("read on after the cancel")
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return c.r.Read(p[:min(len(p), 512)])
}
