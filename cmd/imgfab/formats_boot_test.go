package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFormatsBootUEFI builds the demo image once as a stream-optimized VMDK and a fixed VHD, and
// boots each under OVMF: the platforms' formats must be bootable as written, not only readable.
func TestFormatsBootUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu twice (about a minute each under TCG); run without -short")
	}
	src := fixture(t, "demo/oci", "mkdemo.sh")
	out := t.TempDir()
	vmdk := filepath.Join(out, "d.vmdk")
	vhd := filepath.Join(out, "d.vhd")
	build(t, "oci:"+src+":demo", "--cmdline", "console=ttyS0 imgfab.test", "-o", vmdk, "-o", vhd)
	for _, c := range []struct{ path, qemuFormat string }{{vmdk, "vmdk"}, {vhd, "vpc"}} {
		t.Run(c.qemuFormat, func(t *testing.T) {
			serial := bootUEFI(t, c.path, c.qemuFormat, 6*time.Minute)
			if !strings.Contains(serial, "IMGFAB-BOOT-OK") {
				t.Fatalf("%s: no boot marker on the serial console; tail:\n%s", c.path, tail(serial, 4000))
			}
		})
	}
}
