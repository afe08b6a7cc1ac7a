package inspect

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/rootfs"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

// Report is what Inspect finds on a disk image. It is printed by `imgfab inspect --json`; the field
// names match those of `imgfab build --json` where they mean the same thing.
type Report struct {
	Format      string `json:"format"`       // "raw", "qcow2", "vmdk", "vhd", "vhd-dynamic"
	VirtualSize int64  `json:"virtual_size"` // guest disk size in bytes
	// PartitionTable is "gpt", "mbr" or "none".
	PartitionTable string `json:"partition_table"`
	DiskGUID       string `json:"disk_guid,omitempty"` // GPT only, upper case
	// Partitions in table order; with no table, one entry number 0 spanning the disk when it holds a
	// filesystem.
	Partitions []Partition `json:"partitions"`
	// Boot is the EFI system partition's content; nil without an ESP.
	Boot *Boot `json:"boot,omitempty"`
	// Loader names the loaders as `build --json` does: the BIOS loader and the UEFI loader joined
	// with "+" ("grub+systemd-boot", "uki", "shim", "grub"); an unrecognized EFI loader is "efi".
	// Without a BOOTX64.EFI or BIOS boot code it is "systemd-boot" when the ESP has
	// loader/loader.conf or EFI/systemd/, else "".
	Loader string `json:"loader,omitempty"`
	// BootMode is how the disk boots, in `build --json`'s words (boot.mode): "uefi", "bios", "hybrid"
	// (both), or "" (neither was found).
	BootMode string `json:"boot_mode,omitempty"`
	// BootModes lists the firmware that finds a loader: "uefi" when the ESP has EFI/BOOT/BOOTX64.EFI
	// (the removable-media path firmware boots with empty NVRAM), "bios" when sector 0 of a GPT or
	// MBR disk has boot code (bytes 0–439 not all zero); in that order.
	BootModes []string `json:"boot_modes"`
	// UEFILoader is the kind of EFI/BOOT/BOOTX64.EFI (EFILoader.Kind: "systemd-boot", "uki", "shim",
	// "grub", "unknown"); "" without one.
	UEFILoader string `json:"uefi_loader,omitempty"`
	// BIOSLoader is BIOS.Loader ("grub", "unknown"); "" without boot code.
	BIOSLoader string `json:"bios_loader,omitempty"`
	// BIOS describes sector 0's boot code; nil without any.
	BIOS *BIOSBoot `json:"bios,omitempty"`
	// Cmdline is the kernel command line of the entry the firmware's loader boots by default: the
	// UEFI loader's (systemd-boot: the default entry; a UKI: its .cmdline; shim or GRUB: the first
	// menuentry of the grub.cfg it reads), else BIOS GRUB's (the first menuentry of /grub/grub.cfg).
	Cmdline string `json:"cmdline,omitempty"`
	// Kernel and Initrd are paths in the root filesystem of the default entry's kernel (as
	// `build --json` reports them), found by the entry's version; empty when not found there.
	Kernel        string `json:"kernel,omitempty"`
	Initrd        string `json:"initrd,omitempty"`
	KernelVersion string `json:"kernel_version,omitempty"` // the default entry's version
	// Root is the root filesystem's partition.
	Root *Root `json:"root,omitempty"`
	// Verity is the root's dm-verity hash tree, when the disk has a root-*-verity partition or the
	// command line a roothash=; nil otherwise.
	Verity *Verity `json:"verity,omitempty"`
	// OS is the root filesystem's /etc/os-release (or /usr/lib/os-release).
	OS *OSRelease `json:"os,omitempty"`
	// EFIBinaries are the EFI executables on the ESP (*.efi under /EFI/) with their Authenticode
	// signatures; nil without an ESP.
	EFIBinaries []EFIBinary `json:"efi_binaries,omitempty"`
	// Architecture is the disk's, from its removable-media UEFI loader: "amd64" (BOOTX64.EFI),
	// "arm64" (BOOTAA64.EFI); "amd64" for a BIOS-only disk (BIOS boot is x86); "" when neither.
	Architecture string `json:"architecture,omitempty"`
	// Warnings are the parts that could not be read; the rest of the report stands.
	Warnings []string `json:"warnings,omitempty"`
}

