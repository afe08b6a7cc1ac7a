package diskfmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteOutputSum: the sha256 WriteOutput hashes on the fly is the committed file's, for each
// format's writer on a disk with holes (raw and fixed VHD seek over them), and for a writer that
// goes back over what it wrote (the file is then hashed after the write). Unhashed, the same
// writer writes the same bytes and reports their length and no sha256.
func TestWriteOutputSum(t *testing.T) {
	dir := t.TempDir()
	src := makeSparse(t, dir, 64<<20, []piece{
		{0, bytes.Repeat([]byte{1}, 4096)},
		{5 << 20, bytes.Repeat([]byte("imgfab"), 100000)},
		{63 << 20, bytes.Repeat([]byte{9}, 1<<20)},
	})
	d := openDisk(t, src)
	formats := []Format{rewriter{}}
	for _, name := range []string{"raw", "qcow2", "vmdk", "vhd", "vhd-dynamic", "gce"} {
		f, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		formats = append(formats, f)
	}
	for _, f := range formats {
		t.Run(f.Name(), func(t *testing.T) {
			path := filepath.Join(dir, "out."+f.Name())
			out, err := CreateOutput(path)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := WriteOutput(t.Context(), out, f, d, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := out.Commit(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := CreateOutput(path + ".unhashed")
			if err != nil {
				t.Fatal(err)
			}
			psum, err := WriteOutput(t.Context(), plain, f, d, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := plain.Commit(); err != nil {
				t.Fatal(err)
			}
			if pb, err := os.ReadFile(path + ".unhashed"); err != nil || !bytes.Equal(pb, b) || psum != (Sum{Bytes: int64(len(b))}) {
				t.Errorf("unhashed: %+v, %d bytes (%v); hashed: %d bytes, equal %v", psum, len(pb), err, len(b), bytes.Equal(pb, b))
			}
			if want := fmt.Sprintf("%x", sha256.Sum256(b)); sum.SHA256 != want || sum.Bytes != int64(len(b)) {
				t.Errorf("WriteOutput: %s, %d bytes; the file: %s, %d bytes", sum.SHA256, sum.Bytes, want, len(b))
			}
			f2, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f2.Close()
			if fs, err := FileSum(t.Context(), f2); err != nil || fs != sum {
				t.Errorf("FileSum: %v, %v; WriteOutput: %v", fs, err, sum)
			}
		})
	}
}

// rewriter writes the disk as a raw stream, then seeks back and overwrites its first bytes.
type rewriter struct{}

func (rewriter) Name() string { return "rewriter" }

func (rewriter) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := writeRawStream(ctx, w, d); err != nil {
		return err
	}
	if _, err := w.(io.Seeker).Seek(100, io.SeekStart); err != nil {
		return err
	}
	_, err := w.Write([]byte("written again"))
	return err
}

// TestWritebackFile: writes through a WritebackFile (several writeback hints' worth, from two
// goroutines, with Flush between) land as written; Stop returns and may be called twice.
func TestWritebackFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.raw")
	out, err := CreateOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	w := out.Writeback()
	chunk := bytes.Repeat([]byte("wb"), 1<<19) // 1 MiB
	const chunks = 2 * writebackEvery >> 20
	done := make(chan error, 2)
	for g := range 2 {
		go func() {
			for i := g; i < chunks; i += 2 {
				if _, err := w.WriteAt(chunk, int64(i)<<20); err != nil {
					done <- err
					return
				}
				if i%7 == 0 {
					w.Flush()
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	w.Stop()
	w.Stop()
	if err := out.Commit(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, bytes.Repeat(chunk, chunks)) {
		t.Errorf("the file is not what was written: %d bytes", len(b))
	}
}
