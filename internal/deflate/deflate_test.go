package deflate

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// corpus returns named inputs that reach every path: empty and tiny inputs, incompressible data
// (stored blocks, also longer than one stored block can hold), long runs (258-byte matches),
// matches at the window's far end, text, and data with more symbols than one block takes.
func corpus(t testing.TB) map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	small := func(n, alpha int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a' + byte(r.IntN(alpha))
		}
		return b
	}
	far := rnd(40000)
	copy(far[32767:], far[:200]) // a match exactly maxDist back
	copy(far[39000:], far[6000:6300])
	words := []string{"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog ", "\n"}
	var text bytes.Buffer
	for text.Len() < 300000 {
		text.WriteString(words[r.IntN(len(words))])
	}
	mixed := append(rnd(20000), bytes.Repeat([]byte{0}, 50000)...)
	mixed = append(mixed, small(30000, 4)...)
	mixed = append(mixed, rnd(70000)...)
	m := map[string][]byte{
		"empty":      {},
		"one":        {42},
		"two":        {1, 2},
		"three":      {7, 7, 7},
		"zeros64k":   make([]byte, 64<<10),
		"random64k":  rnd(64 << 10),
		"random200k": rnd(200000),
		"alpha2":     small(100000, 2),
		"alpha16":    small(100000, 16),
		"far":        far,
		"text":       text.Bytes(),
		"mixed":      mixed,
	}
	// Real files, if the Go tree is there (it is wherever the tests build).
	if src, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "fmt", "print.go")); err == nil {
		m["print.go"] = src
	}
	return m
}

func inflateZlib(t testing.TB, z []byte) []byte {
	t.Helper()
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("zlib header: %v", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for name, in := range corpus(t) {
		for lvl := BestSpeed; lvl <= BestCompression; lvl++ {
			e, err := NewEncoder(lvl)
			if err != nil {
				t.Fatal(err)
			}
			z := e.AppendZlib(nil, in)
			if out := inflateZlib(t, z); !bytes.Equal(out, in) {
				t.Fatalf("%s level %d: round trip differs (%d bytes in, %d out)", name, lvl, len(in), len(out))
			}
			d := e.AppendDeflate([]byte("prefix"), in)
			if string(d[:6]) != "prefix" {
				t.Fatalf("%s: AppendDeflate lost dst", name)
			}
			out, err := io.ReadAll(flate.NewReader(bytes.NewReader(d[6:])))
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("%s level %d: raw deflate round trip: %v", name, lvl, err)
			}
		}
	}
}

// TestIncompressibleBound: random data costs at most a few bytes per 64 KiB over its size
// (stored blocks), as zlib's deflateBound promises.
func TestIncompressibleBound(t *testing.T) {
	in := corpus(t)["random200k"]
	e, _ := NewEncoder(DefaultCompression)
	z := e.AppendZlib(nil, in)
	bound := len(in) + 5*(len(in)/16383+1) + 6
	if len(z) > bound {
		t.Fatalf("random %d bytes compressed to %d, more than %d", len(in), len(z), bound)
	}
}

