package inspect

import (
	"bytes"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// BIOSBoot describes the boot code in sector 0 of a partitioned disk.
type BIOSBoot struct {
	// Loader is "grub" when sector 0 is GRUB's boot.img, else "unknown" (some other boot code).
	Loader string `json:"loader"`
	// CoreLBA is the sector boot.img loads first (GRUB_BOOT_MACHINE_KERNEL_SECTOR); 0 when not GRUB.
	CoreLBA int64 `json:"core_lba,omitempty"`
	// CoreSectors is core.img's length in 512-byte sectors (diskboot.img's block list plus its own
	// sector); 0 when the sector at CoreLBA is not GRUB's diskboot.img.
	CoreSectors int64 `json:"core_sectors,omitempty"`
	// CoreIn says where core.img lies: "bios-boot-partition", "partition" (inside another partition),
	// "mbr-gap" (between sector 0 and the first partition of an MBR disk), "unpartitioned" (any other
	// space outside the partitions) or "" (not known).
	CoreIn string `json:"core_in,omitempty"`
	// CorePartition is the number of the partition holding core.img, when CoreIn names one.
	CorePartition int `json:"core_partition,omitempty"`
}

// EFILoader describes an EFI executable on the ESP (the removable-media path EFI/BOOT/BOOTX64.EFI).
type EFILoader struct {
	Path string `json:"path"` // on the ESP
	// Kind is "systemd-boot" (a .sdmagic section saying "LoaderInfo: systemd-boot"), "uki" (.linux
	// section), "shim" (.sbat names shim, or a recognized binary is absent but grubx64.efi sits beside
	// it), "grub" (.sbat names grub, or a grub-mkimage "mods" section) or "unknown".
	Kind string `json:"kind"`
	// Version is the loader's own version: systemd-boot's from .sdmagic, shim's and GRUB's from the
	// vendor line of .sbat.
	Version string `json:"version,omitempty"`
	// UKI is what a unified kernel image carries (Kind "uki"): Title is .osrel's PRETTY_NAME, Version
	// .uname, Options .cmdline, Linux the image's own path.
	UKI *Entry `json:"uki,omitempty"`
}

// GRUBConfig is a grub.cfg on the ESP and its first menuentry.
type GRUBConfig struct {
	Path string `json:"path"`
	// UsedBy lists the boot modes whose GRUB reads this file: "bios" (GRUB's core.img in sector 0's
	// chain, imgfab's $prefix /grub), "uefi" (the EFI GRUB's prefix directory, else its own directory).
	UsedBy []string `json:"used_by,omitempty"`
	// Entry is the first menuentry: Title its title, Linux and Initrd the paths of its linux and
	// initrd commands, Options the linux command's arguments (unquoted, joined with spaces), Version
	// the kernel version read from the kernel file's boot header when it is on the ESP. Nil when the
	// file has no menuentry with a linux command.
	Entry *Entry `json:"entry,omitempty"`
}

// Limits for what is read from EFI executables.
const (
	maxPESection = 1 << 20 // largest small section read whole (.cmdline, .osrel, .uname, .sbat, .sdmagic)
	maxGRUBMods  = 1 << 14 // module headers walked in a GRUB image's mods section
)

// fatFile reads one file of a fatFS at any offset, following its cluster chain as far as a read
// needs and remembering it, so a header near the start of a large file (a UKI, a kernel) is read
// without walking or reading the rest. The chain is checked as fatFS.read checks it.
type fatFile struct {
	f     *fatFS
	path  string
	size  int64
	chain []int64
	mark  int64 // the cluster at the last power-of-two position of chain (Brent's cycle check)
}

func (f *fatFS) open(p string) (*fatFile, error) {
	e, err := f.lookup(p)
	if err != nil {
		return nil, err
	}
	if e.dir {
		return nil, fmt.Errorf("%s: is a directory", p)
	}
	return &fatFile{f: f, path: p, size: e.size, chain: []int64{e.clus}, mark: e.clus}, nil
}

// cluster returns the i-th cluster of the file.
func (ff *fatFile) cluster(i int64) (int64, error) {
	for int64(len(ff.chain)) <= i {
		last := ff.chain[len(ff.chain)-1]
		if last < 2 || last > ff.f.clusters+1 {
			return 0, fmt.Errorf("%s: cluster %d (number %d of the chain) is outside [2, %d]", ff.path, last, len(ff.chain)-1, ff.f.clusters+1)
		}
		if int64(len(ff.chain)) > ff.f.clusters {
			return 0, fmt.Errorf("%s: cluster chain longer than the %d clusters of the filesystem (a loop)", ff.path, ff.f.clusters)
		}
		next, err := ff.f.next(last)
		if err != nil {
			return 0, err
		}
		if next == -1 {
			return 0, fmt.Errorf("%s: cluster chain ends after %d clusters, the entry says %d bytes", ff.path, len(ff.chain), ff.size)
		}
		// Brent: a loop is found within a few times its length plus the steps before it, so a
		// chain looping back never costs the filesystem's cluster count in steps.
		if next == ff.mark {
			return 0, fmt.Errorf("%s: cluster chain loops back to cluster %d after %d clusters", ff.path, next, len(ff.chain))
		}
		ff.chain = append(ff.chain, next)
		if n := len(ff.chain); n&(n-1) == 0 {
			ff.mark = next
		}
	}
	c := ff.chain[i]
	if c < 2 || c > ff.f.clusters+1 {
		return 0, fmt.Errorf("%s: cluster %d (number %d of the chain) is outside [2, %d]", ff.path, c, i, ff.f.clusters+1)
	}
	return c, nil
}

// ReadAt implements io.ReaderAt over the file's bytes (its directory entry's size).
func (ff *fatFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", ff.path, off)
	}
	n := 0
	for n < len(p) && off < ff.size {
		cb := ff.f.clusBytes
		c, err := ff.cluster(off / cb)
		if err != nil {
			return n, err
		}
		in := off % cb
		k := min(int64(len(p)-n), cb-in, ff.size-off)
		if err := ff.f.readAt(p[n:n+int(k)], ff.f.dataOff+(c-2)*cb+in, ff.path); err != nil {
			return n, err
		}
		n += int(k)
		off += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// peSection returns the bytes of a small section: VirtualSize bytes (the content; SizeOfRawData is
// rounded up to FileAlignment), at most SizeOfRawData, with trailing NULs cut (PE/COFF specification
// §4 "Section Table": VirtualSize, SizeOfRawData). Nil when the section is absent.
func peSection(f *pe.File, name string) ([]byte, error) {
	s := f.Section(name)
	if s == nil {
		return nil, nil
	}
	n := int64(s.Size)
	if s.VirtualSize != 0 && int64(s.VirtualSize) < n {
		n = int64(s.VirtualSize)
	}
	if n > maxPESection {
		return nil, fmt.Errorf("section %s: %d bytes, more than the %d read", name, n, maxPESection)
	}
	b := make([]byte, n)
	if _, err := s.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("section %s: %w", name, err)
	}
	return bytes.TrimRight(b, "\x00"), nil
}

// classifyEFI identifies an EFI executable by its PE sections (see EFILoader.Kind).
func classifyEFI(ra io.ReaderAt, p string) (*EFILoader, error) {
	l := &EFILoader{Path: "/" + strings.TrimPrefix(p, "/"), Kind: "unknown"}
	f, err := pe.NewFile(ra)
	if err != nil {
		return l, fmt.Errorf("%s: not a PE image: %w", l.Path, err)
	}
	var errs []error
	sec := func(name string) []byte {
		b, err := peSection(f, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Path, err))
		}
		return b
	}
	switch {
	case f.Section(".linux") != nil:
		// UAPI Unified Kernel Image specification, "UKI Components": .linux (the kernel), .osrel,
		// .cmdline, .uname, .initrd.
		l.Kind = "uki"
		e := &Entry{ID: strings.TrimSuffix(path.Base(l.Path), path.Ext(l.Path)), Type: "uki", Linux: l.Path}
		e.Options = strings.TrimSpace(string(sec(".cmdline")))
		e.Version = strings.TrimSpace(string(sec(".uname")))
		if osr := sec(".osrel"); len(osr) > 0 {
			e.Title = parseOSRelease(osr).PrettyName
		}
		if e.Version == "" {
			if s := f.Section(".linux"); s != nil {
				e.Version = kernelVersion(io.NewSectionReader(s, 0, int64(s.Size)))
			}
		}
		l.UKI = e
	default:
		// systemd's src/boot/efi: the .sdmagic section holds "#### LoaderInfo: systemd-boot VERSION ####"
		// (systemd-stub says "systemd-stub").
		if m := string(sec(".sdmagic")); strings.Contains(m, "LoaderInfo: systemd-boot ") {
			l.Kind = "systemd-boot"
			v := strings.TrimSpace(m[strings.Index(m, "systemd-boot ")+len("systemd-boot "):])
			l.Version = strings.TrimSpace(strings.TrimRight(v, "# "))
			break
		}
		// SBAT (rhboot/shim SBAT.md): CSV lines component_name, component_generation, vendor_name,
		// vendor_package_name, vendor_version, vendor_url; the first is "sbat,1,...". The
		// vendor's own line ("shim.debian", "grub.debian") carries the package version.
		for _, line := range strings.Split(string(sec(".sbat")), "\n") {
			fields := strings.Split(strings.TrimSpace(line), ",")
			comp, _, _ := strings.Cut(fields[0], ".")
			if comp != "shim" && comp != "grub" {
				continue
			}
			if l.Kind == "unknown" {
				l.Kind = comp
			}
			if comp == l.Kind && len(fields) >= 5 {
				l.Version = fields[4]
			}
		}
		if l.Kind == "unknown" && f.Section("mods") != nil {
			l.Kind = "grub" // grub-mkimage's module section (grub util/mkimage.c)
		}
	}
	return l, errors.Join(errs...)
}

