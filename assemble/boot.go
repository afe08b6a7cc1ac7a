package assemble

import (
	"context"
	"io/fs"
	"strings"
	"time"

	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/internal/iox"
	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs"
)

// BootOptions choose how the disk boots (bootloader's policy: modes, tables, loaders).
type BootOptions = bootloader.Options

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

type bootInput struct {
	opts     BootOptions
	tree     fs.FS
	kernel   rootfs.Kernel
	cmdline  string // the user's part
	seed     []byte
	rootGUID string
	epoch    time.Time
	// mbrSeed derives an MBR disk's signature (the seed but for a class's extra partitions, whose
	// fstab lines name it); rootNum is the root's partition number.
	mbrSeed []byte
	rootNum int
	arch    bootloader.Arch
	// rootRef is the command line's root= and its options, given the root's PARTUUID.
	rootRef func(partuuid string) string
	signer  *signer // nil: nothing signed
}

type bootOutput struct {
	BootResult
	cmdline string
	loader  string
	signed  []SignedResult
}

// installBoot fills the ESP, writes the partition table (adding the BIOS boot partition to layout
// when BIOS boot is on a GPT disk) and installs GRUB's boot code for BIOS.
func installBoot(ctx context.Context, f iox.DiskFile, layout *partition.Layout, in bootInput) (bootOutput, error) {
	o := in.opts
	if err := o.Validate(); err != nil {
		return bootOutput{}, err
	}
	mode, table := o.ResolveFor(in.tree, in.arch)
	bios := mode != "uefi"
	out := bootOutput{BootResult: BootResult{Mode: mode, Table: table}}

	// The root partition as the kernel names it.
	var sig uint32
	rootRef := strings.ToLower(in.rootGUID)
	if table == "mbr" {
		sig = partition.DiskSignature(in.mbrSeed)
		rootRef = partition.MBRPartUUID(sig, in.rootNum)
	}
	if in.rootRef != nil {
		out.cmdline = in.rootRef(rootRef)
	} else {
		out.cmdline = "root=PARTUUID=" + rootRef + " rw"
	}
	if c := strings.TrimSpace(in.cmdline); c != "" {
		out.cmdline += " " + c
	}
	cfg := bootloader.Config{Tree: in.tree, Kernel: in.kernel, Options: out.cmdline, Epoch: in.epoch, Arch: in.arch}
	setup, err := o.Plan(mode, cfg, espLabel)
	if err != nil {
		return out, err
	}
	out.UEFILoader, out.BIOSLoader, out.Entry, out.loader = setup.UEFILoader, setup.BIOSLoader, setup.Entry, setup.Loader
	files, grub := setup.Files, setup.GRUB
	if in.signer != nil {
		if files, out.signed, err = in.signer.sign(setup, files); err != nil {
			return out, err
		}
	}

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
