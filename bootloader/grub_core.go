package bootloader

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/ulikunitz/xz/lzma"
)

// GRUBBIOSDir is where an image carries GRUB's BIOS platform files (Debian: grub-pc-bin).
const GRUBBIOSDir = "usr/lib/grub/i386-pc"

// Layout facts of GRUB 2.06 for i386-pc, each from the source it is defined in.
const (
	grubSector = 512 // GRUB_DISK_SECTOR_SIZE, include/grub/disk.h

	// GRUB_KERNEL_I386_PC_LINK_ADDR, include/grub/offsets.h: where kernel.img runs.
	grubKernelLinkAddr = 0x9000
	// util/mkimage.c (grub_install_generate_image): the decompressor sits at 0x8200 and must end
	// below the kernel's link address.
	grubDecompressorMax = grubKernelLinkAddr - 0x8200
	// util/mkimage.c: "core image is too big" when link address + core size > 0x78000, "kernel
	// image is too big" when link address + kernel + bss > 0x68000.
	grubCoreLimit   = 0x78000
	grubKernelLimit = 0x68000

	// GRUB_DECOMPRESSOR_I386_PC_COMPRESSED_SIZE / _UNCOMPRESSED_SIZE, include/grub/offsets.h:
	// u32 fields of lzma_decompress.img (read by grub-core/boot/i386/pc/startup_raw.S).
	grubDecompCompressedSize   = 0x08
	grubDecompUncompressedSize = 0x0c

	// struct grub_pc_bios_boot_blocklist {u64 start; u16 len; u16 segment}, include/grub/i386/pc/boot.h:
	// the first (highest) entry of diskboot.img's block list fills its last 12 bytes.
	grubBlocklistSize = 12
	grubBlocklistOff  = grubSector - grubBlocklistSize // 0x1F4
	// GRUB_BOOT_I386_PC_KERNEL_SEG + (GRUB_DISK_SECTOR_SIZE >> 4), include/grub/offsets.h: 0x800 + 0x20.
	grubBlocklistSegment = 0x0820

	// include/grub/kernel.h: GRUB_MODULE_MAGIC ("mimg"), struct grub_module_info32 {magic, offset,
	// size} and struct grub_module_header {u32 type; u32 size}, enum obj_type.
	grubModuleMagic   = 0x676d696d
	grubModInfoSize   = 12
	grubModHeaderSize = 8
	grubObjELF        = 0 // OBJ_TYPE_ELF
	grubObjConfig     = 2 // OBJ_TYPE_CONFIG
	grubObjPrefix     = 3 // OBJ_TYPE_PREFIX
)

// CoreOptions says what goes into core.img besides kernel.img.
type CoreOptions struct {
	Modules []string // module names as grub-mkimage takes them; their moddep.lst closure is added
	Config  string   // the embedded early config (OBJ_TYPE_CONFIG); "" for none
	Prefix  string   // $prefix before the config runs (OBJ_TYPE_PREFIX), as grub-mkimage -p
}

// MissingGRUBFileError names a file of GRUBBIOSDir the image lacks.
type MissingGRUBFileError struct{ Path string }

func (e *MissingGRUBFileError) Error() string {
	return "grub: the image has no /" + e.Path + " (install grub-pc-bin in the image)"
}