// Partition is one partition table entry.
type Partition struct {
	Number   int    `json:"number"` // 1-based table slot
	Name     string `json:"name"`   // GPT partition name
	TypeGUID string `json:"type_guid"`
	// Type is a short name for TypeGUID: Discoverable Partitions names ("esp", "root-x86-64",
	// "usr-x86-64", "linux-generic", "swap", "home", "var", "xbootldr", ...), "bios-boot", or "".
	// For MBR partitions TypeGUID is the type byte ("0x83").
	Type       string      `json:"type"`
	GUID       string      `json:"guid,omitempty"` // unique partition GUID (PARTUUID), upper case
	Offset     int64       `json:"offset"`         // bytes
	Size       int64       `json:"size"`           // bytes
	Filesystem *Filesystem `json:"filesystem"`
}

// Filesystem is what the magic numbers at the start of a partition say.
type Filesystem struct {
	// Type is "ext4", "ext3", "ext2", "erofs", "vfat", "swap", "xfs", "btrfs", "squashfs",
	// "DM_verity_hash" (a dm-verity hash partition with a superblock; UUID is the superblock's, as
	// blkid names both) or "unknown".
	Type  string `json:"type"`
	UUID  string `json:"uuid,omitempty"` // as blkid prints it (vfat: the volume serial XXXX-XXXX)
	Label string `json:"label,omitempty"`
	// Size is the filesystem's size in bytes from its superblock (ext2/3/4: blocks × block size;
	// erofs: blocks × block size, as `imgfab build --json` reports rootfs.size); 0 for the others.
	Size int64 `json:"size,omitempty"`
}

// Boot describes the EFI system partition.
type Boot struct {
	ESP int `json:"esp"` // partition number
	// Fallback is true when EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI (the removable-media loader
	// path) is present.
	Fallback bool `json:"efi_fallback"`
	// FallbackPath is that loader's path ("EFI/BOOT/BOOTAA64.EFI"); EFISuffix its architecture's
	// UEFI suffix ("x64", "aa64").
	FallbackPath string `json:"efi_fallback_path,omitempty"`
	EFISuffix    string `json:"-"`
	// Default is loader.conf's "default" pattern.
	Default string `json:"default,omitempty"`
	// Entries are the Boot Loader Specification entries: type #1 in loader/entries/*.conf and type #2
	// (unified kernel images, Type "uki") in EFI/Linux/*.efi, sorted by ID.
	Entries []Entry `json:"entries"`
	// EFILoader describes EFI/BOOT/BOOTX64.EFI; nil without it.
	EFILoader *EFILoader `json:"efi_loader,omitempty"`
	// GRUB lists the GRUB configurations on the ESP: /grub/grub.cfg, /boot/grub/grub.cfg, then
	// /EFI/*/grub.cfg sorted.
	GRUB []GRUBConfig `json:"grub,omitempty"`
}

// Entry is one boot entry: a BLS type #1 entry, a unified kernel image (BLS type #2) or a GRUB
// menuentry.
type Entry struct {
	ID string `json:"id"` // file name without .conf (type #1) or .efi (type #2); a GRUB entry's config path
	// Type is "" for a BLS type #1 entry, "uki" for a unified kernel image (Title from .osrel,
	// Version from .uname, Options from .cmdline), "grub" for a GRUB menuentry.
	Type    string   `json:"type,omitempty"`
	Title   string   `json:"title,omitempty"`
	Version string   `json:"version,omitempty"`
	Linux   string   `json:"linux,omitempty"`  // path on the ESP
	Initrd  []string `json:"initrd,omitempty"` // paths on the ESP
	Options string   `json:"options,omitempty"`
	Default bool     `json:"default"` // the entry the loader boots by default
}