// grubPrefix reads the prefix directory built into a GRUB EFI image: its "mods" section starts with
// struct grub_module_info64 {u32 magic "mimg" = 0x676d696d; u32 padding; u64 offset; u64 size}, then
// from offset to size (counted from the section start) struct grub_module_header {u32 type; u32 size
// (header included)} records; type 3 (OBJ_TYPE_PREFIX) holds the prefix (grub include/grub/kernel.h,
// util/mkimage.c). Only the headers are read. "" when there is none; a "(device)" part is dropped.
func grubPrefix(ra io.ReaderAt) (string, error) {
	f, err := pe.NewFile(ra)
	if err != nil {
		return "", err
	}
	s := f.Section("mods")
	if s == nil {
		return "", nil
	}
	var h [24]byte
	if _, err := s.ReadAt(h[:], 0); err != nil {
		return "", fmt.Errorf("mods section header: %w", err)
	}
	if le.Uint32(h[0:]) != 0x676d696d {
		return "", fmt.Errorf("mods section: magic %#x at byte 0, want 0x676d696d (\"mimg\")", le.Uint32(h[0:]))
	}
	off, end := le.Uint64(h[8:]), min(le.Uint64(h[16:]), uint64(s.Size))
	for i := 0; i < maxGRUBMods && off <= end && end-off >= 8; i++ { // (off+8 could wrap)
		var m [8]byte
		if _, err := s.ReadAt(m[:], int64(off)); err != nil {
			return "", fmt.Errorf("mods section: module header at byte %d: %w", off, err)
		}
		typ, size := le.Uint32(m[0:]), uint64(le.Uint32(m[4:]))
		if size < 8 || size > end-off {
			return "", fmt.Errorf("mods section: module header at byte %d: size %d outside [8, %d]", off, size, end-off)
		}
		if typ == 3 {
			if size > 4096+8 {
				return "", fmt.Errorf("mods section: prefix of %d bytes", size-8)
			}
			b := make([]byte, size-8)
			if _, err := s.ReadAt(b, int64(off+8)); err != nil {
				return "", fmt.Errorf("mods section: prefix at byte %d: %w", off+8, err)
			}
			pre := string(bytes.TrimRight(b, "\x00"))
			if i := strings.IndexByte(pre, ')'); strings.HasPrefix(pre, "(") && i > 0 {
				pre = pre[i+1:]
			}
			return pre, nil
		}
		off += size
	}
	return "", nil
}

