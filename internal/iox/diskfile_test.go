package iox

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCoalesced: writes through a Coalesced (contiguous runs, gaps, a write going back, one over
// coalesceMax, reads and Seek between them) leave the file as the same writes straight to it, and
// a read sees what was written before it.
func TestCoalesced(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	direct, via := open("direct"), open("via")
	counted := &countingFile{DiskFile: via}
	c := Coalesce(counted)
	type w struct {
		off int64
		n   int
		b   byte
	}
	writes := []w{{0, 512, 1}, {512, 512, 2}, {1024, 100, 3}, {4096, 512, 4}, {600, 10, 5}, {4608, coalesceMax, 6}}
	for i := range 3000 {
		writes = append(writes, w{8<<20 + int64(i)*512, 512, byte(i)})
	}
	for i, x := range writes {
		p := bytes.Repeat([]byte{x.b}, x.n)
		if _, err := direct.WriteAt(p, x.off); err != nil {
			t.Fatal(err)
		}
		if n, err := c.WriteAt(p, x.off); err != nil || n != x.n {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		if i == 4 { // a read sees the gathered bytes
			got := make([]byte, 10)
			if _, err := c.ReadAt(got, 600); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("ReadAt after WriteAt: %v, %v", got, err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// 3006 writes: the 3000 contiguous 512-byte ones (1.5 MiB) take two.
	if counted.writes > 10 {
		t.Errorf("%d writes reached the file for %d", counted.writes, len(writes))
	}
	a, _ := os.ReadFile(direct.Name())
	b, _ := os.ReadFile(via.Name())
	if !bytes.Equal(a, b) {
		t.Errorf("coalesced file differs: %d bytes, direct %d", len(b), len(a))
	}
}

// countingFile counts the WriteAt calls that reach the file.
type countingFile struct {
	DiskFile
	writes int
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	f.writes++
	return f.DiskFile.WriteAt(p, off)
}
