package diskfmt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// paddedSHA is the sha256 of a raw file followed by zeros up to size.
func paddedSHA(t *testing.T, path string, size int64) [32]byte {
	t.Helper()
	h := sha256.New()
	n := testtool.HashFile(t, h, path)
	for n < size {
		m := min(size-n, int64(len(zeros)))
		h.Write(zeros[:m])
		n += m
	}
	return [32]byte(h.Sum(nil))
}

func TestGCE(t *testing.T) {
	testtool.Need(t, "tar", "tar")
	ctx := context.Background()
	for _, tc := range diskCases() {
		if tc.size > 2*gib || (testing.Short() && tc.name != "mixed" && tc.size != 0) {
			continue // every zero goes through GNU tar and gzip: about 8 s per GiB
		}
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rawPath := makeSparse(t, dir, tc.size, tc.pieces)
			out := filepath.Join(dir, "out.tar.gz")
			if err := WriteFile(ctx, out, gce{}, openDisk(t, rawPath)); err != nil {
				t.Fatal(err)
			}
			rsize := ceilDiv(tc.size, gib) * gib
			// GNU format: magic "ustar " and version " \0" at 257 (not POSIX "ustar\0" "00"), no PAX.
			zr := gzipOpen(t, out)
			hdr := make([]byte, 512)
			if _, err := io.ReadFull(zr, hdr); err != nil {
				t.Fatal(err)
			}
			if string(hdr[257:265]) != "ustar  \x00" || hdr[156] != '0' {
				t.Errorf("tar header magic %q type %q, want GNU \"ustar  \\0\" and a regular file", hdr[257:265], hdr[156])
			}
			// One pass of GNU tar (and its gzip, which checks the CRC): the verbose listing on stderr,
			// the content of disk.raw on stdout, which must be the raw disk padded with zeros.
			cmd := exec.Command("tar", "-xvvzOf", out)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, stdout)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("tar -xvvzOf: %v: %s", err, stderr.Bytes())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if f := strings.Fields(lines[0]); len(lines) != 1 || len(f) < 6 || f[len(f)-1] != "disk.raw" ||
				f[0] != "-rw-r--r--" || f[1] != "0/0" || f[2] != strconv.FormatInt(rsize, 10) {
				t.Errorf("tar lists %q, want only disk.raw, -rw-r--r-- 0/0, %d bytes", stderr.Bytes(), rsize)
			}
			if got, want := [32]byte(h.Sum(nil)), paddedSHA(t, rawPath, rsize); n != rsize || got != want {
				t.Errorf("disk.raw: %d bytes, sha %x; want %d bytes, sha %x (the raw padded with zeros)", n, got, rsize, want)
			}
		})
	}
}

func gzipOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return zr
}

