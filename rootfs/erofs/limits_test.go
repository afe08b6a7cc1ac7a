package erofs

import (
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	goerofs "github.com/erofs/go-erofs"
)

// TestMaxSize: a file whose blocks would pass Options.MaxSize fails with ErrFull naming the
// numbers, and so does metadata that would; a tree that fits is the same image as without a limit.
func TestMaxSize(t *testing.T) {
	tree := []entry{dir("d", 0o755), reg("d/big", 0o644, pattern(5*bs+100, 1)), reg("d/small", 0o644, []byte("x"))}
	unlimited := buildMem(t, testOpts, tree)
	o := testOpts
	o.MaxSize = int64(len(unlimited))
	if got := buildMem(t, o, tree); !bytes.Equal(got, unlimited) {
		t.Error("a limit the tree fits changed the image")
	}
	for _, max := range []int64{3 * bs, int64(len(unlimited)) - bs} {
		o.MaxSize = max
		w, err := NewWriter(&memAt{}, o)
		if err != nil {
			t.Fatal(err)
		}
		if err = addAll(w, tree); err == nil {
			err = w.Close()
		}
		if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "allowed") {
			t.Errorf("MaxSize %d: %v, want ErrFull", max, err)
		}
	}
}

// TestTimeBefore1970: an mtime before the epoch is kept, as the kernel reads it (a signed 64-bit
// i_mtime), and go-erofs gives it back.
func TestTimeBefore1970(t *testing.T) {
	old := time.Unix(-86400*365, 5)
	e := reg("old", 0o644, []byte("1969"))
	e.hdr.ModTime = old
	img := buildMem(t, testOpts, []entry{e})
	fsys, err := goerofs.Open(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := fs.Stat(fsys, "old")
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*goerofs.Stat); int64(st.Mtime) != old.Unix() || st.MtimeNs != 5 {
		t.Errorf("mtime %d.%09d, want %d.000000005", int64(st.Mtime), st.MtimeNs, old.Unix())
	}
}