// kernelVersion reads the version of an x86 Linux kernel image from its boot header (Linux
// Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header"): "HdrS" at 0x202, the protocol
// version u16 at 0x206 (kernel_version exists from 2.00 on), kernel_version u16 at 0x20E: the offset
// of a NUL-terminated version string, less 0x200. The string's first word is `uname -r`. "" when
// the file is not such a kernel.
func kernelVersion(ra io.ReaderAt) string {
	var h [0x10]byte
	if n, _ := ra.ReadAt(h[:], 0x200); n < len(h) || string(h[2:6]) != "HdrS" || le.Uint16(h[6:]) < 0x200 {
		return ""
	}
	ptr := int64(le.Uint16(h[0xE:]))
	if ptr == 0 {
		return ""
	}
	b := make([]byte, 256)
	n, _ := ra.ReadAt(b, ptr+0x200)
	b = b[:n]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return v
}

// readBootFiles adds to boot what the ESP holds beyond BLS type #1 entries: the kind of
// EFI/BOOT/BOOTX64.EFI, unified kernel images in EFI/Linux (BLS type #2 entries, appended to
// boot.Entries) and GRUB configurations (grub/grub.cfg, boot/grub/grub.cfg, EFI/*/grub.cfg).
func readBootFiles(f *fatFS, boot *Boot) error {
	var errs []error
	if boot.Fallback {
		if ff, err := f.open(boot.FallbackPath); err != nil {
			errs = append(errs, err)
		} else {
			l, err := classifyEFI(ff, boot.FallbackPath)
			if err != nil && l.Kind == "unknown" && l.UKI == nil && strings.Contains(err.Error(), "not a PE image") {
				err = nil // a file that is no PE image is simply an unknown loader
			}
			if err != nil {
				errs = append(errs, err)
			}
			if l.Kind == "unknown" {
				if e, err := f.lookup("EFI/BOOT/grub" + boot.EFISuffix + ".efi"); err == nil && !e.dir {
					l.Kind = "shim" // shim's DEFAULT_LOADER, looked up beside it
				}
			}
			boot.EFILoader = l
		}
	}
	// Boot Loader Specification, "Type #2 EFI Unified Kernel Images": EFI/Linux/*.efi.
	if d, err := f.lookup("EFI/Linux"); err == nil && d.dir {
		es, err := f.list(d.clus)
		if err != nil {
			errs = append(errs, fmt.Errorf("EFI/Linux: %w", err))
		}
		for _, fe := range es {
			if fe.dir || fe.label || !strings.HasSuffix(strings.ToLower(fe.name), ".efi") {
				continue
			}
			p := "EFI/Linux/" + fe.name
			ff, err := f.open(p)
			if err != nil {
				errs = append(errs, err)
				if errors.Is(err, errFATBudget) {
					break
				}
				continue
			}
			l, err := classifyEFI(ff, p)
			if err != nil {
				errs = append(errs, err)
				if errors.Is(err, errFATBudget) {
					break
				}
			}
			if l.UKI != nil {
				boot.Entries = append(boot.Entries, *l.UKI)
			}
		}
	}
	// GRUB configurations.
	var cfgs []string
	for _, p := range []string{"grub/grub.cfg", "boot/grub/grub.cfg"} {
		if e, err := f.lookup(p); err == nil && !e.dir {
			cfgs = append(cfgs, p)
		}
	}
	if d, err := f.lookup("EFI"); err == nil && d.dir {
		es, err := f.list(d.clus)
		if err != nil {
			errs = append(errs, fmt.Errorf("EFI: %w", err))
		}
		var vendor []string
		for _, fe := range es {
			if !fe.dir || fe.label {
				continue
			}
			if e, err := f.lookup("EFI/" + fe.name + "/grub.cfg"); err == nil && !e.dir {
				vendor = append(vendor, "EFI/"+fe.name+"/grub.cfg")
			}
		}
		slices.Sort(vendor)
		cfgs = append(cfgs, vendor...)
	}
	for _, p := range cfgs {
		b, err := f.readFile(p)
		if err != nil {
			errs = append(errs, err)
			if errors.Is(err, errFATBudget) {
				break
			}
			continue
		}
		g := GRUBConfig{Path: "/" + p}
		if e := parseGRUBConfig(b); e != nil {
			e.ID = g.Path
			if ff, err := f.open(strings.TrimPrefix(e.Linux, "/")); err == nil {
				e.Version = kernelVersion(ff)
			}
			g.Entry = e
		}
		boot.GRUB = append(boot.GRUB, g)
	}
	return errors.Join(errs...)
}

