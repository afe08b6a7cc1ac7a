package diskfmt

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// FuzzOpenGCE fuzzes the GCE tarball reader:
//
//	go test -run '^$' -fuzz '^FuzzOpenGCE$' -fuzztime 1m -fuzzminimizetime 200x ./diskfmt
//
// The input is the tar stream, gzip'd here so that mutations reach the tar and sparse-map
// parsers (an input that already starts with the gzip magic is used as it is). Every failure
// must be a *FormatError (or a temporary file larger than its filesystem allows: EFBIG); a
// success must honour the Disk contract and read zeros outside its extents. Seeds: the small
// hand-made tarballs below and GNU tar's own in testdata/fuzz/FuzzOpenGCE/gnutar-* (old GNU,
// PAX 0.0, 0.1 and 1.0 sparse, and plain).
func FuzzOpenGCE(f *testing.F) {
	for _, b := range gceFuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			zw.Write(b)
			zw.Close()
			b = buf.Bytes()
		}
		img, err := readGCE(context.Background(), bytes.NewReader(b))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) && !errors.Is(err, syscall.EFBIG) {
				t.Fatalf("not a FormatError: %v", err)
			}
			return
		}
		defer img.Close()
		if err := checkDisk(img); err != nil {
			t.Fatal(err)
		}
		if err := readSome(img, 4<<20); err != nil {
			t.Fatal(err)
		}
	})
}

// readSome reads up to budget bytes of img's extents and 4 KiB of each hole before them,
// checking that the holes read as zeros.
func readSome(img Image, budget int64) error {
	buf := make([]byte, 256<<10)
	var end int64
	for _, e := range img.Extents() {
		if end < e.Off && budget > 0 {
			n := min(e.Off-end, 4096)
			if _, err := img.ReadAt(buf[:n], end); err != nil || !isZero(buf[:n]) {
				return errors.Join(errors.New("the hole before an extent does not read as zeros"), err)
			}
		}
		end = e.End()
		for off := e.Off; off < e.End() && budget > 0; {
			n := min(e.End()-off, int64(len(buf)), budget)
			if _, err := img.ReadAt(buf[:n], off); err != nil {
				return err
			}
			off, budget = off+n, budget-n
		}
	}
	return nil
}

// gceFuzzSeeds are small tar streams for disk.raw: plain, old GNU sparse with an extension
// block, PAX sparse 1.0, 0.1 and 0.0.
func gceFuzzSeeds() [][]byte {
	data := pattern(1024, 77)
	trailer := make([]byte, 1024)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	ents := []Extent{{0, 100}, {4096, 200}, {8192, 1}, {9000, 23}, {20000, 700}, {65536, 0}}
	pax := func(name string, size int64, recs ...string) []byte {
		return cat(paxHeader(recs...), tarBlock(name, '0', size, false))
	}
	map10 := padBlock([]byte("3\n0\n512\n4096\n512\n65024\n0\n"))
	return [][]byte{
		cat(tarBlock("disk.raw", '0', 1024, true), data, trailer),
		cat(oldGNUSparse(65536, 1024, ents), data, trailer),
		cat(pax("GNUSparseFile.0/disk.raw", 512+1024, "GNU.sparse.major", "1", "GNU.sparse.minor", "0",
			"GNU.sparse.name", "disk.raw", "GNU.sparse.realsize", "65536"), map10, data, trailer),
		cat(pax("disk.raw", 1024, "GNU.sparse.size", "65536", "GNU.sparse.numblocks", "2",
			"GNU.sparse.map", "512,512,8192,512"), data, trailer),
		cat(pax("disk.raw", 1024, "GNU.sparse.size", "65536", "GNU.sparse.numblocks", "2",
			"GNU.sparse.offset", "0", "GNU.sparse.numbytes", "1000", "GNU.sparse.offset", "60000", "GNU.sparse.numbytes", "24"), data, trailer),
	}
}

// TestGCEFuzzSeeds: every seed, hand-made or GNU tar's, opens and reads back.
func TestGCEFuzzSeeds(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	seeds := map[string][]byte{}
	for i, b := range gceFuzzSeeds() {
		seeds[fmt.Sprint("seed ", i)] = b
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpenGCE", "gnutar-*"))
	if len(files) < 5 {
		t.Errorf("%d gnutar-* seeds in testdata/fuzz/FuzzOpenGCE, want 5", len(files))
	}
	for _, p := range files {
		body, _ := os.ReadFile(p)
		lit, _ := bytes.CutPrefix(body, []byte("go test fuzz v1\n[]byte("))
		s, err := strconv.Unquote(string(bytes.TrimSuffix(bytes.TrimSpace(lit), []byte(")"))))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		seeds[filepath.Base(p)] = []byte(s)
	}
	for name, b := range seeds {
		img, err := readGCE(context.Background(), bytes.NewReader(gzipBytes(t, b)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := readSome(img, 1<<20); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		img.Close()
	}
}