// Root says which partition holds the root filesystem and how that was decided.
type Root struct {
	Partition int `json:"partition"`
	// By is "cmdline" (root=PARTUUID= of the default entry), "roothash" (the partition whose GUID
	// is the first 128 bits of the command line's roothash=, as systemd finds a verity root), "type"
	// (a root-* partition type, not a -verity one) or "filesystem" (the only Linux filesystem
	// partition).
	By string `json:"by"`
}

// OSRelease holds fields of os-release(5).
type OSRelease struct {
	Name       string `json:"name,omitempty"`
	ID         string `json:"id,omitempty"`
	VersionID  string `json:"version_id,omitempty"`
	PrettyName string `json:"pretty_name,omitempty"`
}

// Options ask InspectWith for more than Inspect does.
type Options struct {
	// VerifyVerity recomputes the root's dm-verity hash tree from its data partition and compares
	// it with the hash partition and roothash= (Verity.Verify). It reads the whole root partition.
	VerifyVerity bool
	// Certs are the certificates the EFI binaries' signatures are verified against
	// (Signature.Verified); none: signatures are listed and their digests checked, not verified.
	Certs []*x509.Certificate
}

// Inspect reads img's partition table, identifies each partition's filesystem, reads the boot
// entries from the EFI system partition and os-release from the root filesystem. It reads only those
// structures and the EFI binaries (for their signatures), never the whole disk, and runs no outside
// program. An unreadable or inconsistent partition table is an error; a filesystem that cannot be
// read becomes a warning in the Report.
func Inspect(ctx context.Context, img diskfmt.Image) (Report, error) {
	return InspectWith(ctx, img, Options{})
}

