package inflate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	kflate "github.com/klauspost/compress/flate"
	kgzip "github.com/klauspost/compress/gzip"
)

// reference decompresses b with klauspost/compress's gzip, the decoder this one replaces.
func reference(b []byte) ([]byte, error) {
	zr, err := kgzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func ours(b []byte, chunk int) ([]byte, error) {
	zr, err := NewReader(&oneByteTail{r: bytes.NewReader(b), chunk: chunk})
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	var out bytes.Buffer
	buf := make([]byte, 1+chunk%300000)
	for {
		n, err := zr.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// oneByteTail reads at most chunk bytes at a time (0: as asked), so input refills land anywhere.
type oneByteTail struct {
	r     io.Reader
	chunk int
}

func (o *oneByteTail) Read(p []byte) (int, error) {
	if o.chunk > 0 && len(p) > o.chunk {
		p = p[:o.chunk]
	}
	return o.r.Read(p)
}

func gz(t testing.TB, data []byte, level int, members int) []byte {
	var b bytes.Buffer
	for m := range members {
		w, err := kgzip.NewWriterLevel(&b, level)
		if err != nil {
			t.Fatal(err)
		}
		if m == 1 {
			w.Name, w.Comment, w.Extra = "name.tar", "a comment", []byte("extra field")
		}
		w.Write(data)
		w.Close()
	}
	return b.Bytes()
}

// corpus is data of several kinds: text, random, runs, and a real tar when the fixture is here.
func corpus(t testing.TB) map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	var text bytes.Buffer
	for i := range 200000 {
		text.WriteString([]string{"the ", "quick ", "brown ", "fox ", "jumps\n", "imgfab ", "over "}[r.IntN(7)])
		if i%1000 == 0 {
			text.Write(random[i : i+r.IntN(600)])
		}
	}
	runs := bytes.Repeat([]byte{0}, 5<<20)
	copy(runs[1<<20:], bytes.Repeat([]byte("ab"), 100000))
	c := map[string][]byte{"empty": nil, "byte": {7}, "random": random, "text": text.Bytes(), "runs": runs}
	if tars, _ := filepath.Glob("../../testdata/cache/demo/layer*.tar"); len(tars) > 0 {
		if b, err := os.ReadFile(tars[0]); err == nil {
			c["demo-tar"] = b
		}
	}
	return c
}

// sameAsKlauspost decodes in with klauspost's gzip and with ours, reading the input chunk bytes at
// a time (0: as asked; 1 only for small inputs), fails unless the bytes are the same, and returns
// them.
func sameAsKlauspost(t *testing.T, what string, in []byte, chunks ...int) []byte {
	t.Helper()
	want, err := reference(in)
	if err != nil {
		t.Fatalf("%s: klauspost: %v", what, err)
	}
	for _, chunk := range chunks {
		if chunk == 1 && len(in) > 200000 {
			continue
		}
		got, err := ours(in, chunk)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s chunk %d: %d bytes, %v; want %d bytes", what, chunk, len(got), err, len(want))
		}
	}
	return want
}

// TestSameAsKlauspost: for every kind of data, every compression level (stored, Huffman only,
// 1–9), one member or three (names, comments, extra fields), input arriving in odd pieces and
// output read in odd sizes, the bytes are klauspost's.
func TestSameAsKlauspost(t *testing.T) {
	for name, data := range corpus(t) {
		for _, level := range []int{kflate.NoCompression, kflate.HuffmanOnly, 1, 2, 5, 6, 9} {
			for _, members := range []int{1, 3} {
				sameAsKlauspost(t, fmt.Sprintf("%s level %d members %d", name, level, members), gz(t, data, level, members), 0, 1, 7, 4093)
			}
		}
	}
}

// TestErrors: truncated streams, a flipped byte, trailing garbage and a broken header fail as
// klauspost's do (the same error, or for corrupt data an error of the same kind).
func TestErrors(t *testing.T) {
	data := corpus(t)["text"]
	in := gz(t, data, 6, 1)
	cases := map[string][]byte{
		"truncated-header":  in[:5],
		"truncated-body":    in[:len(in)/2],
		"truncated-trailer": in[:len(in)-3],
		"no-trailer":        in[:len(in)-8],
		"garbage-after":     append(append([]byte{}, in...), []byte("not gzip at all")...),
		"short-after":       append(append([]byte{}, in...), 1, 2, 3),
		"bad-crc":           func() []byte { b := append([]byte{}, in...); b[len(b)-6] ^= 1; return b }(),
		"bad-size":          func() []byte { b := append([]byte{}, in...); b[len(b)-2] ^= 1; return b }(),
		"reserved-flag":     func() []byte { b := append([]byte{}, in...); b[3] |= 0x80; return b }(),
		"not-deflate":       func() []byte { b := append([]byte{}, in...); b[2] = 7; return b }(),
		"block-type-3":      func() []byte { b := append([]byte{}, in...); b[10] |= 6; return b }(),
	}
	for i := 0; i < 40; i++ {
		b := append([]byte{}, in...)
		b[10+i*997%(len(b)-18)] ^= byte(1 << (i % 8))
		cases["flip-"+string(rune('a'+i%26))+string(rune('0'+i/26))] = b
	}
	for name, b := range cases {
		want, werr := reference(b)
		got, gerr := ours(b, 4093)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: klauspost %v, ours %v", name, werr, gerr)
			continue
		}
		if werr == nil {
			if !bytes.Equal(got, want) {
				t.Errorf("%s: both succeed with different bytes", name)
			}
			continue
		}
		var wc, gc kflate.CorruptInputError
		if errors.As(werr, &wc) != errors.As(gerr, &gc) && !(errors.Is(werr, kgzip.ErrChecksum) || errors.Is(gerr, kgzip.ErrChecksum)) {
			t.Errorf("%s: klauspost %v, ours %v", name, werr, gerr)
		}
		if (errors.Is(werr, kgzip.ErrHeader) || errors.Is(werr, io.ErrUnexpectedEOF)) && !errors.Is(gerr, werr) {
			t.Errorf("%s: klauspost %v, ours %v", name, werr, gerr)
		}
		if !bytes.HasPrefix(want, got) && !bytes.HasPrefix(got, want) {
			t.Errorf("%s: before the error, %d bytes that are not klauspost's %d", name, len(got), len(want))
		}
	}
}

