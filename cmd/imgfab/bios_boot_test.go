package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestDemoBootsHybrid: the demo-bios image built with --boot hybrid boots under SeaBIOS (GRUB from
// the BIOS boot partition) and under OVMF (systemd-boot), and builds reproducibly.
func TestDemoBootsHybrid(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu twice; run without -short")
	}
	src := fixture(t, "demo-bios/oci", "mkdemo-bios.sh")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	args := []string{"oci:" + src + ":demo", "--boot", "hybrid", "--cmdline", "console=ttyS0 imgfab.test"}
	build(t, append(args, "-o", a)...)
	build(t, append(args, "-o", b)...)
	if testtool.FileSum(t, a) != testtool.FileSum(t, b) {
		t.Error("two hybrid builds differ")
	}
	if s := bootBIOS(t, a, "raw", 4*time.Minute); !strings.Contains(s, "IMGFAB-BOOT-OK") {
		t.Fatalf("SeaBIOS: no boot marker; tail:\n%s", tail(s, 4000))
	}
	if s := bootUEFI(t, a, "raw", 4*time.Minute); !strings.Contains(s, "IMGFAB-BOOT-OK") {
		t.Fatalf("OVMF: no boot marker; tail:\n%s", tail(s, 4000))
	}
}

// TestDemoBootsBIOSMBR: --boot bios --table mbr boots under SeaBIOS with root=PARTUUID=SSSSSSSS-02.
func TestDemoBootsBIOSMBR(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu; run without -short")
	}
	src := fixture(t, "demo-bios/oci", "mkdemo-bios.sh")
	disk := filepath.Join(t.TempDir(), "mbr.raw")
	res := build(t, "oci:"+src+":demo", "--boot", "bios", "--table", "mbr", "--cmdline", "console=ttyS0 imgfab.test", "-o", disk)
	if !strings.Contains(res.Cmdline, "root=PARTUUID=") || strings.Count(strings.Fields(res.Cmdline)[0], "-") != 1 {
		t.Errorf("MBR root should be PARTUUID=SSSSSSSS-PP, cmdline %q", res.Cmdline)
	}
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	if out, err := exec.Command(sfdisk, "-d", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "label: dos") {
		t.Fatalf("sfdisk -d: %v\n%s", err, out)
	}
	if s := bootBIOS(t, disk, "raw", 4*time.Minute); !strings.Contains(s, "IMGFAB-BOOT-OK") {
		t.Fatalf("SeaBIOS: no boot marker; tail:\n%s", tail(s, 4000))
	}
}