// InspectWith is Inspect with options.
func InspectWith(ctx context.Context, img diskfmt.Image, opts Options) (Report, error) {
	rep := Report{Format: img.Format(), VirtualSize: img.Size(), Partitions: []Partition{}, BootModes: []string{}}
	size := img.Size()
	t, err := readTable(img, size)
	if err != nil {
		return rep, fmt.Errorf("inspect: partition table: %w", err)
	}
	rep.PartitionTable, rep.DiskGUID, rep.Partitions, rep.Warnings = t.kind, t.guid, t.parts, t.warns
	if rep.Partitions == nil {
		rep.Partitions = []Partition{}
	}
	if t.kind == "mbr" {
		// Linux names MBR partitions PARTUUID=SSSSSSSS-PP: the disk signature (u32 at byte 440 of
		// sector 0, block/partitions/msdos.c) and the partition number, in hex.
		var sig [4]byte
		if err := readAt(img, size, sig[:], 440, "MBR disk signature"); err == nil && le.Uint32(sig[:]) != 0 {
			for i := range rep.Partitions {
				rep.Partitions[i].GUID = fmt.Sprintf("%08X-%02X", le.Uint32(sig[:]), rep.Partitions[i].Number)
			}
		}
	}
	for i := range rep.Partitions {
		p := &rep.Partitions[i]
		if p.Offset < 0 || p.Size <= 0 || p.Offset > size || p.Size > size-p.Offset {
			return rep, fmt.Errorf("inspect: partition %d [%d, +%d) extends past the end of the %d-byte disk", p.Number, p.Offset, p.Size, size)
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		p.Filesystem = probe(io.NewSectionReader(img, p.Offset, p.Size), p.Size)
	}
	if t.kind == "none" {
		if fsys := probe(img, size); fsys.Type != "unknown" {
			rep.Partitions = []Partition{{Number: 0, Offset: 0, Size: size, Filesystem: fsys}}
		}
	}
	warn := func(format string, a ...any) { rep.Warnings = append(rep.Warnings, fmt.Sprintf(format, a...)) }

	// The ESP: by type, else a vfat partition holding EFI/ or loader/.
	esp := findESP(rep.Partitions)
	if esp != nil {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		boot, loader, err := readESP(io.NewSectionReader(img, esp.Offset, esp.Size), esp.Size)
		if err != nil {
			warn("EFI system partition %d: %v", esp.Number, err)
		}
		if boot != nil {
			boot.ESP = esp.Number
			rep.Boot, rep.Loader = boot, loader
		}
	}
	// Sector 0's boot code, and which loader boots which entry.
	bios, err := readBIOS(img, size, t.kind, rep.Partitions)
	if err != nil {
		warn("%v", err)
	}
	rep.BIOS = bios
	var espFAT *fatFS
	if rep.Boot != nil {
		espFAT = openESP(img, esp)
	}
	def := resolveBoot(&rep, bios, espFAT)
	if def != nil {
		rep.Cmdline, rep.KernelVersion = def.Options, def.Version
	}
	if esp != nil && rep.Boot != nil {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.EFIBinaries = efiBinaries(ctx, io.NewSectionReader(img, esp.Offset, esp.Size), esp.Size, opts.Certs, warn)
	}

	// The root filesystem, and its hash tree. Under dm-verity the data partition holds the
	// filesystem as is (the tree is in its own partition), so it is read directly.
	root := findRoot(rep.Partitions, rep.Cmdline)
	var rootPart *Partition
	if root != nil {
		rep.Root, rootPart = &Root{Partition: root.p.Number, By: root.by}, root.p
	}
	if err := inspectVerity(ctx, img, &rep, rootPart, opts.VerifyVerity, warn); err != nil {
		return rep, err
	}
	if root == nil {
		return rep, nil
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	tree, err := openRoot(img, root.p, erofsInspectBudget)
	if err != nil {
		warn("root partition %d: %v", root.p.Number, err)
		return rep, nil
	}
	osr, err := readOSRelease(tree)
	if err != nil {
		warn("root partition %d: os-release: %v", root.p.Number, err)
	} else {
		rep.OS = osr
	}
	if def != nil && def.Version != "" {
		if k, err := rootfs.FindKernel(tree); err != nil {
			warn("root partition %d: %v", root.p.Number, err)
		} else if k.Version == def.Version {
			rep.Kernel = "/" + k.Linux
			if k.Initrd != "" {
				rep.Initrd = "/" + k.Initrd
			}
		} else {
			warn("root partition %d: the newest kernel is %s, the default boot entry's version is %s", root.p.Number, k.Version, def.Version)
		}
	}
	return rep, nil
}

// openRoot opens the root filesystem on p: ext2/3/4 or EROFS (reading at most erofsBudget bytes
// through go-erofs).
func openRoot(img io.ReaderAt, p *Partition, erofsBudget int64) (fs.FS, error) {
	r := io.NewSectionReader(img, p.Offset, p.Size)
	switch fst := p.Filesystem.Type; fst {
	case "ext4", "ext3", "ext2":
		return ext4.Open(r, p.Size)
	case "erofs":
		return openEROFS(r, p.Size, erofsBudget)
	default:
		return nil, fmt.Errorf("filesystem %s cannot be read (only ext2/3/4 and erofs)", fst)
	}
}

// probe identifies a filesystem by its magic numbers.
func probe(r io.ReaderAt, size int64) *Filesystem {
	head := make([]byte, min(size, 0x10100))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return &Filesystem{Type: "unknown"}
	}
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case len(head) >= 2048 && le.Uint16(head[1024+0x38:]) == 0xEF53: // ext2/3/4 s_magic ([doc:super] 0x38)
		info, err := ext4.Probe(r, size)
		if err != nil {
			return &Filesystem{Type: "unknown"}
		}
		typ := "ext2"
		if info.Incompat&0x2C0 != 0 || info.ROCompat&0x478 != 0 { // extents, 64bit, flex_bg; huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum
			typ = "ext4"
		} else if info.Compat&0x4 != 0 { // has_journal
			typ = "ext3"
		}
		return &Filesystem{Type: typ, UUID: info.UUIDString(), Label: info.Label, Size: info.Blocks * info.BlockSize}
	case len(head) >= erofsSBOffset+4 && le.Uint32(head[erofsSBOffset:]) == erofsMagic: // EROFS (erofs_fs.h)
		s, ok := parseEROFS(head)
		if !ok {
			return &Filesystem{Type: "unknown"}
		}
		return &Filesystem{Type: "erofs", UUID: s.uuidString(), Label: s.label, Size: s.size()}
	case has(0, "verity\x00\x00"): // a dm-verity hash partition's superblock (blkid: DM_verity_hash)
		sb, _, err := parseVeritySB(head)
		if err != nil {
			return &Filesystem{Type: "DM_verity_hash"}
		}
		u := sb.uuid
		return &Filesystem{Type: "DM_verity_hash", UUID: fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])}
	case has(4096-10, "SWAPSPACE2"): // Linux swap, 4 KiB pages: uuid at 1024+12, label at 1024+28
		u := head[1036:1052]
		return &Filesystem{Type: "swap", UUID: fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
			Label: strings.TrimRight(string(bytes.TrimRight(head[1052:1068], "\x00")), " ")}
	case has(82, "FAT32   ") || has(54, "FAT16   ") || has(54, "FAT12   ") || has(54, "FAT     "):
		f, err := openFAT(r, size)
		if err != nil {
			return &Filesystem{Type: "unknown"}
		}
		return &Filesystem{Type: "vfat", UUID: fmt.Sprintf("%04X-%04X", f.serial>>16, f.serial&0xFFFF), Label: f.volumeLabel()}
	case has(0, "XFSB"):
		return &Filesystem{Type: "xfs"}
	case has(0x10040, "_BHRfS_M"):
		return &Filesystem{Type: "btrfs"}
	case has(0, "hsqs"):
		return &Filesystem{Type: "squashfs"}
	}
	return &Filesystem{Type: "unknown"}
}

