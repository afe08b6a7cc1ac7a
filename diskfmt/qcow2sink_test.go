package diskfmt

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// sinkOps is a deterministic sequence of writes like a build's: sequential appends in large
// pieces with zero blocks left out, then scattered metadata written out of order, rewrites in
// place, zeros over data, partial clusters, a write past the end that a Truncate cuts off, and a
// shrink into the middle of a cluster holding data followed by a grow (what was cut off must read
// as zeros, as in a file), ending with a 72 MiB guest.
func sinkOps(seed uint64, w interface {
	WriteAt([]byte, int64) (int, error)
	Truncate(int64) error
}) error {
	r := rand.New(rand.NewPCG(seed, 1))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(255) + 1)
		}
		return b
	}
	// Data appended from 9 MiB, 4 KiB blocks, every fifth block a hole.
	for off := int64(9 << 20); off < 40<<20; {
		n := (r.IntN(64) + 1) * 4096
		b := fill(n)
		for i := 0; i < n; i += 4096 {
			if r.IntN(5) == 0 {
				clear(b[i : i+4096])
			}
		}
		if _, err := w.WriteAt(b, off); err != nil {
			return err
		}
		off += int64(n)
	}
	// Metadata, out of order: before the data, in its gaps, unaligned.
	for _, off := range []int64{1 << 20, 4<<20 + 512, 9<<20 + 100, 3 << 20, 65536 - 300, 0, 60<<20 + 7} {
		if _, err := w.WriteAt(fill(r.IntN(200000)+1), off); err != nil {
			return err
		}
	}
	// Zeros: over data (in place), and on clusters with nothing (dropped).
	if _, err := w.WriteAt(make([]byte, 100000), 10<<20); err != nil {
		return err
	}
	if _, err := w.WriteAt(make([]byte, 1<<20), 50<<20); err != nil {
		return err
	}
	if _, err := w.WriteAt(fill(70000), 600<<20); err != nil { // past the end, cut off below
		return err
	}
	if err := w.Truncate(70 << 20); err != nil {
		return err
	}
	if _, err := w.WriteAt(fill(100000), 70<<20-100000); err != nil {
		return err
	}
	// Shrink into the middle of a cluster that holds data, then grow again: what was cut off must
	// read as zeros, as in a file.
	if err := w.Truncate(70<<20 - 50000); err != nil {
		return err
	}
	if err := w.Truncate(72 << 20); err != nil {
		return err
	}
	_, err := w.WriteAt(fill(512), 72<<20-512) // the last sector
	return err
}

// TestQcow2Sink: the image the sink makes holds the same guest as a raw file given the same
// writes (qemu-img compare), passes qemu-img check (no leaks, no corruptions: the cut-off
// cluster's refcount is 0), reads back through the sink itself and through our qcow2 reader, maps
// data where the raw has data, and is byte-identical for the same writes.
func TestQcow2Sink(t *testing.T) {
	dir := t.TempDir()
	rawF, err := os.Create(filepath.Join(dir, "mirror.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer rawF.Close()
	if err := sinkOps(7, rawF); err != nil {
		t.Fatal(err)
	}
	var images [][]byte
	for pass := range 2 {
		path := filepath.Join(dir, "sink.qcow2")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		s := NewQcow2Sink(f)
		if err := sinkOps(7, s); err != nil {
			t.Fatal(err)
		}
		// The sink reads what was written, before and after Finish.
		want, err := os.ReadFile(rawF.Name())
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := s.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("pass %d: the sink reads back other bytes than were written", pass)
		}
		for _, e := range s.Extents() {
			if e.Off%qcowCluster != 0 || e.End() > s.Size() {
				t.Errorf("extent %+v not cluster-aligned or past the %d-byte guest", e, s.Size())
			}
		}
		if _, err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteAt([]byte{1}, 0); err == nil {
			t.Error("a write after Finish was taken")
		}
		f.Close()
		if o, code := run(t, "qemu-img", "check", "-f", "qcow2", path); code != 0 {
			t.Fatalf("qemu-img check: exit %d\n%s", code, o)
		}
		if o, code := run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", path, rawF.Name()); code != 0 {
			t.Fatalf("qemu-img compare with the raw given the same writes: exit %d\n%s", code, o)
		}
		img, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, img)
		// Our own reader agrees.
		d, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(want))
		if _, err := d.ReadAt(back, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		d.Close()
		if !bytes.Equal(back, want) {
			t.Errorf("diskfmt's qcow2 reader reads other bytes than were written")
		}
		// Allocated only where the writes left data: the data written is 31 MiB + metadata, and
		// the dropped zeros and the cut-off cluster take nothing.
		if n := int64(len(img)); n > 40<<20 {
			t.Errorf("image is %d bytes for about 33 MiB of data", n)
		}
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Error("two images from the same writes differ")
	}
}
