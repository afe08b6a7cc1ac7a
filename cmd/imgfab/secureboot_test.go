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
	ovmfCodeSB = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" // Microsoft keys enrolled, Secure Boot on
)

// bootSecure boots disk under OVMF with Secure Boot enforced (SMM, secure pflash, Microsoft keys)
// until every marker has appeared on the serial console (then qemu is stopped), qemu exits, or
// timeout. It returns the serial log.
func bootSecure(t *testing.T, disk string, timeout time.Duration, markers ...string) string {
	t.Helper()
	qemu := testtool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	for _, f := range []string{ovmfCodeSB, ovmfVarsMS} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s missing (apt-get install ovmf)", f)
		}
	}
	dir := t.TempDir()
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(ovmfVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35,smm=on", "-accel", "tcg", "-m", "1024", "-smp", "2",
		"-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1",
		"-nographic", "-no-reboot", "-nic", "none", "-monitor", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCodeSB,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "if=virtio,format=raw,file="+disk+",snapshot=on",
		"-serial", "file:"+log)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			serial, _ := os.ReadFile(log)
			return string(serial)
		case <-tick.C:
			serial, _ := os.ReadFile(log)
			all := true
			for _, m := range markers {
				all = all && strings.Contains(string(serial), m)
			}
			if all || ctx.Err() != nil {
				cmd.Process.Kill()
				<-done
				return string(serial)
			}
		}
	}
}

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