func findESP(parts []Partition) *Partition {
	for i := range parts {
		if parts[i].Type == "esp" && parts[i].Filesystem.Type == "vfat" {
			return &parts[i]
		}
	}
	return nil
}

type rootPick struct {
	p  *Partition
	by string
}

func findRoot(parts []Partition, cmdline string) *rootPick {
	for _, arg := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(arg, "root=PARTUUID="); ok {
			for i := range parts {
				if strings.EqualFold(parts[i].GUID, v) {
					return &rootPick{&parts[i], "cmdline"}
				}
			}
		}
	}
	// systemd-veritysetup-generator and gpt-auto: the data partition's GUID is the first 128
	// bits of roothash=.
	if h, _ := verityRootHash(cmdline); len(h) >= 32 {
		g := guidOfBytes(h[:16])
		for i := range parts {
			if strings.EqualFold(parts[i].GUID, g) {
				return &rootPick{&parts[i], "roothash"}
			}
		}
	}
	for i := range parts {
		if t := parts[i].Type; strings.HasPrefix(t, "root-") && !strings.Contains(t, "-verity") {
			return &rootPick{&parts[i], "type"}
		}
	}
	var linux []int
	for i := range parts {
		switch parts[i].Filesystem.Type {
		case "ext4", "ext3", "ext2", "erofs", "xfs", "btrfs":
			linux = append(linux, i)
		}
	}
	if len(linux) == 1 {
		return &rootPick{&parts[linux[0]], "filesystem"}
	}
	return nil
}

