package bootloader

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/imgfab/imgfab/rootfs"
)

// GRUBBIOSModules are embedded in core.img (with their moddep.lst closure): enough to find the FAT
// partition by label on a GPT or MBR disk and boot Linux from grub.cfg with no module on disk.
var GRUBBIOSModules = []string{
	"biosdisk", "part_gpt", "part_msdos", "fat", "search", "normal", "configfile",
	"linux", "boot", "echo", "test", "serial", "terminal",
}

// GRUBConfigPath is where grub.cfg goes on the FAT partition ($prefix/grub.cfg).
const GRUBConfigPath = "/grub/grub.cfg"

// Sector-0 fields of boot.img (grub-core/boot/i386/pc/boot.S), offsets from include/grub/i386/pc/boot.h,
// as util/setup.c (grub_util_bios_setup) fills them.
const (
	bootBPBStart    = 0x03  // GRUB_BOOT_MACHINE_BPB_START: the BPB area, kept from the disk
	bootBPBEnd      = 0x5a  // GRUB_BOOT_MACHINE_BPB_END
	bootKernelSec   = 0x5c  // GRUB_BOOT_MACHINE_KERNEL_SECTOR: u64 LE, LBA of core.img's first sector
	bootDrive       = 0x64  // GRUB_BOOT_MACHINE_BOOT_DRIVE: 0xFF = use the drive the BIOS passed in DL
	bootDriveCheck  = 0x66  // GRUB_BOOT_MACHINE_DRIVE_CHECK: a 2-byte jmp, replaced by nop nop for hard disks
	bootTableStart  = 0x1b8 // GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC: disk signature, partition table, 0x55AA follow
	bootImgSize     = 512
	nopInstruction  = 0x90
	bootDriveFromDL = 0xff
)

// GRUBBIOS is a planned BIOS GRUB installation.
type GRUBBIOS struct {
	Boot    []byte   // boot.img as shipped (512 bytes); InstallGRUBBIOS patches a copy
	Core    []byte   // core.img (BuildCore)
	Config  FileSpec // grub.cfg for the FAT partition, at GRUBConfigPath
	Modules []string // embedded modules, dependencies first
}

// Sectors is the number of 512-byte sectors core.img takes.
func (g GRUBBIOS) Sectors() int64 { return int64(len(g.Core)+grubSector-1) / grubSector }

