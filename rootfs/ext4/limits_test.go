package ext4

import (
	"archive/tar"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestOutOfInodes(t *testing.T) {
	opts := testOpts
	opts.Size = 8 << 20 // 512 inodes
	var es []entry
	for i := 0; i < 600; i++ {
		es = append(es, reg(fmt.Sprintf("f%d", i), 0644, ""))
	}
	_, err := buildTo(filepath.Join(t.TempDir(), "i"), opts, es)
	if err == nil || !strings.Contains(err.Error(), "out of inodes: 513 needed, filesystem of 8 MiB has 512") {
		t.Errorf("got %v", err)
	}
}

func TestTooManyLinks(t *testing.T) {
	es := []entry{reg("f", 0644, "x")}
	for i := 1; i < maxLinks; i++ {
		es = append(es, hardlink(fmt.Sprintf("l%d", i), "f"))
	}
	img, _ := build(t, testOpts, es) // exactly 65000 links
	fsckClean(t, img)
	es = append(es, hardlink("one-more", "f"))
	_, err := buildTo(filepath.Join(t.TempDir(), "l"), testOpts, es)
	if err == nil || !strings.Contains(err.Error(), "more than 65000 links") {
		t.Errorf("got %v", err)
	}
}

// TestMemoryPerEntry checks that metadata memory stays small: 100,000 empty files in 100 directories.
func TestMemoryPerEntry(t *testing.T) {
	w, err := NewWriter(discard{}, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	hdr := tar.Header{Typeflag: tar.TypeReg, Mode: 0644, ModTime: testTime}
	const n = 100000
	for i := 0; i < n; i++ {
		hdr.Name = fmt.Sprintf("usr/share/d%03d/file-%06d", i%100, i)
		if err := w.Add(&hdr, nil); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := int64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d bytes per entry", per)
	if per > 600 {
		t.Errorf("%d bytes of heap per entry, want at most 600", per)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