// efiGRUBConfig returns the grub.cfg a GRUB EFI image at exe reads: $prefix/grub.cfg when the
// image's prefix directory has one (Debian's signed GRUB: "/EFI/debian"), else grub.cfg in its own
// directory ($cmdpath; grub2 debian/build-efi-images' embedded config does the same).
func efiGRUBConfig(f *fatFS, exe string, boot *Boot) string {
	has := func(p string) bool {
		for _, g := range boot.GRUB {
			if strings.EqualFold(g.Path, p) {
				return true
			}
		}
		return false
	}
	if ff, err := f.open(strings.TrimPrefix(exe, "/")); err == nil {
		if pre, err := grubPrefix(ff); err == nil && pre != "" {
			if p := path.Join("/", pre, "grub.cfg"); has(p) {
				return p
			}
		}
	}
	if p := path.Join(path.Dir(exe), "grub.cfg"); has(p) {
		return p
	}
	return ""
}

// parseGRUBConfig finds the first menuentry (at any depth) and reads its linux and initrd commands
// (also linuxefi/linux16, initrdefi/initrd16). Words follow GRUB's shell-like quoting (GRUB manual,
// "Shell-like scripting"; grub-core/script/yylex.l): in single quotes everything is literal; in
// double quotes a backslash escapes $ " \ and newline; outside quotes a backslash escapes any
// character; # starts a comment at the start of a word; newlines and ; end commands; { and } are
// words of their own. Variables ($x) are kept as written. Nil without a menuentry with a linux line.
func parseGRUBConfig(b []byte) *Entry {
	cmds := grubCommands(string(b))
	for i, c := range cmds {
		if c.words[0] != "menuentry" {
			continue
		}
		e := &Entry{Type: "grub"}
		depth := 0
		for k, w := range c.words {
			if w == "{" && !c.quoted[k] {
				depth++
			} else if k == 1 {
				e.Title = w
			}
		}
		for _, d := range cmds[i+1:] {
			if depth <= 0 {
				break
			}
			switch d.words[0] {
			case "linux", "linuxefi", "linux16":
				if e.Linux == "" && len(d.words) > 1 {
					e.Linux = d.words[1]
					e.Options = strings.Join(d.words[2:], " ")
				}
			case "initrd", "initrdefi", "initrd16":
				if e.Initrd == nil {
					e.Initrd = d.words[1:]
				}
			}
			for k, w := range d.words {
				if d.quoted[k] {
					continue
				}
				switch w {
				case "{":
					depth++
				case "}":
					depth--
				}
			}
		}
		if e.Linux == "" {
			continue
		}
		return e
	}
	return nil
}

