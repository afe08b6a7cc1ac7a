package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecureBootShimChain: the Debian image with shim-signed and grub-efi-amd64-signed, its ESP laid
// out by bootloader.PlanShim, boots under OVMF with Secure Boot enforced: shim (Microsoft-signed)
// starts Debian's GRUB, which loads Debian's signed kernel through shim_lock, and the kernel reports
// Secure Boot on. Negative: the demo's unsigned systemd-boot is refused by the same firmware.
func TestSecureBootShimChain(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu with Secure Boot (a few minutes under TCG); run without -short")
	}
	src := fixture(t, "debian-sb/oci", "mkdebian-sb.sh")
	raw := filepath.Join(t.TempDir(), "sb.raw")
	res := build(t, "oci:"+src+":debian-sb", "--boot-chain", "shim", "--cmdline", "console=ttyS0", "-o", raw)
	if res.Boot.UEFILoader != "shim" || res.Boot.Mode != "uefi" {
		t.Fatalf("shim chain expected, got %+v", res.Boot)
	}
	t.Logf("ESP entry: %s", res.Boot.Entry)
	checkOracles(t, raw, res)
	serial := bootSecure(t, raw, 8*time.Minute, "secureboot: Secure boot enabled", "Reached target")
	for _, m := range []string{"secureboot: Secure boot enabled", "Reached target"} {
		if !strings.Contains(serial, m) {
			t.Fatalf("no %q on the serial console; tail:\n%s", m, tail(serial, 5000))
		}
	}
	logLines(t, serial, "ecure boot", "Reached target")
}

// logLines logs the first serial line that contains each of subs (evidence in -v output).
func logLines(t *testing.T, serial string, subs ...string) {
	for _, s := range subs {
		for _, line := range strings.Split(serial, "\n") {
			if strings.Contains(line, s) {
				t.Logf("serial: %s", strings.TrimSpace(line))
				break
			}
		}
	}
}

// TestSecureBootRefusesUnsigned: the same firmware refuses the demo's unsigned systemd-boot.
func TestSecureBootRefusesUnsigned(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu with Secure Boot; run without -short")
	}
	src := fixture(t, "demo/oci", "mkdemo.sh")
	raw := filepath.Join(t.TempDir(), "demo.raw")
	build(t, "oci:"+src+":demo", "--cmdline", "console=ttyS0 imgfab.test", "-o", raw)
	serial := bootSecure(t, raw, 4*time.Minute, "Access Denied")
	if !strings.Contains(serial, "Access Denied") || strings.Contains(serial, "IMGFAB-BOOT-OK") {
		t.Fatalf("the unsigned systemd-boot was not refused; tail:\n%s", tail(serial, 4000))
	}
	logLines(t, serial, "Access Denied")
}