// BuildCore makes core.img as `grub-mkimage -O i386-pc -p PREFIX -c CONFIG MODULES...` does, from the
// files of dir (the image's GRUBBIOSDir, e.g. fs.Sub(tree, GRUBBIOSDir)): diskboot.img, then
// lzma_decompress.img with its size fields set, then the LZMA stream of kernel.img's loaded image
// followed by the module section. The LZMA bytes differ from grub-mkimage's (another encoder); what
// they decode to is the same. No Reed-Solomon redundancy is added (grub-setup's optional extra; its
// field stays 0 so the decompressor skips the repair).
func BuildCore(dir fs.FS, opt CoreOptions) ([]byte, error) {
	payload, err := corePayload(dir, opt)
	if err != nil {
		return nil, err
	}
	diskboot, err := readGRUBFile(dir, "diskboot.img")
	if err != nil {
		return nil, err
	}
	if len(diskboot) != grubSector {
		return nil, fmt.Errorf("grub: diskboot.img is %d bytes, must be %d", len(diskboot), grubSector)
	}
	if seg := binary.LittleEndian.Uint16(diskboot[grubBlocklistOff+10:]); seg != grubBlocklistSegment {
		return nil, fmt.Errorf("grub: diskboot.img block list segment is %#x, want %#x (unknown GRUB version)", seg, grubBlocklistSegment)
	}
	decomp, err := readGRUBFile(dir, "lzma_decompress.img")
	if err != nil {
		return nil, err
	}
	if len(decomp) > grubDecompressorMax || len(decomp) < grubDecompUncompressedSize+4 {
		return nil, fmt.Errorf("grub: lzma_decompress.img is %d bytes, must be at most %d", len(decomp), grubDecompressorMax)
	}
	comp, err := grubLZMA(payload)
	if err != nil {
		return nil, err
	}
	// util/mkimage.c (grub_install_generate_image): compressed and uncompressed sizes into the
	// decompressor, u32 LE at GRUB_DECOMPRESSOR_I386_PC_COMPRESSED_SIZE / _UNCOMPRESSED_SIZE.
	binary.LittleEndian.PutUint32(decomp[grubDecompCompressedSize:], uint32(len(comp)))
	binary.LittleEndian.PutUint32(decomp[grubDecompUncompressedSize:], uint32(len(payload)))
	rest := len(decomp) + len(comp)
	if grubKernelLinkAddr+rest > grubCoreLimit {
		return nil, fmt.Errorf("grub: core image is too big (%#x > %#x); embed fewer modules", grubKernelLinkAddr+rest, grubCoreLimit)
	}
	// util/mkimage.c: the first block list entry's len (u16 at 0x1F4+8) = sectors after diskboot.img.
	binary.LittleEndian.PutUint16(diskboot[grubBlocklistOff+8:], uint16((rest+grubSector-1)/grubSector))
	core := make([]byte, 0, grubSector+rest)
	core = append(core, diskboot...)
	core = append(core, decomp...)
	return append(core, comp...), nil
}

// corePayload is what the LZMA stream of core.img decodes to: kernel.img loaded at its link address,
// then struct grub_module_info32 and the modules, config and prefix (util/mkimage.c,
// grub_install_generate_image).
func corePayload(dir fs.FS, opt CoreOptions) ([]byte, error) {
	moddep, err := readGRUBFile(dir, "moddep.lst")
	if err != nil {
		return nil, err
	}
	mods, err := ResolveModules(bytes.NewReader(moddep), opt.Modules)
	if err != nil {
		return nil, err
	}
	kernelELF, err := readGRUBFile(dir, "kernel.img")
	if err != nil {
		return nil, err
	}
	kernel, bss, err := loadGRUBKernel(kernelELF)
	if err != nil {
		return nil, err
	}
	if grubKernelLinkAddr+len(kernel)+bss > grubKernelLimit {
		return nil, fmt.Errorf("grub: kernel image is too big (%#x > %#x)", grubKernelLinkAddr+len(kernel)+bss, grubKernelLimit)
	}
	var sec bytes.Buffer
	object := func(typ uint32, data []byte, size int) {
		var h [grubModHeaderSize]byte
		binary.LittleEndian.PutUint32(h[0:], typ)
		binary.LittleEndian.PutUint32(h[4:], uint32(size+grubModHeaderSize))
		sec.Write(h[:])
		sec.Write(data)
		sec.Write(make([]byte, size-len(data)))
	}
	for _, m := range mods {
		b, err := readGRUBFile(dir, m+".mod")
		if err != nil {
			return nil, err
		}
		object(grubObjELF, b, align4(len(b))) // ALIGN_ADDR: voidp_sizeof 4
	}
	if opt.Config != "" {
		// mkimage.c: config_size_pure = file size + 1 (a NUL), padded to 4.
		object(grubObjConfig, []byte(opt.Config), align4(len(opt.Config)+1))
	}
	object(grubObjPrefix, []byte(opt.Prefix), align4(len(opt.Prefix)+1))

	total := grubModInfoSize + sec.Len()
	out := make([]byte, 0, len(kernel)+total)
	out = append(out, kernel...)
	var info [grubModInfoSize]byte
	binary.LittleEndian.PutUint32(info[0:], grubModuleMagic)
	binary.LittleEndian.PutUint32(info[4:], grubModInfoSize) // offset of the first header from modinfo
	binary.LittleEndian.PutUint32(info[8:], uint32(total))
	out = append(out, info[:]...)
	return append(out, sec.Bytes()...), nil
}

func align4(n int) int { return (n + 3) &^ 3 }

func readGRUBFile(dir fs.FS, name string) ([]byte, error) {
	b, err := fs.ReadFile(dir, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &MissingGRUBFileError{Path: GRUBBIOSDir + "/" + name}
		}
		return nil, fmt.Errorf("grub: reading %s: %w", name, err)
	}
	return b, nil
}

