package diskfmt

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.sha256 from what the writers make now")

// goldenFile pins the sha256 of every format written from one small disk, in the archive/tar
// style: a change that moves one byte of any format shows up across commits, not only as a
// difference between two runs. Regenerate on purpose with `go test -run TestGolden -update`,
// and say in the commit why the bytes changed.
const goldenFile = "testdata/golden.sha256"

// goldenOutputs are the formats and compressions pinned.
var goldenOutputs = []struct{ name, compress string }{
	{"raw", ""}, {"qcow2", ""}, {"qcow2", "deflate"}, {"qcow2", "zstd"}, {"vmdk", ""}, {"vhd", ""},
	{"vhd-dynamic", ""}, {"gce", ""}, {"raw.gz", ""}, {"raw.zst", ""}, {"raw.xz", ""},
}

func TestGolden(t *testing.T) {
	dir := t.TempDir()
	// 8 MiB: data at the start, across a 64 KiB cluster edge, in the middle and in the last sector;
	// holes elsewhere; one all-zero data run (written zeros, not a hole).
	src := makeSparse(t, dir, 8<<20, []piece{
		{0, pattern(4096, 1)},
		{64<<10 - 700, pattern(2000, 2)},
		{3<<20 + 512, pattern(300<<10, 3)},
		{5 << 20, make([]byte, 128<<10)},
		{8<<20 - 512, pattern(512, 4)},
	})
	d := openDisk(t, src)
	ctx := WithIdentity(context.Background(), Identity{Seed: []byte("imgfab golden"), Time: time.Unix(1700000000, 0).UTC()})
	var lines []string
	for _, o := range goldenOutputs {
		f, err := New(o.name, Options{Compress: o.compress})
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		if err := WriteFile(ctx, out, f, d); err != nil {
			t.Fatalf("%s %s: %v", o.name, o.compress, err)
		}
		sum := fmt.Sprintf("%x", testtool.FileSHA256(t, out))
		key := o.name
		if o.compress != "" {
			key += "+" + o.compress
		}
		lines = append(lines, fmt.Sprintf("%s  %s", sum, key))
	}
	if *update {
		if err := os.WriteFile(goldenFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (make it with go test -run TestGolden -update)", err)
	}
	wantLines := strings.Split(strings.TrimSpace(string(want)), "\n")
	if len(wantLines) != len(lines) {
		t.Fatalf("%s has %d lines, the writers made %d: regenerate with -update", goldenFile, len(wantLines), len(lines))
	}
	for i := range lines {
		if lines[i] != wantLines[i] {
			t.Errorf("bytes changed: got %s, pinned %s (if on purpose: go test -run TestGolden -update, and say why in the commit)", lines[i], wantLines[i])
		}
	}
}
