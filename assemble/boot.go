package assemble

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs"
)

// BootOptions choose how the disk boots.
type BootOptions struct {
	Mode  string // "auto" (default): hybrid when the image has GRUB's i386-pc files, else uefi; "uefi", "bios", "hybrid"
	Table string // "gpt" (default) or "mbr"
	UKI   bool   // UEFI through a Unified Kernel Image built from the image's systemd stub
	Chain string // "" (systemd-boot or UKI) or "shim": the distribution's signed shim + GRUB (Secure Boot)
}

// BootResult says how the disk boots, for --json.
type BootResult struct {
	Mode       string `json:"mode"`                  // "uefi", "bios", "hybrid"
	Table      string `json:"table"`                 // "gpt", "mbr"
	UEFILoader string `json:"uefi_loader,omitempty"` // "systemd-boot", "uki", "shim"
	BIOSLoader string `json:"bios_loader,omitempty"` // "grub"
	Entry      string `json:"entry,omitempty"`       // the boot entry on the ESP (BLS file, UKI or grub.cfg)
}

// espLabel is the FAT label of the ESP; GRUB's core.img finds its partition by it.
const espLabel = "ESP"

// biosBootStart and biosBootEnd bound the GPT BIOS boot partition: the sectors between the
// primary GPT's entry array (LBA 2–33) and the first MiB, so adding it never moves the other
// partitions and `--boot auto` can decide after the tree is written.
const (
	biosBootStart = 34
	biosBootEnd   = 2048 // exclusive
)

// ValidateBoot checks the options before any work is done.
func (o BootOptions) validate() error {
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

type bootInput struct {
	opts     BootOptions
	tree     fs.FS
	kernel   rootfs.Kernel
	cmdline  string // the user's part
	seed     []byte
	rootGUID string
	epoch    time.Time
}

type bootOutput struct {
	BootResult
	cmdline string
	loader  string
}

// installBoot fills the ESP, writes the partition table (adding the BIOS boot partition to layout
// when BIOS boot is on a GPT disk) and installs GRUB's boot code for BIOS.
func installBoot(ctx context.Context, f *os.File, layout *partition.Layout, in bootInput) (bootOutput, error) {
	o := in.opts
	if err := o.validate(); err != nil {
		return bootOutput{}, err
	}
	mode := o.Mode
	if mode == "" || mode == "auto" {
		mode = "uefi"
		if bootloader.HasGRUBBIOS(in.tree) && !o.UKI && o.Chain == "" {
			mode = "hybrid"
		}
	}
	table := o.Table
	if table == "" {
		table = "gpt"
	}
	uefi, bios := mode != "bios", mode != "uefi"
	out := bootOutput{BootResult: BootResult{Mode: mode, Table: table}}

	// The root partition as the kernel names it.
	var sig uint32
	rootRef := strings.ToLower(in.rootGUID)
	if table == "mbr" {
		sig = partition.DiskSignature(in.seed)
		rootRef = partition.MBRPartUUID(sig, 2)
	}
	out.cmdline = "root=PARTUUID=" + rootRef + " rw"
	if c := strings.TrimSpace(in.cmdline); c != "" {
		out.cmdline += " " + c
	}
	cfg := bootloader.Config{Tree: in.tree, Kernel: in.kernel, Options: out.cmdline, Epoch: in.epoch}

	var files []bootloader.FileSpec
	var entry bootloader.Entry
	var err error
	var loaders []string
	if uefi {
		switch {
		case o.Chain == "shim":
			files, entry, err = bootloader.PlanShim(cfg)
			out.UEFILoader = "shim"
		case o.UKI:
			files, entry, err = bootloader.PlanUKI(cfg)
			out.UEFILoader = "uki"
		default:
			files, entry, err = bootloader.PlanSystemdBoot(cfg)
			out.UEFILoader = "systemd-boot"
		}
		if err != nil {
			return out, err
		}
		loaders = append(loaders, out.UEFILoader)
		out.Entry = entry.Conf
		if out.Entry == "" {
			out.Entry = entry.Linux
		}
	}
	var grub bootloader.GRUBBIOS
	if bios {
		// GRUB boots the kernel and initrd from the FAT partition; a UKI holds them inside itself,
		// so then they are copied out too.
		gEntry := entry
		if !uefi || o.UKI {
			kfiles, ke, err := bootloader.PlanKernelFiles(cfg)
			if err != nil {
				return out, err
			}
			files = append(files, kfiles...)
			gEntry = ke
		}
		grub, err = bootloader.PlanGRUBBIOS(in.tree, gEntry, espLabel)
		if err != nil {
			return out, err
		}
		files = append(files, grub.Config)
		out.BIOSLoader = "grub"
		loaders = append([]string{"grub"}, loaders...)
		if out.Entry == "" {
			out.Entry = grub.Config.Path
		}
	}
	out.loader = strings.Join(loaders, "+")

	esp := layout.Partitions[0]
	if err := bootloader.WriteESP(ctx, f, esp.Offset, esp.Size, espLabel, partition.FATSerial(in.seed), in.epoch, files); err != nil {
		return out, err
	}

	switch table {
	case "gpt":
		if bios {
			layout.Partitions = append(layout.Partitions, partition.Partition{
				Name: "bios", Type: partition.TypeBIOSBoot, GUID: partition.DeriveGUID(in.seed, "bios"),
				Offset: biosBootStart * partition.SectorSize, Size: (biosBootEnd - biosBootStart) * partition.SectorSize,
			})
			if err := bootloader.InstallGRUBBIOS(f, grub, biosBootStart, biosBootEnd-biosBootStart); err != nil {
				return out, err
			}
		}
		if err := partition.WriteGPT(f, *layout); err != nil {
			return out, err
		}
	case "mbr":
		if err := partition.WriteMBR(f, *layout, sig, 0); err != nil {
			return out, err
		}
		if bios {
			if err := bootloader.InstallGRUBBIOS(f, grub, 1, partition.Head/partition.SectorSize-1); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}
