package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// fixture returns the path of a cached fixture made by a testdata script; a missing one fails with
// the command that makes it (make test makes the demo one first).
func fixture(t *testing.T, rel, script string) string {
	t.Helper()
	return testtool.Fixture(t, rel, script)
}

// TestDemoBootsUEFI builds the demo image as qcow2 and boots it under OVMF: the demo's /sbin/init
// prints a marker and powers off when the command line has imgfab.test.
func TestDemoBootsUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu (about a minute under TCG); run without -short")
	}
	src := fixture(t, "demo/oci", "mkdemo.sh")
	out := t.TempDir()
	qcow := filepath.Join(out, "demo.qcow2")
	raw := filepath.Join(out, "demo.raw")
	res := build(t, "oci:"+src+":demo", "--cmdline", "console=ttyS0 imgfab.test", "-o", qcow, "-o", raw)
	checkOracles(t, raw, res)
	serial := bootUEFI(t, qcow, "qcow2", 6*time.Minute)
	if !strings.Contains(serial, "IMGFAB-BOOT-OK") {
		t.Fatalf("no boot marker on the serial console; tail:\n%s", tail(serial, 4000))
	}
	t.Logf("booted: %s", res.KernelVer)
}