// TestGCEReproducible: two writes, holes or zeros as data, GOMAXPROCS=1 or more: the same bytes;
// the tar header follows the identity's time and nothing else.
func TestGCEReproducible(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	size := 40 * mib
	pieces := []piece{{3 * mib, pattern(int(5*mib), 1)}, {30*mib + 7, pattern(1000, 2)}}
	a := makeSparse(t, dir, size, pieces)
	b := makeSparse(t, dir, size, append([]piece{{0, make([]byte, 10*mib)}}, pieces...))
	sum := func(ctx context.Context, in string) [32]byte {
		h := sha256.New()
		if err := (gce{}).Write(ctx, h, openDisk(t, in)); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	s0 := sum(ctx, a)
	old := runtime.GOMAXPROCS(1)
	s1 := sum(ctx, a)
	runtime.GOMAXPROCS(max(old, 4))
	s4 := sum(ctx, a)
	runtime.GOMAXPROCS(old)
	if s := sum(ctx, b); s != s0 || s1 != s0 || s4 != s0 {
		t.Errorf("outputs differ (holes vs zeros, or GOMAXPROCS)")
	}

	when := time.Date(2024, 5, 6, 7, 8, 9, 500, time.UTC)
	var buf bytes.Buffer
	if err := (gce{}).Write(WithIdentity(ctx, Identity{Seed: []byte("x"), Time: when}), &buf, openDisk(t, a)); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "disk.raw" || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" ||
		!h.ModTime.Equal(when.Truncate(time.Second)) || h.Format != tar.FormatGNU || h.Size != gib ||
		len(h.PAXRecords) != 0 || h.Typeflag != tar.TypeReg {
		t.Errorf("tar header %+v", h)
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("a second tar entry or a bad trailer: %v", err)
	}
	if zr.Header.ModTime.Unix() > 0 || zr.Header.Name != "" {
		t.Errorf("gzip header has a time or a name: %+v", zr.Header)
	}
}

// BenchmarkGCEWrite: MB/s are guest bytes (1 GiB, half holes; the data incompressible) per second,
// output discarded, on all cores.
func BenchmarkGCEWrite(b *testing.B) { benchWrite(b, gce{}) }

// BenchmarkGCEWriteZeros: a 10 GiB disk with 8 MiB of data: the zero padding's cost.
func BenchmarkGCEWriteZeros(b *testing.B) {
	d := constDisk{size: 10 * gib, exts: []Extent{{0, 4 * mib}, {5 * gib, 4 * mib}}}
	b.SetBytes(d.size)
	for b.Loop() {
		if err := (gce{}).Write(context.Background(), io.Discard, d); err != nil {
			b.Fatal(err)
		}
	}
}

// Reading a GCE tarball: Open spools disk.raw and reads it as the guest (the disk padded to a
// whole GiB), reports "gce", and leaves no temporary file; tarballs that are not GCE's are
// refused with the field named.
func TestGCERead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("TMPDIR", filepath.Join(dir, "tmp"))
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	rawPath := makeSparse(t, dir, 40<<20, []piece{{1 << 20, pattern(3<<20, 7)}, {30 << 20, pattern(64<<10, 9)}})
	out := filepath.Join(dir, "disk.tar.gz")
	if err := WriteFile(ctx, out, gce{}, openDisk(t, rawPath)); err != nil {
		t.Fatal(err)
	}
	img, err := Open(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if img.Format() != "gce" || img.Size() != gib {
		t.Errorf("format %q size %d, want gce and 1 GiB", img.Format(), img.Size())
	}
	back := filepath.Join(dir, "back.raw")
	if err := WriteFile(ctx, back, raw{}, img); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if paddedSHA(t, rawPath, gib) != paddedSHA(t, back, gib) {
		t.Error("disk.raw read back differs from the raw disk")
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	mk := func(name string, entries ...string) string {
		p := filepath.Join(dir, name)
		f, _ := os.Create(p)
		zw := gzip.NewWriter(f)
		tw := tar.NewWriter(zw)
		for _, e := range entries {
			tw.WriteHeader(&tar.Header{Name: e, Mode: 0o644, Size: 512, Typeflag: tar.TypeReg, Format: tar.FormatGNU})
			tw.Write(make([]byte, 512))
		}
		tw.Close()
		zw.Close()
		f.Close()
		return p
	}
	for _, c := range []struct{ path, want string }{
		{mk("two.tar.gz", "disk.raw", "extra"), `second entry "extra"`},
		{mk("other.tar.gz", "image.raw"), "gce: magic at offset 0x0"},
		{mk("x.raw.zst"), "compressed raw"},
	} {
		img, err := Open(context.Background(), c.path)
		if err == nil {
			img.Close()
			t.Errorf("%s: opened", c.path)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.path, err, c.want)
		}
	}
	// Truncated: the gzip stream ends inside disk.raw.
	b, _ := os.ReadFile(out)
	trunc := filepath.Join(dir, "trunc.tar.gz")
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	if img, err := Open(context.Background(), trunc); err == nil {
		img.Close()
		t.Error("truncated tarball opened")
	} else if !strings.Contains(err.Error(), "disk.raw") {
		t.Errorf("truncated: %v", err)
	} else {
		t.Log(err)
	}
}