// realGrains cuts real files — Go's compiler binary and Go source text, wherever the tests
// build — into 64 KiB pieces, the unit the VMDK writer compresses.
func realGrains(t testing.TB) [][]byte {
	t.Helper()
	root := runtime.GOROOT()
	var data []byte
	bin, err := os.ReadFile(filepath.Join(root, "pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH, "compile"))
	if err != nil {
		t.Fatalf("reading the Go compiler for test data: %v", err)
	}
	data = append(data, bin[:min(len(bin), 6<<20)]...)
	for _, dir := range []string{"net/http", "go/types", "runtime"} {
		files, err := filepath.Glob(filepath.Join(root, "src", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go sources in %s: %v", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, b...)
		}
	}
	var grains [][]byte
	for len(data) >= 64<<10 {
		grains = append(grains, data[:64<<10])
		data = data[64<<10:]
	}
	return grains
}

// TestNoLargerThanCZlib: on real data in 64 KiB pieces, level 6 is no larger in total than C
// zlib's level 6 (what qemu-img uses for VMDK grains), measured through Python's zlib module.
func TestNoLargerThanCZlib(t *testing.T) {
	py := testtool.Need(t, "python3", "python3")
	grains := realGrains(t)
	f := filepath.Join(t.TempDir(), "grains")
	if err := os.WriteFile(f, bytes.Join(grains, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `import sys, zlib
f = open(sys.argv[1], "rb"); n = 0
while True:
    b = f.read(65536)
    if not b: break
    n += len(zlib.compress(b, 6))
print(n)`
	out, err := exec.Command(py, "-c", script, f).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 zlib: %v: %s", err, out)
	}
	var czlib int
	if _, err := fmt.Sscan(string(out), &czlib); err != nil {
		t.Fatalf("python3 zlib printed %q", out)
	}
	e, _ := NewEncoder(DefaultCompression)
	ours := 0
	var z []byte
	for _, g := range grains {
		z = e.AppendZlib(z[:0], g)
		ours += len(z)
	}
	t.Logf("%d grains of %d KiB: ours %d bytes, C zlib %d (%.2f %%)", len(grains), 64, ours, czlib,
		100*float64(ours-czlib)/float64(czlib))
	if ours > czlib {
		t.Fatalf("ours %d bytes > C zlib %d on %d real grains", ours, czlib, len(grains))
	}
}

func TestDeterministic(t *testing.T) {
	c := corpus(t)
	e1, _ := NewEncoder(DefaultCompression)
	e2, _ := NewEncoder(DefaultCompression)
	// e1 compresses other inputs first: no state may leak from one call to the next.
	for _, in := range c {
		e1.AppendZlib(nil, in)
	}
	for name, in := range c {
		if a, b := e1.AppendZlib(nil, in), e2.AppendZlib(nil, in); !bytes.Equal(a, b) {
			t.Fatalf("%s: a reused encoder gives different bytes", name)
		}
	}
}

func TestLevelRange(t *testing.T) {
	for _, l := range []Level{0, 10, -1} {
		if _, err := NewEncoder(l); err == nil {
			t.Errorf("level %d accepted", l)
		}
	}
}

// TestHuffLengths: Fibonacci frequencies make the optimal code deeper than the limit; the
// result must respect the limit and be complete (Kraft sum exactly 1), and lone symbols still
// get a complete one-bit code.
func TestHuffLengths(t *testing.T) {
	var hs huffScratch
	kraft := func(lens []uint8) (sum float64, max uint8) {
		for _, l := range lens {
			if l > 0 {
				sum += 1 / float64(uint64(1)<<l)
				max = maxU8(max, l)
			}
		}
		return
	}
	for _, limit := range []int{7, 15} {
		freq := make([]uint32, 30)
		a, b := uint32(1), uint32(1)
		for i := range freq {
			freq[i] = a
			a, b = b, a+b
		}
		lens := make([]uint8, len(freq))
		huffLengths(freq, limit, lens, &hs)
		if s, m := kraft(lens); s != 1 || int(m) > limit {
			t.Fatalf("limit %d: Kraft sum %v, max length %d", limit, s, m)
		}
	}
	for _, used := range [][]int{{}, {0}, {1}, {5}} {
		freq := make([]uint32, 30)
		for _, s := range used {
			freq[s] = 9
		}
		lens := make([]uint8, len(freq))
		huffLengths(freq, 15, lens, &hs)
		if s, _ := kraft(lens); s != 1 {
			t.Fatalf("used %v: lengths %v not complete", used, lens)
		}
		for _, s := range used {
			if lens[s] == 0 {
				t.Fatalf("used symbol %d has no code", s)
			}
		}
	}
}

func maxU8(a, b uint8) uint8 {
	if a > b {
		return a
	}
	return b
}

func FuzzRoundTrip(f *testing.F) {
	for _, in := range corpus(f) {
		if len(in) < 5000 {
			f.Add(in, uint8(6))
		}
	}
	f.Add([]byte("abcabcabcabcabcabcabcabcabcabd"), uint8(9))
	f.Fuzz(func(t *testing.T, in []byte, lvl uint8) {
		e, err := NewEncoder(Level(lvl%9 + 1))
		if err != nil {
			t.Fatal(err)
		}
		if out := inflateZlib(t, e.AppendZlib(nil, in)); !bytes.Equal(out, in) {
			t.Fatalf("round trip differs: %d in, %d out", len(in), len(out))
		}
	})
}

// BenchmarkGrain compresses real 64 KiB grains (realGrains) with this package and, for
// reference in the same run, with Go's compress/zlib at the same level; it reports the output
// size per grain as well.
func BenchmarkGrain(b *testing.B) {
	grains := realGrains(b)
	grains = grains[:min(len(grains), 32)]
	var in int64
	for _, g := range grains {
		in += int64(len(g))
	}
	for _, lvl := range []Level{1, 6, 9} {
		b.Run(fmt.Sprint("ours-", lvl), func(b *testing.B) {
			e, _ := NewEncoder(lvl)
			var dst []byte
			var out int
			b.SetBytes(in)
			for b.Loop() {
				out = 0
				for _, g := range grains {
					dst = e.AppendZlib(dst[:0], g)
					out += len(dst)
				}
			}
			b.ReportMetric(float64(out)/float64(len(grains)), "B/grain")
		})
	}
	b.Run("compress/zlib-6", func(b *testing.B) {
		var buf bytes.Buffer
		zw, _ := zlib.NewWriterLevel(&buf, 6)
		b.SetBytes(in)
		for b.Loop() {
			buf.Reset()
			for _, g := range grains {
				zw.Reset(&buf)
				zw.Write(g)
				zw.Close()
			}
		}
		b.ReportMetric(float64(buf.Len())/float64(len(grains)), "B/grain")
	})
}

// TestSegments: inputs cut into pieces, each compressed as an independent segment, the last one
// final, concatenate into one stream that inflates to the whole input (as the GCE and raw.gz
// writers use them); empty pieces included.
func TestSegments(t *testing.T) {
	in := corpus(t)["mixed"]
	e, _ := NewEncoder(DefaultCompression)
	for _, cuts := range [][]int{{0}, {1000}, {0, 1000, 1000, 65536, 170000}, {70000, 140000}} {
		var stream []byte
		prev := 0
		for _, c := range append(cuts, len(in)) {
			stream = e.AppendSegment(stream, in[prev:c], c == len(in))
			prev = c
		}
		out, err := io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("cuts %v: %d bytes back (want %d), %v", cuts, len(out), len(in), err)
		}
	}
	// A non-final segment ends with the sync-flush marker.
	seg := e.AppendSegment(nil, in[:5000], false)
	if !bytes.HasSuffix(seg, []byte{0, 0, 0xff, 0xff}) {
		t.Fatalf("segment ends % x, want the empty stored block 00 00 ff ff", seg[len(seg)-4:])
	}
}
