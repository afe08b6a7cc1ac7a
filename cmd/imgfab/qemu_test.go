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
	ovmfCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfCodeSB = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" // Microsoft keys enrolled, Secure Boot on
	aavmfCode  = "/usr/share/AAVMF/AAVMF_CODE.fd"     // UEFI for arm64 (qemu-efi-aarch64)
	aavmfVars  = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// vm is one qemu boot of a disk (TCG, 1 GiB, 2 CPUs, no network, serial console to a file).
type vm struct {
	firmware string // "bios" (SeaBIOS, -machine pc), "uefi" (OVMF, q35), "secure" (OVMF with Secure Boot enforced: SMM, secure pflash, Microsoft keys), "secure-setup" (the same firmware with an empty key store: setup mode, keys to be enrolled)
	disk     string
	format   string // qemu's name: raw, qcow2, vmdk, vpc
	timeout  time.Duration
	// markers: stop qemu once every one has appeared on the serial console (or at the timeout)
	// and return the log; none: wait for qemu to power off, failing the test at the timeout.
	markers []string
	// bus is how the disk is attached: "" or "virtio" (virtio-blk), "nvme" (as on AWS Nitro),
	// "scsi" (virtio-scsi, as on GCE).
	bus string
	// persist writes the guest's changes to the disk (else they are discarded: snapshot=on).
	persist bool
	// arch "arm64" boots under qemu-system-aarch64 -M virt -cpu max with AAVMF (firmware "uefi");
	// "" is x86-64.
	arch string
	// vars is the UEFI variable store to use and keep (made from the firmware's template when it
	// does not exist yet): keys enrolled on one boot are there on the next. "": a fresh copy.
	vars string
}

// boot runs the vm and returns its serial log. The one qemu helper of the boot tests.
func boot(t *testing.T, m vm) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "serial.log")
	args := []string{"-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-no-reboot", "-nic", "none", "-monitor", "none"}
	qemu := ""
	switch {
	case m.arch == "arm64":
		qemu = testtool.Need(t, "qemu-system-aarch64", "qemu-system-arm")
		if m.firmware != "uefi" {
			t.Fatalf("vm: arm64 boots UEFI only, not %q", m.firmware)
		}
		args = append(args, "-machine", "virt", "-cpu", "max")
		args = append(args, pflash(t, dir, aavmfCode, aavmfVars, "qemu-efi-aarch64")...)
	case m.arch != "":
		t.Fatalf("vm: arch %q", m.arch)
	default:
		qemu = testtool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	}
	switch {
	case m.arch != "":
	case m.firmware == "bios":
		args = append(args, "-machine", "pc")
	case m.firmware == "uefi" || m.firmware == "secure" || m.firmware == "secure-setup":
		code, vars := ovmfCode, ovmfVars
		if m.firmware != "uefi" {
			code = ovmfCodeSB
			if m.firmware == "secure" {
				vars = ovmfVarsMS
			}
			args = append(args, "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
				"-global", "ICH9-LPC.disable_s3=1")
		} else {
			args = append(args, "-machine", "q35")
		}
		if m.vars != "" {
			args = append(args, pflashKept(t, code, vars, m.vars)...)
		} else {
			args = append(args, pflash(t, dir, code, vars, "ovmf")...)
		}
	default:
		t.Fatalf("vm: firmware %q", m.firmware)
	}
	drive := "format=" + m.format + ",file=" + m.disk
	if !m.persist {
		drive += ",snapshot=on"
	}
	switch m.bus {
	case "", "virtio":
		args = append(args, "-drive", "if=virtio,"+drive)
	case "nvme":
		args = append(args, "-drive", "if=none,id=d0,"+drive, "-device", "nvme,serial=imgfab0,drive=d0,bootindex=1")
	case "scsi":
		args = append(args, "-device", "virtio-scsi-pci,id=scsi0", "-drive", "if=none,id=d0,"+drive,
			"-device", "scsi-hd,drive=d0,bus=scsi0.0,bootindex=1")
	default:
		t.Fatalf("vm: bus %q", m.bus)
	}
	args = append(args, "-serial", "file:"+log)
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			serial, _ := os.ReadFile(log)
			if len(m.markers) == 0 && ctx.Err() != nil {
				t.Fatalf("qemu did not power off within %v; serial log tail:\n%s", m.timeout, tail(string(serial), 3000))
			}
			if len(m.markers) == 0 && err != nil {
				t.Fatalf("qemu: %v\n%s\nserial:\n%s", err, out.String(), tail(string(serial), 3000))
			}
			return string(serial)
		case <-tick.C:
			if len(m.markers) == 0 {
				continue
			}
			serial, _ := os.ReadFile(log)
			all := true
			for _, mk := range m.markers {
				all = all && strings.Contains(string(serial), mk)
			}
			if all || ctx.Err() != nil {
				cmd.Process.Kill()
				<-done
				return string(serial)
			}
		}
	}
}

// bootUEFI boots disk under OVMF until qemu powers off or timeout, and returns the serial log.
func bootUEFI(t *testing.T, disk, format string, timeout time.Duration) string {
	t.Helper()
	return boot(t, vm{firmware: "uefi", disk: disk, format: format, timeout: timeout})
}

// bootBIOS boots disk under SeaBIOS until qemu powers off or timeout, and returns the serial log.
func bootBIOS(t *testing.T, disk, format string, timeout time.Duration) string {
	t.Helper()
	return boot(t, vm{firmware: "bios", disk: disk, format: format, timeout: timeout})
}

// bootSecure boots a raw disk under OVMF with Secure Boot enforced until every marker has
// appeared on the serial console, qemu exits, or timeout, and returns the serial log.
func bootSecure(t *testing.T, disk string, timeout time.Duration, markers ...string) string {
	t.Helper()
	return boot(t, vm{firmware: "secure", disk: disk, format: "raw", timeout: timeout, markers: markers})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// pflash are qemu's arguments for UEFI firmware code (read-only) and a copy of its variable store
// in dir; pkg is the Debian package that has them.
func pflash(t *testing.T, dir, code, vars, pkg string) []string {
	t.Helper()
	myVars := filepath.Join(dir, "vars.fd")
	copyVars(t, code, vars, pkg, myVars)
	return pflashArgs(code, myVars)
}

// pflashKept is pflash with the variable store at path, kept across boots (a copy of the
// template vars when path does not exist yet).
func pflashKept(t *testing.T, code, vars, path string) []string {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		copyVars(t, code, vars, "ovmf", path)
	}
	return pflashArgs(code, path)
}

func copyVars(t *testing.T, code, vars, pkg, dst string) {
	t.Helper()
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s missing (apt-get install %s)", f, pkg)
		}
	}
	b, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func pflashArgs(code, vars string) []string {
	return []string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars}
}
