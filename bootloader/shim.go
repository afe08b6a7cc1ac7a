package bootloader

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/imgfab/imgfab/rootfs"
)

// ShimPaths are where the distribution's signed shim is looked for (Debian/Ubuntu package
// shim-signed), in order.
var ShimPaths = AMD64.shimPaths()

// SignedGrubPaths are where the distribution's signed monolithic GRUB is looked for (Debian/Ubuntu
// package grub-efi-amd64-signed), in order.
var SignedGrubPaths = AMD64.signedGrubPaths()

// MokManagerPaths are where shim's MokManager is looked for (Debian: shim-helpers-amd64-signed;
// Ubuntu ships it in shim-signed). Optional.
var MokManagerPaths = AMD64.mokManagerPaths()

// ShimNotFoundError lists where the signed shim and GRUB were looked for.
type ShimNotFoundError struct {
	Missing string // "shim" or "GRUB"
	Looked  []string
	Deb     string // Debian's architecture name ("" is amd64)
}

func (e *ShimNotFoundError) Error() string {
	pkg := "shim-signed"
	if e.Missing == "GRUB" {
		deb := e.Deb
		if deb == "" {
			deb = "amd64"
		}
		pkg = "grub-efi-" + deb + "-signed"
	}
	return fmt.Sprintf("--boot-chain shim: no signed %s in the image (install %s); looked at: /%s",
		e.Missing, pkg, strings.Join(e.Looked, ", /"))
}

// PlanShim works out the ESP files of a Secure Boot chain made of the distribution's own signed
// binaries: firmware → shim (signed by the Microsoft UEFI CA) → GRUB (signed by the distribution,
// checked by shim) → the kernel (checked by GRUB through shim's shim_lock protocol). Nothing is
// signed by imgfab, so only files the distribution signed are on the chain:
//
//	/EFI/BOOT/BOOTX64.EFI     shim (removable-media fallback path: boots with empty NVRAM)
//	/EFI/BOOT/grubx64.efi     signed GRUB (shim's DEFAULT_LOADER, looked up beside shim)
//	/EFI/BOOT/mmx64.efi       MokManager, when the image has it
//	PREFIX/grub.cfg           the entry, where the signed GRUB's embedded config looks (below)
//	/EFI/BOOT/grub.cfg        the same, for a GRUB whose prefix directory does not exist
//	/imgfab/VERSION/linux     the image's kernel as shipped (signed by the distribution)
//	/imgfab/VERSION/initrd    its initrd (not verified by Secure Boot)
//
// fbx64.efi (shim's fallback) is left out on purpose: when it sits beside BOOTX64.EFI shim runs it
// instead of GRUB, and it creates NVRAM boot entries from /EFI/*/BOOT*.CSV and resets the machine —
// an installer's job, not a fresh image's.
//
// PREFIX is read from the signed GRUB itself: grub-mkimage stores it as a module of type
// OBJ_TYPE_PREFIX in the image's "mods" section (grub include/grub/kernel.h), and Debian builds the
// signed image with `-p /EFI/$efi_vendor` (grub2 debian/build-efi-images) — "/EFI/debian" in
// grub-efi-amd64-signed 1+2.06+13+deb12u2. Its embedded memdisk grub.cfg (also from
// build-efi-images) then sources $prefix/grub.cfg when $prefix exists, else $cmdpath/grub.cfg.
// GRUB sets $root to the prefix's device, the ESP, so grub.cfg names the kernel by ESP path.
func PlanShim(cfg Config) ([]FileSpec, Entry, error) {
	a := cfg.Arch.orDefault()
	shim, err := firstTreeFile(cfg.Tree, a.shimPaths(), a.RemovableLoader())
	if err != nil {
		return nil, Entry{}, &ShimNotFoundError{Missing: "shim", Looked: a.shimPaths(), Deb: a.Deb}
	}
	grub, err := firstTreeFile(cfg.Tree, a.signedGrubPaths(), "/EFI/BOOT/grub"+a.EFI+".efi")
	if err != nil {
		return nil, Entry{}, &ShimNotFoundError{Missing: "GRUB", Looked: a.signedGrubPaths(), Deb: a.Deb}
	}
	if cfg.Kernel.Linux == "" {
		return nil, Entry{}, fmt.Errorf("--boot-chain shim: no kernel")
	}
	prefix, err := grubPrefix(cfg.Tree, strings.TrimPrefix(grubSource(cfg.Tree, a), "/"))
	if err != nil {
		return nil, Entry{}, fmt.Errorf("--boot-chain shim: %w", err)
	}
	title := cfg.Title
	if title == "" {
		osr, err := rootfs.OSRelease(cfg.Tree)
		if err != nil {
			return nil, Entry{}, err
		}
		if title = osr["PRETTY_NAME"]; title == "" {
			title = "Linux"
		}
	}
	dir := "/imgfab/" + cfg.Kernel.Version
	e := Entry{Loader: a.RemovableLoader(), Linux: dir + "/linux", Options: cfg.Options}
	files := []FileSpec{shim, grub}
	if mm, err := firstTreeFile(cfg.Tree, a.mokManagerPaths(), "/EFI/BOOT/mm"+a.EFI+".efi"); err == nil {
		files = append(files, mm)
	}
	kernel, err := treeFile(cfg.Tree, cfg.Kernel.Linux, e.Linux)
	if err != nil {
		return nil, Entry{}, fmt.Errorf("--boot-chain shim: kernel: %w", err)
	}
	files = append(files, kernel)
	if cfg.Kernel.Initrd != "" {
		e.Initrd = dir + "/initrd"
		initrd, err := treeFile(cfg.Tree, cfg.Kernel.Initrd, e.Initrd)
		if err != nil {
			return nil, Entry{}, fmt.Errorf("--boot-chain shim: initrd: %w", err)
		}
		files = append(files, initrd)
	}
	conf := []byte(grubConfig(title, e))
	e.Conf = path.Join(prefix, "grub.cfg")
	files = append(files, bytesFile(e.Conf, conf))
	if e.Conf != "/EFI/BOOT/grub.cfg" {
		files = append(files, bytesFile("/EFI/BOOT/grub.cfg", conf))
	}
	for _, f := range files {
		e.Files = append(e.Files, f.Path)
	}
	return files, e, nil
}

