package layers

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestSparseBudget: GNU tar sparse members (old GNU and PAX formats, as `tar -S` writes them)
// within MaxSparseBytes flatten; one beyond it is refused at once, naming the layer and the entry,
// instead of expanding a terabyte of holes.
func TestSparseBudget(t *testing.T) {
	gnuTar := testtool.Need(t, "tar", "tar")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "var/log"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		size   int64
		format string
		fail   bool
	}{
		{1 << 30, "gnu", false},
		{1 << 30, "posix", false},
		{MaxSparseBytes + 1<<20, "gnu", true},
		{1 << 40, "posix", true},
	} {
		file := filepath.Join(src, "var/log/lastlog")
		if err := os.Truncate(file, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		f, err := os.Create(file)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("data"), c.size-4)
		f.Close()
		layer := filepath.Join(dir, "layer-"+c.format+".tar")
		if out, err := exec.Command(gnuTar, "--format="+c.format, "-S", "-C", src, "-cf", layer, "var").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		l, err := ExtraLayer(layer, time.Unix(1700000000, 0))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rc := Flatten(context.Background(), []Layer{l})
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		took := time.Since(start)
		if c.fail {
			if err == nil || !strings.Contains(err.Error(), "var/log/lastlog") || !strings.Contains(err.Error(), layer) ||
				!strings.Contains(err.Error(), "at most 64 GiB") {
				t.Errorf("%d-byte sparse file (%s): err %v, want a refusal naming the layer, the entry and the limit", c.size, c.format, err)
			}
			if took > 5*time.Second {
				t.Errorf("%d-byte sparse file (%s): refused after %v, not at once", c.size, c.format, took)
			}
		} else if err != nil {
			t.Errorf("%d-byte sparse file (%s): %v", c.size, c.format, err)
		}
	}
}
