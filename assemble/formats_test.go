package assemble_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
)

// TestReproducibleEveryFormat (issue 3, "Done when" 3): the demo built into every format in one
// build, three times — in two directories, and once with GOMAXPROCS=1 (the qcow2, VMDK and gzip
// writers size their worker pools from it) — gives the same sha256 per format. The formats only
// convert makes from the raw (vhd-dynamic, compressed qcow2): cmd/imgfab TestConvertReproducible.
// Each output's sha256 and size in the Result (hashed as it was written, issue 17) are those of
// the file: the second raw and the VHD go through the hashing writer with the holes they seek
// over, the first raw is the scratch disk hashed from the file.
func TestReproducibleEveryFormat(t *testing.T) {
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	exts := []string{".raw", ".qcow2", ".vmdk", ".vhd", ".tar.gz", ".raw.zst", ".raw.xz", ".raw.gz", ".2.raw"}
	var first []string
	for i, procs := range []int{0, 1, 0} {
		dir := t.TempDir()
		var outs []string
		for _, e := range exts {
			outs = append(outs, filepath.Join(dir, "d"+e))
		}
		p := plan(src, outs...)
		p.Cmdline = "console=ttyS0"
		var res assemble.Result
		func() {
			if procs != 0 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			}
			res = run(t, p)
		}()
		var sums []string
		for k, o := range p.Outputs {
			sums = append(sums, testtool.FileSum(t, o.Path))
			fi, err := os.Stat(o.Path)
			if err != nil {
				t.Fatal(err)
			}
			if r := res.Outputs[k]; r.Path != o.Path || r.SHA256 != sums[k] || r.Bytes != fi.Size() {
				t.Errorf("run %d: result for %s: %s, %d bytes; the file has %s, %d bytes", i, o.Path, r.SHA256, r.Bytes, sums[k], fi.Size())
			}
		}
		if i == 0 {
			first = sums
			continue
		}
		for k, s := range sums {
			if s != first[k] {
				gmp := "default"
				if procs != 0 {
					gmp = strconv.Itoa(procs)
				}
				t.Errorf("run %d (GOMAXPROCS %s): %s has sha256 %s, first run %s", i, gmp, exts[k], s, first[k])
			}
		}
	}
}

// TestMirroredOutputs (issue 17): a raw that is not the scratch disk and a fixed VHD are written
// as the disk is built (diskfmt.Mirrored), not from it afterwards; their bytes are those the
// format writers make of the disk — the raw of a build to raw alone, the VHD the same build
// writes to stdout (which is never a mirror) — whether the disk is a scratch raw (first output a
// VMDK), the first output itself (a raw), or a qcow2 written in place.
func TestMirroredOutputs(t *testing.T) {
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.raw")
	run(t, plan(src, ref))
	wantRaw := testtool.FileSum(t, ref)
	for _, first := range []string{"a.vmdk", "a.raw", "a.qcow2"} {
		sub := filepath.Join(dir, strings.ReplaceAll(first, ".", "-"))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		p := plan(src, filepath.Join(sub, first), filepath.Join(sub, "m.raw"), filepath.Join(sub, "m.vhd"), "-")
		p.Outputs[3].Format = "vhd"
		h := sha256.New()
		p.Stdout = h
		run(t, p)
		if got := testtool.FileSum(t, filepath.Join(sub, "m.raw")); got != wantRaw {
			t.Errorf("first output %s: the mirrored raw has sha256 %s, the raw build %s", first, got, wantRaw)
		}
		if got, want := testtool.FileSum(t, filepath.Join(sub, "m.vhd")), fmt.Sprintf("%x", h.Sum(nil)); got != want {
			t.Errorf("first output %s: the mirrored VHD has sha256 %s, the VHD writer's on stdout %s", first, got, want)
		}
	}
}
