package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUKIBootsUEFI builds the demo-uki fixture (systemd stub, no systemd-boot) with --uki: the ESP
// holds only /EFI/BOOT/BOOTX64.EFI, the UKI made from the stub, kernel, initrd, os-release and
// command line, and OVMF boots it with no loader.
func TestUKIBootsUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu (about a minute under TCG); run without -short")
	}
	src := fixture(t, "demo-uki/oci", "mkdemo-uki.sh")
	raw := filepath.Join(t.TempDir(), "uki.raw")
	res := build(t, "oci:"+src+":demo-uki", "--uki", "--cmdline", "console=ttyS0 imgfab.test", "-o", raw)
	if res.Boot.UEFILoader != "uki" || res.Boot.Entry != "/EFI/BOOT/BOOTX64.EFI" || res.Loader != "uki" {
		t.Fatalf("UKI-only ESP expected, got %+v (loader %q)", res.Boot, res.Loader)
	}
	checkOracles(t, raw, res)
	serial := bootUEFI(t, raw, "raw", 6*time.Minute)
	if !strings.Contains(serial, "IMGFAB-BOOT-OK") {
		t.Fatalf("no boot marker on the serial console; tail:\n%s", tail(serial, 4000))
	}
	// Without --uki the same image has no loader: a clear error naming what was looked for.
	r := runImgfab(t, nil, "build", "oci:"+src+":demo-uki", "-o", filepath.Join(t.TempDir(), "x.raw"))
	if r.code != 1 || !strings.Contains(r.stderr, "systemd-bootx64.efi") {
		t.Fatalf("build without --uki: exit %d\n%s", r.code, r.stderr)
	}
}