// HasGRUBBIOS reports whether tree carries GRUB's BIOS files (for --boot auto: hybrid when it does).
func HasGRUBBIOS(tree fs.FS) bool {
	for _, f := range []string{"kernel.img", "boot.img", "diskboot.img", "lzma_decompress.img", "moddep.lst"} {
		if st, err := fs.Stat(tree, GRUBBIOSDir+"/"+f); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// PlanGRUBBIOS makes core.img, boot.img and grub.cfg for the entry e (the kernel and initrd paths on
// the FAT partition and the command line, as PlanSystemdBoot or PlanKernelFiles return them). The
// core.img's embedded config finds the FAT partition by its label espLabel and sets $root and
// $prefix to it; GRUB's normal mode then reads $prefix/grub.cfg (GRUBConfigPath), which boots the
// entry with timeout 0 and its menu on both the serial port and the screen.
func PlanGRUBBIOS(tree fs.FS, e Entry, espLabel string) (GRUBBIOS, error) {
	if e.Linux == "" {
		return GRUBBIOS{}, fmt.Errorf("grub: no kernel in the entry")
	}
	if espLabel == "" || strings.ContainsAny(espLabel, "\n") {
		return GRUBBIOS{}, fmt.Errorf("grub: bad partition label %q", espLabel)
	}
	dir, err := fs.Sub(tree, GRUBBIOSDir)
	if err != nil {
		return GRUBBIOS{}, err
	}
	boot, err := readGRUBFile(dir, "boot.img")
	if err != nil {
		return GRUBBIOS{}, err
	}
	if len(boot) != bootImgSize {
		return GRUBBIOS{}, fmt.Errorf("grub: boot.img is %d bytes, must be %d", len(boot), bootImgSize)
	}
	early := "search --no-floppy --label --set=root " + grubQuote(espLabel) + "\n" +
		"set prefix=($root)/grub\n"
	opt := CoreOptions{Modules: GRUBBIOSModules, Config: early, Prefix: "/grub"}
	core, err := BuildCore(dir, opt)
	if err != nil {
		return GRUBBIOS{}, err
	}
	moddep, err := readGRUBFile(dir, "moddep.lst")
	if err != nil {
		return GRUBBIOS{}, err
	}
	mods, err := ResolveModules(strings.NewReader(string(moddep)), GRUBBIOSModules)
	if err != nil {
		return GRUBBIOS{}, err
	}
	title := "Linux"
	if osr, err := rootfs.OSRelease(tree); err == nil && osr["PRETTY_NAME"] != "" {
		title = osr["PRETTY_NAME"]
	}
	return GRUBBIOS{Boot: boot, Core: core, Modules: mods,
		Config: bytesFile(GRUBConfigPath, []byte(GRUBConfig(title, e)))}, nil
}

// GRUBConfig is the grub.cfg that boots e at once: serial (ttyS0, 115200) and screen as terminals,
// timeout 0, one menu entry with the same kernel, initrd and command line as the systemd-boot entry.
func GRUBConfig(title string, e Entry) string {
	var b strings.Builder
	b.WriteString("# made by imgfab\n")
	b.WriteString("serial --unit=0 --speed=115200\n")
	b.WriteString("terminal_input serial console\n")
	b.WriteString("terminal_output serial console\n")
	b.WriteString("set default=0\nset timeout=0\n")
	fmt.Fprintf(&b, "menuentry %s {\n", grubQuote(oneLine(title)))
	b.WriteString("\tlinux " + grubQuote(e.Linux))
	for _, o := range strings.Fields(e.Options) {
		b.WriteString(" " + grubQuote(o))
	}
	b.WriteString("\n")
	if e.Initrd != "" {
		b.WriteString("\tinitrd " + grubQuote(e.Initrd) + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// grubQuote quotes s for GRUB's script parser: single quotes keep everything literal; a single
// quote is written as '\” (grub-core/script/yylex.l).
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// PlanKernelFiles returns the FAT-partition files for the kernel and initrd of cfg (at
// /imgfab/VERSION/linux and /imgfab/VERSION/initrd, where PlanSystemdBoot puts them) and their
// Entry, for a BIOS-only disk without systemd-boot. Entry.Loader and Entry.Conf stay empty.
func PlanKernelFiles(cfg Config) ([]FileSpec, Entry, error) {
	if cfg.Kernel.Linux == "" {
		return nil, Entry{}, fmt.Errorf("grub: no kernel")
	}
	dir := "/imgfab/" + cfg.Kernel.Version
	e := Entry{Linux: dir + "/linux", Options: cfg.Options}
	k, err := treeFile(cfg.Tree, cfg.Kernel.Linux, e.Linux)
	if err != nil {
		return nil, Entry{}, fmt.Errorf("grub: kernel: %w", err)
	}
	files := []FileSpec{k}
	if cfg.Kernel.Initrd != "" {
		e.Initrd = dir + "/initrd"
		i, err := treeFile(cfg.Tree, cfg.Kernel.Initrd, e.Initrd)
		if err != nil {
			return nil, Entry{}, fmt.Errorf("grub: initrd: %w", err)
		}
		files = append(files, i)
	}
	for _, f := range files {
		e.Files = append(e.Files, f.Path)
	}
	return files, e, nil
}

// InstallGRUBBIOS writes g.Core at sector coreLBA of w, with the block list in its first sector
// pointing at the sectors after it, and boot.img into sector 0 pointing at coreLBA. Sector 0 bytes
// 0x03–0x59 (BPB area) and 0x1B8–0x1FF (disk signature, partition table, 0x55AA) are not written, so
// the partition table may be written before or after. maxSectors is the room at coreLBA: the BIOS
// boot partition's size, or the gap before the first partition on an MBR disk (sectors 1 to 2047).
func InstallGRUBBIOS(w io.WriterAt, g GRUBBIOS, coreLBA, maxSectors int64) error {
	if len(g.Boot) != bootImgSize || len(g.Core) < grubSector {
		return fmt.Errorf("grub: install: boot.img is %d bytes, core.img %d: not planned", len(g.Boot), len(g.Core))
	}
	n := g.Sectors()
	if coreLBA < 1 {
		return fmt.Errorf("grub: install: core.img cannot go at sector %d", coreLBA)
	}
	if n > maxSectors {
		return fmt.Errorf("grub: install: core.img needs %d sectors, the space at sector %d has %d", n, coreLBA, maxSectors)
	}
	if n-1 > 0xffff {
		return fmt.Errorf("grub: install: core.img has %d sectors, a block list entry holds at most 65535", n)
	}
	core := make([]byte, n*grubSector)
	copy(core, g.Core)
	// util/setup.c (save_blocklist): one entry covering the sectors after the first, loaded at
	// segment 0x820, at offset 0x1F4 of the first sector; the next entry down (0x1E8) is the zero
	// terminator. include/grub/i386/pc/boot.h: struct grub_pc_bios_boot_blocklist.
	bl := core[grubBlocklistOff:grubSector]
	binary.LittleEndian.PutUint64(bl[0:], uint64(coreLBA+1))
	binary.LittleEndian.PutUint16(bl[8:], uint16(n-1))
	binary.LittleEndian.PutUint16(bl[10:], grubBlocklistSegment)
	clear(core[grubBlocklistOff-grubBlocklistSize : grubBlocklistOff])
	if _, err := w.WriteAt(core, coreLBA*grubSector); err != nil {
		return fmt.Errorf("grub: writing core.img (%d sectors at sector %d): %w", n, coreLBA, err)
	}

	boot := append([]byte(nil), g.Boot...)
	binary.LittleEndian.PutUint64(boot[bootKernelSec:], uint64(coreLBA)) // util/setup.c: *kernel_sector
	boot[bootDrive] = bootDriveFromDL                                    // util/setup.c: *boot_drive = 0xFF
	boot[bootDriveCheck] = nopInstruction                                // util/setup.c: boot_drive_check[0..1] = 0x90
	boot[bootDriveCheck+1] = nopInstruction
	// util/setup.c keeps the disk's BPB (0x03–0x59) and everything from 0x1B8; write around them.
	if _, err := w.WriteAt(boot[:bootBPBStart], 0); err != nil {
		return fmt.Errorf("grub: writing boot.img: %w", err)
	}
	if _, err := w.WriteAt(boot[bootBPBEnd:bootTableStart], bootBPBEnd); err != nil {
		return fmt.Errorf("grub: writing boot.img: %w", err)
	}
	return nil
}