// loadGRUBKernel lays out kernel.img (an ELF32 executable linked at 0x9000) as grub-mkimage's
// load_image32 does for i386-pc (util/grub-mkimagexx.c: locate_sections, put_section): allocated
// PROGBITS sections, code first then data, each at sh_addr − link address; the image ends after
// the last of them; NOBITS sections (.bss) only count towards bss.
func loadGRUBKernel(b []byte) (img []byte, bss int, err error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, 0, fmt.Errorf("grub: kernel.img: %w", err)
	}
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 {
		return nil, 0, fmt.Errorf("grub: kernel.img is %v %v, want ELFCLASS32 EM_386", f.Class, f.Machine)
	}
	var order []*elf.Section
	for _, text := range []bool{true, false} {
		for _, s := range f.Sections {
			if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_ALLOC != 0 && (s.Flags&elf.SHF_EXECINSTR != 0) == text {
				order = append(order, s)
			}
		}
	}
	if len(order) == 0 || order[0].Addr != grubKernelLinkAddr {
		return nil, 0, fmt.Errorf("grub: kernel.img does not start at %#x", grubKernelLinkAddr)
	}
	size := 0
	for _, s := range order {
		if s.Addr < grubKernelLinkAddr {
			return nil, 0, fmt.Errorf("grub: kernel.img section %s at %#x, below %#x", s.Name, s.Addr, grubKernelLinkAddr)
		}
		size = int(s.Addr-grubKernelLinkAddr) + int(s.Size)
	}
	if size > grubKernelLimit {
		return nil, 0, fmt.Errorf("grub: kernel.img sections end at %#x", size)
	}
	img = make([]byte, size)
	for _, s := range order {
		data, err := s.Data()
		if err != nil {
			return nil, 0, fmt.Errorf("grub: kernel.img section %s: %w", s.Name, err)
		}
		off := int(s.Addr - grubKernelLinkAddr)
		if off+len(data) > size {
			return nil, 0, fmt.Errorf("grub: kernel.img section %s overlaps the next", s.Name)
		}
		copy(img[off:], data)
	}
	end := size
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOBITS && s.Flags&elf.SHF_ALLOC != 0 {
			if e := int(s.Addr-grubKernelLinkAddr) + int(s.Size); e > end {
				end = e
			}
		}
	}
	return img, end - size, nil
}

// grubLZMA compresses b as util/mkimage.c's compress_kernel_lzma does: a raw LZMA1 stream with
// lc=3 lp=0 pb=2, no 13-byte header (the decompressor in startup_raw.S has these properties built in
// and takes the sizes from its own fields) and no end marker (it stops at the uncompressed size).
func grubLZMA(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := lzma.WriterConfig{
		Properties:   &lzma.Properties{LC: 3, LP: 0, PB: 2},
		DictCap:      1 << 16, // props.dictSize in compress_kernel_lzma
		SizeInHeader: true,
		Size:         int64(len(b)),
		EOSMarker:    false,
	}.NewWriter(&buf)
	if err != nil {
		return nil, fmt.Errorf("grub: lzma: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("grub: lzma: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("grub: lzma: %w", err)
	}
	return buf.Bytes()[lzma.HeaderLen:], nil
}

// ResolveModules returns names and everything they need per moddep.lst ("name: dep dep ..."), each
// module after its dependencies, in the order grub-mkimage embeds them (util/resolve.c: a depth-first
// walk that visits a module's dependencies last-listed first, then the module).
func ResolveModules(moddep io.Reader, names []string) ([]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(moddep)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, list, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("grub: moddep.lst: bad line %q", line)
		}
		deps[name] = strings.Fields(list)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("grub: moddep.lst: %w", err)
	}
	var out []string
	seen, visiting := map[string]bool{}, map[string]bool{}
	var add func(n string) error
	add = func(n string) error {
		n = strings.TrimSuffix(n, ".mod")
		if seen[n] {
			return nil
		}
		if visiting[n] {
			return fmt.Errorf("grub: moddep.lst: dependency cycle through %s", n)
		}
		d, ok := deps[n]
		if !ok {
			return fmt.Errorf("grub: module %s is not in moddep.lst", n)
		}
		visiting[n] = true
		for i := len(d) - 1; i >= 0; i-- {
			if err := add(d[i]); err != nil {
				return err
			}
		}
		seen[n] = true
		out = append(out, n)
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}
