package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// fixture returns the path of a cached fixture made by a testdata script; a missing one fails with
// the command that makes it (make test makes the demo one first).
func fixture(t *testing.T, rel, script string) string {
	t.Helper()
	p := filepath.Join("..", "..", "testdata", "cache", rel)
	if _, err := os.Stat(filepath.Join(p, "index.json")); err != nil {
		t.Fatalf("fixture %s missing: run `bash testdata/%s` (make fixtures)", p, script)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// bootUEFI boots disk under OVMF (q35, TCG) until qemu exits or timeout, and returns the serial log.
func bootUEFI(t *testing.T, disk, format string, timeout time.Duration) string {
	t.Helper()
	qemu := testtool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s missing (apt-get install ovmf)", f)
		}
	}
	dir := t.TempDir()
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "2",
		"-nographic", "-no-reboot", "-nic", "none", "-monitor", "none",
		"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "if=virtio,format="+format+",file="+disk+",snapshot=on",
		"-serial", "file:"+log)
	out, err := cmd.CombinedOutput()
	serial, _ := os.ReadFile(log)
	if ctx.Err() != nil {
		t.Fatalf("qemu did not power off within %v; serial log tail:\n%s", timeout, tail(string(serial), 3000))
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s\nserial:\n%s", err, out, tail(string(serial), 3000))
	}
	return string(serial)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
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
