package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/inspect"
)

// TestInspectBootPaths builds every boot path imgfab makes (BIOS+UEFI hybrid on GPT, BIOS-only on
// MBR, a UKI as the only loader, systemd-boot with a UKI in /EFI/Linux, Debian's shim chain) and
// checks that `inspect --json` reports what `build --json` said: boot mode, table, loaders, command
// line, kernel and its version; and where GRUB's core.img is. No qemu: the boots themselves are
// proven in bios_boot_test.go, uki_boot_test.go and secureboot_test.go.
func TestInspectBootPaths(t *testing.T) {
	demoBIOS := "oci:" + fixture(t, "demo-bios/oci", "mkdemo-bios.sh") + ":demo"
	demoUKI := "oci:" + fixture(t, "demo-uki/oci", "mkdemo-uki.sh") + ":demo-uki"
	for _, c := range []struct {
		name  string
		args  []string
		modes []string
		check func(t *testing.T, rep inspect.Report, res assemble.Result)
	}{
		{"hybrid", []string{demoBIOS, "--boot", "hybrid", "--cmdline", "console=ttyS0 quote='x'"}, []string{"uefi", "bios"},
			func(t *testing.T, rep inspect.Report, res assemble.Result) {
				bios := res.Partitions[len(res.Partitions)-1]
				if b := rep.BIOS; b == nil || b.CoreIn != "bios-boot-partition" || b.CorePartition != bios.Number ||
					b.CoreLBA*512 != bios.Offset || b.CoreSectors < 2 || b.CoreSectors*512 > bios.Size {
					t.Errorf("bios = %+v, BIOS boot partition %+v", rep.BIOS, bios)
				}
				if e := rep.Boot.EFILoader; e == nil || e.Kind != "systemd-boot" || !strings.HasPrefix(e.Version, "252") {
					t.Errorf("efi loader %+v", e)
				}
				grubEntry(t, rep, "/grub/grub.cfg", "bios", res)
			}},
		{"bios-mbr", []string{demoBIOS, "--boot", "bios", "--table", "mbr", "--cmdline", "console=ttyS0"}, []string{"bios"},
			func(t *testing.T, rep inspect.Report, res assemble.Result) {
				if b := rep.BIOS; b == nil || b.CoreIn != "mbr-gap" || b.CoreLBA != 1 || b.CoreSectors < 2 {
					t.Errorf("bios = %+v", rep.BIOS)
				}
				if rep.Boot == nil || rep.Boot.Fallback || rep.Boot.EFILoader != nil {
					t.Errorf("a BIOS-only disk has no EFI loader: %+v", rep.Boot)
				}
				grubEntry(t, rep, "/grub/grub.cfg", "bios", res)
			}},
		{"uki", []string{demoUKI, "--uki", "--cmdline", "console=ttyS0 imgfab.test"}, []string{"uefi"},
			func(t *testing.T, rep inspect.Report, res assemble.Result) {
				e := rep.Boot.EFILoader
				if e == nil || e.Kind != "uki" || e.Path != res.Boot.Entry || e.UKI == nil || e.UKI.Options != res.Cmdline ||
					e.UKI.Version != res.KernelVer || e.UKI.Title != demoPretty || !e.UKI.Default {
					t.Errorf("efi loader %+v (uki %+v)", e, e.UKI)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkBootPath(t, c.args, c.modes, c.check)
		})
	}

	// systemd-boot with the UKI in /EFI/Linux (the Debian image has both systemd-boot and the stub):
	// build --json says uefi_loader "uki" (the boot path), inspect names the loader binary,
	// systemd-boot, and its default entry is the UKI.
	t.Run("systemd-boot-uki", func(t *testing.T) {
		src := "oci:" + fixture(t, "debian/oci", "mkdebian.sh") + ":debian"
		raw := filepath.Join(t.TempDir(), "d.raw")
		res := build(t, src, "--uki", "-o", raw)
		rep := inspectJSON(t, raw)
		if res.Boot.UEFILoader != "uki" || rep.UEFILoader != "systemd-boot" || rep.Loader != "systemd-boot" || rep.BootMode != "uefi" {
			t.Errorf("build boot %+v; inspect uefi_loader %q loader %q mode %q", res.Boot, rep.UEFILoader, rep.Loader, rep.BootMode)
		}
		var def *inspect.Entry
		for i, e := range rep.Boot.Entries {
			if e.Default {
				def = &rep.Boot.Entries[i]
			}
		}
		if def == nil || def.Type != "uki" || def.Linux != res.Boot.Entry || def.Options != res.Cmdline || def.Version != res.KernelVer ||
			def.Title != "Debian GNU/Linux 12 (bookworm)" {
			t.Errorf("default entry %+v; build %+v", def, res.Boot)
		}
		if rep.Cmdline != res.Cmdline || rep.KernelVersion != res.KernelVer || rep.Kernel != res.Kernel || len(rep.Warnings) > 0 {
			t.Errorf("cmdline %q version %q kernel %q warnings %q; build %q %q %q", rep.Cmdline, rep.KernelVersion, rep.Kernel, rep.Warnings,
				res.Cmdline, res.KernelVer, res.Kernel)
		}
	})

	t.Run("shim", func(t *testing.T) {
		src := "oci:" + fixture(t, "debian-sb/oci", "mkdebian-sb.sh") + ":debian-sb"
		checkBootPath(t, []string{src, "--boot-chain", "shim"}, []string{"uefi"}, func(t *testing.T, rep inspect.Report, res assemble.Result) {
			if e := rep.Boot.EFILoader; e == nil || e.Kind != "shim" || e.Version == "" {
				t.Errorf("efi loader %+v", e)
			}
			// Debian's signed GRUB has the prefix /EFI/debian (bootloader.PlanShim puts the entry there).
			grubEntry(t, rep, res.Boot.Entry, "uefi", res)
		})
	})
}

// checkBootPath builds args with --json and compares inspect --json with it.
func checkBootPath(t *testing.T, args, modes []string, check func(*testing.T, inspect.Report, assemble.Result)) {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "d.raw")
	res := build(t, append(args, "-o", raw)...)
	rep := inspectJSON(t, raw)
	if rep.BootMode != res.Boot.Mode || !slices.Equal(rep.BootModes, modes) || rep.PartitionTable != res.Boot.Table ||
		rep.UEFILoader != res.Boot.UEFILoader || rep.BIOSLoader != res.Boot.BIOSLoader || rep.Loader != res.Loader {
		t.Errorf("inspect: mode %q %q table %q uefi %q bios %q loader %q; build: %+v loader %q, want modes %q",
			rep.BootMode, rep.BootModes, rep.PartitionTable, rep.UEFILoader, rep.BIOSLoader, rep.Loader, res.Boot, res.Loader, modes)
	}
	if rep.Cmdline != res.Cmdline || rep.KernelVersion != res.KernelVer || rep.Kernel != res.Kernel || rep.Initrd != res.Initrd {
		t.Errorf("inspect: cmdline %q version %q kernel %q initrd %q; build: %q %q %q %q",
			rep.Cmdline, rep.KernelVersion, rep.Kernel, rep.Initrd, res.Cmdline, res.KernelVer, res.Kernel, res.Initrd)
	}
	if rep.Root == nil || rep.Root.By != "cmdline" || rep.Boot == nil || len(rep.Warnings) > 0 {
		t.Errorf("root %+v boot %+v warnings %q", rep.Root, rep.Boot, rep.Warnings)
	}
	if rep.Boot != nil {
		check(t, rep, res)
	}
}

// grubEntry checks the GRUB configuration at path is read by mode and boots build's command line.
func grubEntry(t *testing.T, rep inspect.Report, path, mode string, res assemble.Result) {
	t.Helper()
	for _, g := range rep.Boot.GRUB {
		if g.Path != path {
			continue
		}
		if !slices.Contains(g.UsedBy, mode) || g.Entry == nil || !g.Entry.Default || g.Entry.Options != res.Cmdline ||
			g.Entry.Version != res.KernelVer || len(g.Entry.Initrd) != 1 {
			t.Errorf("grub config %s: used by %q, entry %+v; build cmdline %q version %q", path, g.UsedBy, g.Entry, res.Cmdline, res.KernelVer)
		}
		return
	}
	t.Errorf("no grub config %s in %+v", path, rep.Boot.GRUB)
}
