package ext4

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.sha256 from what the writer makes now")

// goldenFile pins the sha256 of the filesystems the writer makes from the rich test tree (with
// and without a journal), in the archive/tar style: a change that moves one byte is seen across
// commits. Regenerate on purpose with `go test ./rootfs/ext4 -run TestGolden -update`, and say
// in the commit why the bytes changed.
const goldenFile = "testdata/golden.sha256"

func TestGolden(t *testing.T) {
	var lines []string
	for _, c := range []struct {
		name      string
		noJournal bool
	}{{"rich-tree", false}, {"rich-tree-no-journal", true}} {
		opts := testOpts
		opts.NoJournal = c.noJournal
		img, _ := build(t, opts, richTree())
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%x  %s", h.Sum(nil), c.name))
	}
	got := strings.Join(lines, "\n") + "\n"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (make it with go test ./rootfs/ext4 -run TestGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("the filesystem bytes changed (if on purpose: go test ./rootfs/ext4 -run TestGolden -update, and say why in the commit):\ngot\n%spinned\n%s", got, want)
	}
}
