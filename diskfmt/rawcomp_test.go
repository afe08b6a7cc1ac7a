package diskfmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

var rawComps = []struct {
	f       rawComp
	tool    string // decompresses stdin to stdout with -d -c
	pkg     string
	ext     string
	sizeMiB int64
}{
	{rawZst, "zstd", "zstd", ".raw.zst", 100}, // more than one 32 MiB zstd job
	{rawXz, "xz", "xz-utils", ".raw.xz", 24},
	{rawGz, "gzip", "gzip", ".raw.gz", 40},
}

// rawCompDisk has text, noise and holes, and ends in a partial 64 KiB block.
func rawCompDisk(t testing.TB, dir string, size int64) string {
	var pieces []piece
	for off := int64(0); off+3*mib < size; off += 7 * mib {
		pieces = append(pieces, piece{off + 1000, words(int(2*mib), uint64(off))}, piece{off + 2*mib + 1000, noise(int(mib/2), uint64(off))})
	}
	size += 3 * 512
	pieces = append(pieces, piece{size - 512, noise(512, 1)})
	return makeSparse(t, dir, size, pieces)
}

func TestRawCompressedCLI(t *testing.T) {
	ctx := context.Background()
	for _, rc := range rawComps {
		t.Run(rc.f.name, func(t *testing.T) {
			tool := testtool.Need(t, rc.tool, rc.pkg)
			dir := t.TempDir()
			rawPath := rawCompDisk(t, dir, rc.sizeMiB*mib)
			out := filepath.Join(dir, "out"+rc.ext)
			if err := WriteFile(ctx, out, rc.f, openDisk(t, rawPath)); err != nil {
				t.Fatal(err)
			}
			in, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			cmd := exec.Command(tool, "-d", "-c")
			cmd.Stdin = in
			h := sha256.New()
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = h, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s -d -c: %v: %s", rc.tool, err, stderr.Bytes())
			}
			if [32]byte(h.Sum(nil)) != testtool.FileSHA256(t, rawPath) {
				t.Errorf("%s -d of %s differs from the raw disk", rc.tool, out)
			}
			// The output is a stream: the same bytes to a non-file writer, and with GOMAXPROCS 1.
			var buf bytes.Buffer
			old := runtime.GOMAXPROCS(1)
			err = rc.f.Write(ctx, &buf, openDisk(t, rawPath))
			runtime.GOMAXPROCS(old)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(buf.Bytes()) != testtool.FileSHA256(t, out) {
				t.Errorf("output to a buffer with GOMAXPROCS=1 differs from the file output")
			}
		})
	}
}

func TestRawCompressedGzipHeader(t *testing.T) {
	var buf bytes.Buffer
	d := openDisk(t, makeSparse(t, t.TempDir(), mib, []piece{{0, words(1000, 1)}}))
	if err := rawGz.Write(context.Background(), &buf, d); err != nil {
		t.Fatal(err)
	}
	h := buf.Bytes()
	// RFC 1952 section 2.3: ID1 ID2 CM FLG MTIME(4) XFL OS.
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3] != 0 || !bytes.Equal(h[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("gzip header % x: want no flags (no name) and mtime 0", h[:10])
	}
}

