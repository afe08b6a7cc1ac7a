package bootloader

import (
	"fmt"
	"io/fs"
	"strings"
)

// Options choose how a disk boots: the --boot, --table, --uki and --boot-chain flags.
type Options struct {
	Mode  string // "auto" (default): hybrid when the image has GRUB's i386-pc files, else uefi; "uefi", "bios", "hybrid"
	Table string // "gpt" (default) or "mbr"
	UKI   bool   // UEFI through a Unified Kernel Image built from the image's systemd stub
	Chain string // "" (systemd-boot or UKI) or "shim": the distribution's signed shim + GRUB (Secure Boot)
}

// Validate checks the options before any work is done.
func (o Options) Validate() error {
	switch o.Mode {
	case "", "auto", "uefi", "bios", "hybrid":
	default:
		return fmt.Errorf("--boot %q: want auto, uefi, bios or hybrid", o.Mode)
	}
	switch o.Table {
	case "", "gpt", "mbr":
	default:
		return fmt.Errorf("--table %q: want gpt or mbr", o.Table)
	}
	switch o.Chain {
	case "", "shim":
	default:
		return fmt.Errorf("--boot-chain %q: want shim", o.Chain)
	}
	if o.Mode == "bios" && (o.UKI || o.Chain != "") {
		return fmt.Errorf("--boot bios boots through GRUB: --uki and --boot-chain need UEFI")
	}
	if o.UKI && o.Chain != "" {
		return fmt.Errorf("--uki and --boot-chain shim exclude each other (the signed GRUB boots a signed kernel)")
	}
	return nil
}

// ValidateFor checks the options against the architecture too: BIOS boot is x86 only.
func (o Options) ValidateFor(a Arch) error {
	if err := o.Validate(); err != nil {
		return err
	}
	a = a.orDefault()
	if !a.BIOS && (o.Mode == "bios" || o.Mode == "hybrid") {
		return fmt.Errorf("--boot %s: %s has no BIOS boot (UEFI only): use --boot uefi or auto", o.Mode, a.Name)
	}
	return nil
}

// Resolve settles "auto" and the defaults for the tree: the boot mode ("uefi", "bios" or
// "hybrid": hybrid when the tree has GRUB's BIOS modules and no UKI or shim chain is asked for)
// and the partition table ("gpt" or "mbr").
func (o Options) Resolve(tree fs.FS) (mode, table string) { return o.ResolveFor(tree, AMD64) }

// ResolveFor is Resolve for an architecture: auto is uefi where it has no BIOS boot.
func (o Options) ResolveFor(tree fs.FS, a Arch) (mode, table string) {
	mode = o.Mode
	if mode == "" || mode == "auto" {
		mode = "uefi"
		if a.orDefault().BIOS && HasGRUBBIOS(tree) && !o.UKI && o.Chain == "" {
			mode = "hybrid"
		}
	}
	table = o.Table
	if table == "" {
		table = "gpt"
	}
	return mode, table
}

// Setup is what a disk needs to boot in a mode: the files for the ESP, the loaders, the boot
// entry, and GRUB's BIOS boot code when the mode has BIOS.
type Setup struct {
	UEFILoader string // "systemd-boot", "uki", "shim"; "" without UEFI
	BIOSLoader string // "grub"; "" without BIOS
	Loader     string // the loaders joined by "+", BIOS first ("grub+systemd-boot")
	Entry      string // the boot entry on the ESP (BLS file, UKI or grub.cfg)
	Files      []FileSpec
	GRUB       GRUBBIOS // when BIOSLoader is "grub": the core image and boot sector to install
}

// Plan chooses the loaders for mode (from Resolve) and plans their files; espLabel is the ESP's
// FAT label, by which GRUB's core image finds it.
func (o Options) Plan(mode string, cfg Config, espLabel string) (Setup, error) {
	uefi, bios := mode != "bios", mode != "uefi"
	var s Setup
	var entry Entry
	var err error
	var loaders []string
	if uefi {
		switch {
		case o.Chain == "shim":
			s.Files, entry, err = PlanShim(cfg)
			s.UEFILoader = "shim"
		case o.UKI:
			s.Files, entry, err = PlanUKI(cfg)
			s.UEFILoader = "uki"
		default:
			s.Files, entry, err = PlanSystemdBoot(cfg)
			s.UEFILoader = "systemd-boot"
		}
		if err != nil {
			return s, err
		}
		loaders = append(loaders, s.UEFILoader)
		s.Entry = entry.Conf
		if s.Entry == "" {
			s.Entry = entry.Linux
		}
	}
	if bios {
		// GRUB boots the kernel and initrd from the FAT partition; a UKI holds them inside itself,
		// so then they are copied out too.
		gEntry := entry
		if !uefi || o.UKI {
			kfiles, ke, err := PlanKernelFiles(cfg)
			if err != nil {
				return s, err
			}
			s.Files = append(s.Files, kfiles...)
			gEntry = ke
		}
		s.GRUB, err = PlanGRUBBIOS(cfg.Tree, gEntry, espLabel)
		if err != nil {
			return s, err
		}
		s.Files = append(s.Files, s.GRUB.Config)
		s.BIOSLoader = "grub"
		loaders = append([]string{"grub"}, loaders...)
		if s.Entry == "" {
			s.Entry = s.GRUB.Config.Path
		}
	}
	s.Loader = strings.Join(loaders, "+")
	return s, nil
}
