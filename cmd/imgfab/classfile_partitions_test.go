package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestClassFilePartitions: a class's partitions reach the disk through build -f, are listed by
// --json and named by inspect (the disk itself is checked by assemble's TestPartitions).
func TestClassFilePartitions(t *testing.T) {
	src := testtool.Fixture(t, "demo/oci", "mkdemo.sh")
	dir := t.TempDir()
	file := filepath.Join(dir, "parts.yaml")
	yml := "classes:\n  p:\n    from: oci:" + src + ":demo\n    source_date_epoch: 1700000000\n" +
		"    partitions:\n      - {mount: /var, size: 32MiB}\n      - {size: 8MiB, fs: swap}\n    outputs: [{path: p.raw}]\n"
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := imgfabIn(t, "build", "-f", file, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rs := classLines(t, out)
	if len(rs) != 1 || len(rs[0].Partitions) < 4 {
		t.Fatalf("results %+v", rs)
	}
	ps := rs[0].Partitions
	if ps[1].Name != "var" || ps[1].Mount != "/var" || ps[1].FS != "ext4" || ps[2].Name != "swap" || ps[2].FS != "swap" || ps[3].Name != "root-x86-64" {
		t.Errorf("partitions %+v", ps)
	}
	code, out, errs = imgfabIn(t, "inspect", filepath.Join(dir, "p.raw"))
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errs)
	}
	for _, want := range []string{"  2  var ", "  3  swap ", "  4  root-x86-64 ", "root: partition 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
}