func TestRawCompressedCancel(t *testing.T) {
	d := openDisk(t, makeSparse(t, t.TempDir(), 64*mib, []piece{{0, words(int(mib), 1)}}))
	for _, rc := range rawComps {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := rc.f.Write(ctx, io.Discard, d); err == nil {
			t.Errorf("%s: Write with a cancelled context succeeded", rc.f.name)
		}
	}
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		name, compress string
		want           Format // nil: an error naming wantErr
		wantErr        string
	}{
		{"raw", "", raw{}, ""},
		{"raw", "none", raw{}, ""},
		{"raw", "zstd", rawZst, ""},
		{"raw", "xz", rawXz, ""},
		{"raw", "gzip", rawGz, ""},
		{"raw", "deflate", nil, "valid: none, zstd, xz, gzip"},
		{"raw.zst", "", rawZst, ""},
		{"raw.zst", "zstd", rawZst, ""},
		{"raw.gz", "xz", nil, "valid: gzip"},
		{"qcow2", "", qcow2{}, ""},
		{"qcow2", "none", qcow2{}, ""},
		{"qcow2", "deflate", qcow2{compress: compressDeflate}, ""},
		{"qcow2", "zstd", qcow2{compress: compressZstd}, ""},
		{"qcow2", "gzip", nil, "valid: none, deflate, zstd"},
		{"qcow3", "", nil, "unknown format"},
	} {
		f, err := New(tc.name, Options{Compress: tc.compress})
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%q, %q): %v, %v; want an error with %q", tc.name, tc.compress, f, err, tc.wantErr)
			}
			continue
		}
		if err != nil || f != tc.want {
			t.Errorf("New(%q, %q) = %#v, %v; want %#v", tc.name, tc.compress, f, err, tc.want)
		}
	}
	// A format without options takes none.
	register(optionless{}, ".optionless")
	defer func() { formats = formats[:len(formats)-1] }()
	if f, err := New("optionless", Options{Compress: "none"}); err != nil || f != (optionless{}) {
		t.Errorf("New(optionless, none) = %v, %v", f, err)
	}
	if _, err := New("optionless", Options{Compress: "zstd"}); err == nil || !strings.Contains(err.Error(), "valid: none") {
		t.Errorf("New(optionless, zstd): %v", err)
	}
}

type optionless struct{}

func (optionless) Name() string                                 { return "optionless" }
func (optionless) Write(context.Context, io.Writer, Disk) error { return nil }

func TestCompressedNamesAndPaths(t *testing.T) {
	names := Names()
	for _, n := range []string{"raw", "raw.zst", "raw.xz", "raw.gz", "qcow2"} {
		if !slices.Contains(names, n) {
			t.Errorf("Names() = %v, missing %s", names, n)
		}
		if f, err := Lookup(n); err != nil || f.Name() != n {
			t.Errorf("Lookup(%q) = %v, %v", n, f, err)
		}
	}
	for path, want := range map[string]string{
		"a.raw.zst": "raw.zst", "A.IMG.ZST": "raw.zst", "x.raw.xz": "raw.xz", "x.img.xz": "raw.xz",
		"d/x.raw.gz": "raw.gz", "x.img.gz": "raw.gz", "x.raw": "raw", "x.qcow2": "qcow2",
	} {
		if f, err := FromPath(path); err != nil || f.Name() != want {
			t.Errorf("FromPath(%q) = %v, %v; want %s", path, f, err, want)
		}
	}
	for _, path := range []string{"x.zst", "x.gz.raw.bz2"} {
		if f, err := FromPath(path); err == nil {
			t.Errorf("FromPath(%q) = %v, want an error", path, f.Name())
		}
	}
}

func benchRawComp(b *testing.B, f Format) {
	d := benchTextDisk(b)
	b.SetBytes(d.Size())
	var n countingDiscard
	b.ResetTimer()
	for b.Loop() {
		n = 0
		if err := f.Write(context.Background(), &n, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/float64(d.Size()), "out/guest")
}

type countingDiscard int64

func (c *countingDiscard) Write(p []byte) (int, error) {
	*c += countingDiscard(len(p))
	return len(p), nil
}

// BenchmarkRawZst: MB/s are guest bytes (256 MiB: a quarter text, a quarter noise, half holes)
// per second, output discarded.
func BenchmarkRawZst(b *testing.B) { benchRawComp(b, rawZst) }

// BenchmarkRawXz: as BenchmarkRawZst, with xz.
func BenchmarkRawXz(b *testing.B) { benchRawComp(b, rawXz) }

// BenchmarkRawGz: as BenchmarkRawZst, with gzip.
func BenchmarkRawGz(b *testing.B) { benchRawComp(b, rawGz) }