type grubCmd struct {
	words  []string
	quoted []bool // the word had quotes or escapes: "{" or "}" in it are not braces
}

func grubCommands(s string) []grubCmd {
	var cmds []grubCmd
	var cur grubCmd
	var w strings.Builder
	inWord, quoted := false, false
	endWord := func() {
		if inWord {
			cur.words = append(cur.words, w.String())
			cur.quoted = append(cur.quoted, quoted)
		}
		w.Reset()
		inWord, quoted = false, false
	}
	endCmd := func() {
		endWord()
		if len(cur.words) > 0 {
			cmds = append(cmds, cur)
		}
		cur = grubCmd{}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n' || c == ';':
			endCmd()
		case c == ' ' || c == '\t' || c == '\r':
			endWord()
		case c == '#' && !inWord:
			for i < len(s) && s[i] != '\n' {
				i++
			}
			endCmd()
		case (c == '{' || c == '}') && !inWord:
			// A brace standing alone is a word of its own; "{" ends the menuentry line.
			w.WriteByte(c)
			inWord = true
			endWord()
			if c == '{' || len(cur.words) == 1 {
				endCmd()
			}
		case c == '\'':
			inWord, quoted = true, true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = len(s) - i - 1
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord, quoted = true, true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$\"\\\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				w.WriteByte(s[i])
			}
		case c == '\\':
			inWord, quoted = true, true
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					w.WriteByte(s[i])
				}
			}
		default:
			inWord = true
			w.WriteByte(c)
		}
	}
	endCmd()
	return cmds
}