// readESP reads loader.conf, the BLS entries and checks for the fallback loader.
func readESP(r io.ReaderAt, size int64) (*Boot, string, error) {
	f, err := openFAT(r, size)
	if err != nil {
		return nil, "", err
	}
	boot := &Boot{Entries: []Entry{}}
	var errs []error
	for _, a := range []string{"x64", "aa64"} {
		p := "EFI/BOOT/BOOT" + strings.ToUpper(a) + ".EFI"
		if e, err := f.lookup(p); err == nil && !e.dir {
			boot.Fallback, boot.FallbackPath, boot.EFISuffix = true, p, a
			break
		}
	}
	loader := ""
	if _, err := f.lookup("EFI/systemd"); err == nil {
		loader = "systemd-boot"
	}
	if conf, err := f.readFile("loader/loader.conf"); err == nil {
		loader = "systemd-boot"
		for _, kv := range confLines(conf) {
			if kv[0] == "default" {
				boot.Default = kv[1]
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if loader == "" && boot.Fallback {
		loader = "efi"
	}
	if err := readBootFiles(f, boot); err != nil {
		errs = append(errs, err)
	}
	if d, err := f.lookup("loader/entries"); err == nil && d.dir {
		es, err := f.list(d.clus)
		if err != nil {
			errs = append(errs, fmt.Errorf("loader/entries: %w", err))
		}
		for _, fe := range es {
			if fe.dir || fe.label || !strings.HasSuffix(strings.ToLower(fe.name), ".conf") {
				continue
			}
			b, err := f.readFile("loader/entries/" + fe.name)
			if err != nil {
				errs = append(errs, err)
				if errors.Is(err, errFATBudget) {
					break
				}
				continue
			}
			boot.Entries = append(boot.Entries, parseEntry(fe.name, b))
		}
	}
	slices.SortFunc(boot.Entries, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	markDefault(boot)
	return boot, loader, errors.Join(errs...)
}

// confLines splits loader.conf / BLS entry text into key and value (the rest of the line, trimmed);
// '#' starts a comment line.
func confLines(b []byte) [][2]string {
	var out [][2]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxFATFile)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, _ := strings.Cut(l, " ")
		if i := strings.IndexByte(k, '\t'); i >= 0 {
			k, v = k[:i], k[i+1:]+" "+v
		}
		out = append(out, [2]string{k, strings.TrimSpace(v)})
	}
	return out
}

// parseEntry reads a Boot Loader Specification type #1 entry: title, version, linux, initrd (may
// repeat), options (may repeat, joined with spaces).
func parseEntry(file string, b []byte) Entry {
	e := Entry{ID: strings.TrimSuffix(file, path.Ext(file))}
	var opts []string
	for _, kv := range confLines(b) {
		switch kv[0] {
		case "title":
			e.Title = kv[1]
		case "version":
			e.Version = kv[1]
		case "linux":
			e.Linux = kv[1]
		case "initrd":
			e.Initrd = append(e.Initrd, kv[1])
		case "options":
			opts = append(opts, kv[1])
		}
	}
	e.Options = strings.Join(opts, " ")
	return e
}

// markDefault marks the entry systemd-boot would boot: the last one (in its order, here by file name)
// matching loader.conf's default glob, else the first entry.
func markDefault(b *Boot) {
	if len(b.Entries) == 0 {
		return
	}
	pick := -1
	if b.Default != "" && !strings.HasPrefix(b.Default, "@") {
		for i, e := range b.Entries {
			ext := ".conf"
			if e.Type == "uki" {
				ext = ".efi"
			}
			if ok, _ := path.Match(b.Default, e.ID+ext); ok || b.Default == e.ID {
				pick = i
			}
		}
	}
	if pick < 0 {
		pick = 0
	}
	b.Entries[pick].Default = true
}

// readOSRelease reads /etc/os-release, else /usr/lib/os-release (os-release(5)).
func readOSRelease(tree fs.FS) (*OSRelease, error) {
	var b []byte
	var err error
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		var f fs.File
		if f, err = tree.Open(p); err != nil {
			continue
		}
		b, err = io.ReadAll(io.LimitReader(f, 64<<10))
		f.Close()
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return parseOSRelease(b), nil
}

// parseOSRelease reads the fields of os-release(5) text.
func parseOSRelease(b []byte) *OSRelease {
	o := &OSRelease{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = unquote(v)
		switch k {
		case "NAME":
			o.Name = v
		case "ID":
			o.ID = v
		case "VERSION_ID":
			o.VersionID = v
		case "PRETTY_NAME":
			o.PrettyName = v
		}
	}
	return o
}

// unquote removes shell-style quotes and backslash escapes from an os-release value.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		q := v[0]
		v = v[1 : len(v)-1]
		if q == '"' {
			var sb strings.Builder
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				sb.WriteByte(v[i])
			}
			v = sb.String()
		}
	}
	return v
}
