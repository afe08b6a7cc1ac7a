package assemble_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testimage"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/build-golden.sha256 from what a build makes now")

// buildGolden pins the sha256 of each output of one build from a synthetic image (no fixture, so
// the same on every machine): the qcow2 written in place, the raw and VHD written as mirrors of
// the disk, the VMDK written from it. Issue 17 moved how each is written, not a byte: the file was
// made by the code before it (cbb4923) and the code after it makes the same. A change that moves
// bytes shows here, and says so in its commit (go test ./assemble -run TestBuildGolden -update).
const buildGolden = "testdata/build-golden.sha256"

func TestBuildGolden(t *testing.T) {
	src := "oci:" + testimage.WriteLayout(t, "g", testimage.GzipTar(t, testimage.ContentTree())) + ":g"
	dir := t.TempDir()
	names := []string{"d.qcow2", "d.raw", "d.vhd", "d.vmdk"}
	var outs []string
	for _, n := range names {
		outs = append(outs, filepath.Join(dir, n))
	}
	p := plan(src, outs...)
	p.SourceDateEpoch = epoch(1700000000)
	p.Cmdline = "console=ttyS0"
	res := run(t, p)
	var got strings.Builder
	for i, o := range res.Outputs {
		fmt.Fprintf(&got, "%s  %s\n", o.SHA256, names[i])
	}
	if *updateGolden {
		if err := os.WriteFile(buildGolden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(buildGolden)
	if err != nil {
		t.Fatalf("%v (make it with -update)", err)
	}
	if got.String() != string(want) {
		t.Errorf("a build's outputs moved:\n%s\nwant (%s):\n%s", got.String(), buildGolden, want)
	}
}
