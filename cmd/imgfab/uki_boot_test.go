package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/rootfs"
)

// replaceESP rewrites the ESP of a raw disk built by imgfab with files planned by plan from tree.
// Until `imgfab build --uki` / `--boot-chain shim` are wired, the boot tests build the usual disk
// and swap its ESP contents through the bootloader API (the same calls assemble will make).
func replaceESP(t *testing.T, raw string, res assemble.Result, fsys fs.FS,
	plan func(bootloader.Config) ([]bootloader.FileSpec, bootloader.Entry, error)) bootloader.Entry {
	t.Helper()
	k, err := rootfs.FindKernel(fsys)
	if err != nil {
		t.Fatal(err)
	}
	files, e, err := plan(bootloader.Config{Tree: fsys, Kernel: k, Options: res.Cmdline, Epoch: time.Unix(res.Epoch, 0)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	esp := res.Partitions[0]
	// Zero the old FAT's boot sector region first so nothing of the old ESP is mistaken for the new.
	if _, err := f.WriteAt(make([]byte, 1<<20), esp.Offset); err != nil {
		t.Fatal(err)
	}
	if err := bootloader.WriteESP(context.Background(), f, esp.Offset, esp.Size, "ESP", time.Unix(res.Epoch, 0), files); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestUKIBootsUEFI boots a UKI-only ESP (no systemd-boot: /EFI/BOOT/BOOTX64.EFI is the UKI made
// from the demo-uki fixture's systemd stub, kernel, initrd, os-release and command line) under OVMF.
func TestUKIBootsUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu (about a minute under TCG); run without -short")
	}
	fixture(t, "demo-uki/oci", "mkdemo-uki.sh")
	tree, err := filepath.Abs(filepath.Join("..", "..", "testdata", "cache", "demo-uki", "root"))
	if err != nil {
		t.Fatal(err)
	}
	// The demo-uki tree has no systemd-boot, so the disk is built from the demo image (same root
	// content otherwise) and its ESP replaced with the UKI.
	src := fixture(t, "demo/oci", "mkdemo.sh")
	raw := filepath.Join(t.TempDir(), "uki.raw")
	res := build(t, "oci:"+src+":demo", "--cmdline", "console=ttyS0 imgfab.test", "-o", raw)
	e := replaceESP(t, raw, res, os.DirFS(tree), bootloader.PlanUKI)
	if e.Linux != "/EFI/BOOT/BOOTX64.EFI" || len(e.Files) != 1 {
		t.Fatalf("UKI-only ESP expected, got %+v", e)
	}
	checkOracles(t, raw, res)
	serial := bootUEFI(t, raw, "raw", 6*time.Minute)
	if !strings.Contains(serial, "IMGFAB-BOOT-OK") {
		t.Fatalf("no boot marker on the serial console; tail:\n%s", tail(serial, 4000))
	}
}