// readBIOS reads sector 0 of a partitioned disk for boot code (bytes 0–439, before the disk
// signature at 440 and the partition table at 446; 0x55AA at 510). GRUB's boot.img
// (grub-core/boot/i386/pc/boot.S) carries the strings "GRUB \0Geom\0Hard Disk\0Read\0 Error" and at
// 0x5C the u64 LBA of core.img's first sector (GRUB_BOOT_MACHINE_KERNEL_SECTOR,
// include/grub/i386/pc/boot.h). That sector is diskboot.img (grub-core/boot/i386/pc/diskboot.S: the
// string "loading", and its block list growing down from 0x1F4: {u64 start, u16 sectors, u16
// segment}, ending with an entry of 0 sectors). Nil without boot code.
func readBIOS(r io.ReaderAt, size int64, kind string, parts []Partition) (*BIOSBoot, error) {
	if kind != "gpt" && kind != "mbr" {
		return nil, nil // a whole-disk filesystem's boot sector is not an MBR
	}
	s0 := make([]byte, 512)
	if err := readAt(r, size, s0, 0, "sector 0"); err != nil {
		return nil, err
	}
	if s0[510] != 0x55 || s0[511] != 0xAA || !slices.ContainsFunc(s0[:440], func(b byte) bool { return b != 0 }) {
		return nil, nil
	}
	b := &BIOSBoot{Loader: "unknown"}
	if !bytes.Contains(s0[:440], []byte("GRUB \x00Geom\x00")) {
		return b, nil
	}
	b.Loader = "grub"
	lba := le.Uint64(s0[0x5C:])
	if lba < 1 || lba >= uint64(size/512) {
		return b, fmt.Errorf("BIOS boot: GRUB boot.img's kernel sector (u64 at byte 0x5C) is %d, outside the %d-sector disk", lba, size/512)
	}
	b.CoreLBA = int64(lba)
	d := make([]byte, 512)
	if err := readAt(r, size, d, b.CoreLBA*512, "GRUB core.img first sector"); err != nil {
		return b, err
	}
	if !bytes.Contains(d[:0x1F4], []byte("loading\x00")) {
		return b, fmt.Errorf("BIOS boot: sector %d (GRUB boot.img's kernel sector, byte 0x5C) is not GRUB's diskboot.img (no \"loading\" string)", lba)
	}
	n := int64(1)
	for off := 0x1F4; off >= 0x1F4-12*32; off -= 12 { // struct grub_pc_bios_boot_blocklist, 12 bytes each
		cnt := int64(le.Uint16(d[off+8:]))
		if cnt == 0 {
			break
		}
		n += cnt
	}
	b.CoreSectors = n
	start, end := b.CoreLBA*512, (b.CoreLBA+n)*512
	first := size
	for _, p := range parts {
		first = min(first, p.Offset)
		if start >= p.Offset && end <= p.Offset+p.Size {
			b.CoreIn, b.CorePartition = "partition", p.Number
			if p.Type == "bios-boot" {
				b.CoreIn = "bios-boot-partition"
			}
			return b, nil
		}
	}
	switch {
	case kind == "mbr" && end <= first:
		b.CoreIn = "mbr-gap"
	case !slices.ContainsFunc(parts, func(p Partition) bool { return start < p.Offset+p.Size && p.Offset < end }):
		b.CoreIn = "unpartitioned"
	}
	return b, nil
}