// grubConfig is the one-entry grub.cfg. GRUB quoting (grub docs "Shell-like scripting"): inside
// single quotes nothing is special, and a quote is written '\”.
func grubConfig(title string, e Entry) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(oneLine(s), "'", `'\''`) + "'" }
	var b strings.Builder
	b.WriteString("# written by imgfab: the image's kernel, booted through the distribution's signed shim and GRUB\n")
	b.WriteString("set default=0\nset timeout=0\n")
	fmt.Fprintf(&b, "menuentry %s {\n", q(title))
	fmt.Fprintf(&b, "\tlinux %s", e.Linux)
	for _, opt := range strings.Fields(e.Options) {
		b.WriteString(" " + q(opt))
	}
	b.WriteString("\n")
	if e.Initrd != "" {
		fmt.Fprintf(&b, "\tinitrd %s\n", e.Initrd)
	}
	b.WriteString("}\n")
	return b.String()
}

func firstTreeFile(tree fs.FS, paths []string, dst string) (FileSpec, error) {
	var err error
	for _, p := range paths {
		var f FileSpec
		if f, err = treeFile(tree, p, dst); err == nil {
			return f, nil
		}
	}
	return FileSpec{}, err
}

func grubSource(tree fs.FS, a Arch) string {
	for _, p := range a.signedGrubPaths() {
		if isRegularFile(tree, p) {
			return p
		}
	}
	return a.signedGrubPaths()[0]
}

// GRUB module area constants (grub include/grub/kernel.h).
const (
	efiGrubModuleMagic = 0x676d696d // GRUB_MODULE_MAGIC "mimg", first u32 of struct grub_module_info64
	efiGrubObjPrefix   = 3          // OBJ_TYPE_PREFIX in enum of struct grub_module_header.type
)

// grubPrefix returns the prefix directory built into a signed GRUB EFI image ("/EFI/debian"), read
// from its "mods" section: struct grub_module_info64 {u32 magic; u32 padding; u64 offset; u64 size}
// then, from offset to size (both counted from the section start), struct grub_module_header
// {u32 type; u32 size} records whose size includes the header (grub include/grub/kernel.h,
// util/mkimage.c). A prefix with a device part "(dev)/dir" keeps only the directory.
func grubPrefix(tree fs.FS, p string) (string, error) {
	f, err := tree.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var ra io.ReaderAt
	if r, ok := f.(io.ReaderAt); ok {
		ra = r
	} else {
		b, err := io.ReadAll(f) // a signed GRUB is about 4 MiB
		if err != nil {
			return "", fmt.Errorf("reading /%s: %w", p, err)
		}
		ra = bytes.NewReader(b)
	}
	pf, err := pe.NewFile(ra)
	if err != nil {
		return "", fmt.Errorf("/%s is not a PE image: %w", p, err)
	}
	mods := pf.Section("mods")
	if mods == nil {
		return "", fmt.Errorf("/%s has no \"mods\" section: not a grub-mkimage EFI image", p)
	}
	data, err := mods.Data()
	if err != nil {
		return "", fmt.Errorf("/%s: reading its mods section: %w", p, err)
	}
	le := binary.LittleEndian
	if len(data) < 24 || le.Uint32(data) != efiGrubModuleMagic {
		return "", fmt.Errorf("/%s: mods section does not start with GRUB_MODULE_MAGIC", p)
	}
	off, end := le.Uint64(data[8:]), min(le.Uint64(data[16:]), uint64(len(data)))
	for off+8 <= end {
		typ, size := le.Uint32(data[off:]), uint64(le.Uint32(data[off+4:]))
		if size < 8 || off+size > end {
			break
		}
		if typ == efiGrubObjPrefix {
			pre := string(bytes.TrimRight(data[off+8:off+size], "\x00"))
			if i := strings.IndexByte(pre, ')'); strings.HasPrefix(pre, "(") && i > 0 {
				pre = pre[i+1:]
			}
			if !strings.HasPrefix(pre, "/") {
				return "", fmt.Errorf("/%s: prefix %q is not an absolute path", p, pre)
			}
			return path.Clean(pre), nil
		}
		off += size
	}
	// No prefix module: the embedded config falls back to $cmdpath, the shim's directory.
	return "/EFI/BOOT", nil
}