// FuzzInflate: for any input, ours fails when klauspost fails and otherwise gives its bytes; it
// never panics.
func FuzzInflate(f *testing.F) {
	for _, d := range [][]byte{nil, []byte("hello hello hello hello"), bytes.Repeat([]byte("xyz"), 5000)} {
		for _, l := range []int{0, -2, 1, 9} {
			f.Add(gz(f, d, l, 1))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := reference(b)
		got, gerr := ours(b, 0)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("klauspost %v, ours %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("different bytes: %d, want %d", len(got), len(want))
		}
	})
}

func BenchmarkInflate(b *testing.B) {
	path := os.Getenv("INFLATE_BENCH_BLOB")
	if path == "" {
		b.Skip("INFLATE_BENCH_BLOB: a gzip layer blob")
	}
	in, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, dec := range []string{"klauspost", "inflate"} {
		b.Run(dec, func(b *testing.B) {
			buf := make([]byte, 256<<10)
			for b.Loop() {
				var r io.Reader
				if dec == "klauspost" {
					r, _ = kgzip.NewReader(bytes.NewReader(in))
				} else {
					r, _ = NewReader(bytes.NewReader(in))
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf)
				if c, ok := r.(io.Closer); ok {
					c.Close()
				}
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(n)
			}
		})
	}
}

// TestCloseStopsDecoder: a Reader closed before its end (a layer whose reading failed) leaves no
// goroutine behind.
func TestCloseStopsDecoder(t *testing.T) {
	in := gz(t, corpus(t)["random"], 1, 1)
	before := runtime.NumGoroutine()
	for range 20 {
		zr, err := NewReader(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zr.Read(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		zr.Close()
	}
	for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after closing 20 readers, %d before", n, before)
	}
}