// resolveBoot works out the boot modes and loaders from sector 0 and the ESP, and picks the entry
// whose command line the firmware's loader boots: the UEFI loader's (systemd-boot: its default
// entry; a UKI: its .cmdline; shim or GRUB: the first menuentry of the grub.cfg GRUB reads), else
// BIOS GRUB's. esp reads files of the ESP again (nil without one).
func resolveBoot(rep *Report, bios *BIOSBoot, esp *fatFS) *Entry {
	boot := rep.Boot
	var def *Entry
	if boot != nil {
		for i := range boot.Entries {
			if boot.Entries[i].Default {
				def = &boot.Entries[i]
			}
		}
	}
	use := func(p, mode string) *Entry {
		for i := range boot.GRUB {
			if strings.EqualFold(boot.GRUB[i].Path, p) {
				boot.GRUB[i].UsedBy = append(boot.GRUB[i].UsedBy, mode)
				if e := boot.GRUB[i].Entry; e != nil {
					e.Default = true
					return e
				}
			}
		}
		return nil
	}
	var loaders []string
	if bios != nil {
		rep.Architecture = "amd64" // BIOS boot code is x86
		rep.BootModes = append(rep.BootModes, "bios")
		rep.BIOSLoader = bios.Loader
		loaders = append(loaders, bios.Loader)
	}
	var uefiDef *Entry
	if boot != nil && boot.Fallback {
		rep.Architecture = map[string]string{"x64": "amd64", "aa64": "arm64"}[boot.EFISuffix]
		rep.BootModes = append([]string{"uefi"}, rep.BootModes...)
		kind := "unknown"
		if boot.EFILoader != nil {
			kind = boot.EFILoader.Kind
		}
		if kind == "unknown" && rep.Loader == "systemd-boot" {
			kind = "systemd-boot" // an unrecognized binary beside loader/loader.conf or EFI/systemd
		}
		rep.UEFILoader = kind
		switch kind {
		case "systemd-boot":
			uefiDef = def
		case "uki":
			uefiDef = boot.EFILoader.UKI
			uefiDef.Default = true
		case "shim", "grub":
			exe := "/" + boot.FallbackPath
			if kind == "shim" {
				exe = "/EFI/BOOT/grub" + boot.EFISuffix + ".efi"
			}
			if esp != nil {
				if p := efiGRUBConfig(esp, exe, boot); p != "" {
					uefiDef = use(p, "uefi")
				}
			}
		}
		if kind == "unknown" {
			kind = "efi"
		}
		loaders = append(loaders, kind)
	}
	var biosDef *Entry
	if bios != nil && bios.Loader == "grub" && boot != nil {
		biosDef = use("/grub/grub.cfg", "bios")
		if biosDef == nil {
			biosDef = use("/boot/grub/grub.cfg", "bios")
		}
	}
	switch {
	case slices.Equal(rep.BootModes, []string{"uefi", "bios"}):
		rep.BootMode = "hybrid"
	case len(rep.BootModes) == 1:
		rep.BootMode = rep.BootModes[0]
	}
	if len(loaders) > 0 {
		rep.Loader = strings.Join(loaders, "+")
	}
	switch {
	case uefiDef != nil:
		return uefiDef
	case biosDef != nil:
		return biosDef
	}
	return def
}

// openESP opens the ESP partition's FAT again for resolveBoot; nil on error (already reported).
func openESP(r io.ReaderAt, p *Partition) *fatFS {
	if p == nil {
		return nil
	}
	f, err := openFAT(io.NewSectionReader(r, p.Offset, p.Size), p.Size)
	if err != nil {
		return nil
	}
	return f
}
