package inspect

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/bootloader"
)

type peSec struct {
	name string
	data []byte
}

// makePE builds a small PE32+ image with the given sections (Microsoft PE/COFF specification: MS-DOS
// stub with e_lfanew at 0x3C (§3.2), "PE\0\0", COFF header (§3.3), PE32+ optional header with 16
// data directories (§3.4), section table (§4)); FileAlignment 0x200, SectionAlignment 0x1000.
func makePE(secs ...peSec) []byte {
	const peOff, optSize, falign, salign = 0x40, 112 + 16*8, 0x200, 0x1000
	up := func(v, a int) int { return (v + a - 1) / a * a }
	coff, opt := peOff+4, peOff+4+20
	sh := opt + optSize
	b := make([]byte, up(sh+40*len(secs), falign))
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3C:], peOff)
	copy(b[peOff:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[coff:], 0x8664)              // Machine: AMD64
	binary.LittleEndian.PutUint16(b[coff+2:], uint16(len(secs))) // NumberOfSections
	binary.LittleEndian.PutUint16(b[coff+16:], optSize)          // SizeOfOptionalHeader
	binary.LittleEndian.PutUint16(b[coff+18:], 0x2022)           // Characteristics: executable, large address aware, DLL
	binary.LittleEndian.PutUint16(b[opt:], 0x20B)                // PE32+ magic
	binary.LittleEndian.PutUint32(b[opt+32:], salign)            // SectionAlignment
	binary.LittleEndian.PutUint32(b[opt+36:], falign)            // FileAlignment
	binary.LittleEndian.PutUint16(b[opt+68:], 10)                // Subsystem: EFI application
	binary.LittleEndian.PutUint32(b[opt+108:], 16)               // NumberOfRvaAndSizes
	va := salign
	for i, s := range secs {
		h := sh + 40*i
		copy(b[h:h+8], s.name)
		binary.LittleEndian.PutUint32(b[h+8:], uint32(len(s.data)))           // VirtualSize
		binary.LittleEndian.PutUint32(b[h+12:], uint32(va))                   // VirtualAddress
		binary.LittleEndian.PutUint32(b[h+16:], uint32(up(len(s.data), 512))) // SizeOfRawData
		binary.LittleEndian.PutUint32(b[h+20:], uint32(len(b)))               // PointerToRawData
		binary.LittleEndian.PutUint32(b[h+36:], 0x40000040)                   // initialized data, readable
		b = append(b, s.data...)
		b = append(b, make([]byte, up(len(s.data), 512)-len(s.data))...)
		va += up(max(len(s.data), 1), salign)
	}
	binary.LittleEndian.PutUint32(b[opt+56:], uint32(va)) // SizeOfImage
	return b
}

// fakeKernel is an x86 kernel boot header (Documentation/arch/x86/boot.rst): "HdrS" at 0x202,
// protocol 2.15 at 0x206, kernel_version at 0x20E pointing (less 0x200) at the version string.
func fakeKernel(version string) []byte {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020F)
	binary.LittleEndian.PutUint16(b[0x20E:], 0x100)
	copy(b[0x300:], version+" (builder@example) #1 SMP PREEMPT_DYNAMIC Debian\x00")
	return b
}

// grubMods is a grub-mkimage "mods" section: struct grub_module_info64 then one config module
// (type 2) and the prefix module (type 3).
func grubMods(prefix string) []byte {
	mod := func(typ uint32, data []byte) []byte {
		data = append(data, make([]byte, (8-len(data)%8)%8)...)
		h := binary.LittleEndian.AppendUint32(nil, typ)
		h = binary.LittleEndian.AppendUint32(h, uint32(8+len(data)))
		return append(h, data...)
	}
	body := append(mod(2, []byte("echo hi\n")), mod(3, []byte(prefix+"\x00"))...)
	h := binary.LittleEndian.AppendUint32(nil, 0x676d696d)
	h = binary.LittleEndian.AppendUint32(h, 0)
	h = binary.LittleEndian.AppendUint64(h, 24)
	h = binary.LittleEndian.AppendUint64(h, uint64(24+len(body)))
	return append(h, body...)
}

func ukiPE(cmdline, uname, pretty string) []byte {
	return makePE(
		peSec{".text", []byte{0xC3}},
		peSec{".osrel", []byte("ID=t\nPRETTY_NAME=\"" + pretty + "\"\n")},
		peSec{".cmdline", []byte(cmdline + "\n\x00")},
		peSec{".uname", []byte(uname)},
		peSec{".initrd", []byte("070701")},
		peSec{".linux", fakeKernel(uname)},
	)
}

func TestKernelVersion(t *testing.T) {
	if v := kernelVersion(bytes.NewReader(fakeKernel("6.1.0-99-amd64"))); v != "6.1.0-99-amd64" {
		t.Errorf("version %q", v)
	}
	for name, b := range map[string][]byte{
		"short":   make([]byte, 0x100),
		"no HdrS": make([]byte, 0x400),
		"old protocol": func() []byte {
			b := fakeKernel("1")
			binary.LittleEndian.PutUint16(b[0x206:], 0x0105)
			return b
		}(),
		"binary": func() []byte {
			b := fakeKernel("x")
			b[0x300] = 0x01
			return b
		}(),
		"pointer past the end": func() []byte {
			b := fakeKernel("1")
			binary.LittleEndian.PutUint16(b[0x20E:], 0xFFF0)
			return b
		}(),
	} {
		if v := kernelVersion(bytes.NewReader(b)); v != "" {
			t.Errorf("%s: version %q, want none", name, v)
		}
	}
}

func TestClassifyEFISynthetic(t *testing.T) {
	for _, c := range []struct {
		name, kind, version string
		pe                  []byte
	}{
		{"uki", "uki", "", ukiPE("root=x rw", "6.1.0-99-amd64", "T OS")},
		{"systemd-boot", "systemd-boot", "257.1", makePE(peSec{".text", []byte{1}}, peSec{".sdmagic", []byte("#### LoaderInfo: systemd-boot 257.1 ####\x00")})},
		{"systemd-stub", "unknown", "", makePE(peSec{".text", []byte{1}}, peSec{".sdmagic", []byte("#### LoaderInfo: systemd-stub 257.1 ####\x00")})},
		{"shim", "shim", "16.1", makePE(peSec{".sbat", []byte("sbat,1,SBAT Version,sbat,1,u\nshim,4,UEFI shim,shim,1,u\nshim.debian,1,Debian,shim,16.1,u\n")})},
		{"grub sbat", "grub", "2.06-13", makePE(peSec{".sbat", []byte("sbat,1,SBAT Version,sbat,1,u\ngrub,5,FSF,grub,2.06,u\ngrub.debian,5,Debian,grub2,2.06-13,u\n")})},
		{"grub mods", "grub", "", makePE(peSec{"mods", grubMods("/EFI/x")})},
		{"other", "unknown", "", makePE(peSec{".text", []byte{1}})},
	} {
		l, err := classifyEFI(bytes.NewReader(c.pe), "EFI/BOOT/BOOTX64.EFI")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if l.Kind != c.kind || l.Version != c.version || l.Path != "/EFI/BOOT/BOOTX64.EFI" {
			t.Errorf("%s: %+v, want kind %q version %q", c.name, l, c.kind, c.version)
		}
		if c.kind == "uki" {
			if e := l.UKI; e == nil || e.Options != "root=x rw" || e.Version != "6.1.0-99-amd64" || e.Title != "T OS" || e.Type != "uki" || e.ID != "BOOTX64" {
				t.Errorf("uki entry %+v", e)
			}
		}
	}
	// A UKI without .uname: the version comes from the kernel's boot header in .linux.
	l, err := classifyEFI(bytes.NewReader(makePE(peSec{".linux", fakeKernel("5.10.0-1-amd64")})), "EFI/Linux/k.efi")
	if err != nil || l.UKI == nil || l.UKI.Version != "5.10.0-1-amd64" || l.UKI.ID != "k" {
		t.Errorf("UKI without .uname: %+v %v", l, err)
	}
	if l, err := classifyEFI(strings.NewReader("MZ not really"), "x.efi"); err == nil || l.Kind != "unknown" {
		t.Errorf("not a PE: %+v %v", l, err)
	}
	if p, err := grubPrefix(bytes.NewReader(makePE(peSec{"mods", grubMods("(memdisk)/EFI/debian")}))); err != nil || p != "/EFI/debian" {
		t.Errorf("grub prefix %q %v", p, err)
	}
	bad := grubMods("/x")
	binary.LittleEndian.PutUint32(bad[24+4:], 3) // first module's size below its header
	if _, err := grubPrefix(bytes.NewReader(makePE(peSec{"mods", bad}))); err == nil || !strings.Contains(err.Error(), "size 3") {
		t.Errorf("bad module size: %v", err)
	}
}

// TestClassifyEFIFixtures reads the loaders imgfab installs, from the fixtures' trees.
func TestClassifyEFIFixtures(t *testing.T) {
	for _, c := range []struct {
		path, script, kind, version string
	}{
		{"demo/root/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "mkdemo.sh", "systemd-boot", "252."},
		{"demo-uki/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "mkdemo-uki.sh", "unknown", ""},
		{"debian-sb/sb/usr/lib/shim/shimx64.efi.signed", "mkdebian-sb.sh", "shim", "1"},
		{"debian-sb/sb/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "mkdebian-sb.sh", "grub", "2."},
	} {
		f, err := os.Open(testtool.Fixture(t, c.path, c.script))
		if err != nil {
			t.Fatal(err)
		}
		l, err := classifyEFI(f, c.path)
		if err != nil || l.Kind != c.kind || !strings.HasPrefix(l.Version, c.version) || (c.version == "") != (l.Version == "") {
			t.Errorf("%s: %+v %v; want kind %s version %s…", c.path, l, err, c.kind, c.version)
		}
		if c.kind == "grub" {
			if p, err := grubPrefix(f); err != nil || p != "/EFI/debian" {
				t.Errorf("%s: prefix %q %v, want /EFI/debian", c.path, p, err)
			}
		}
		f.Close()
	}
}

func TestParseGRUBConfig(t *testing.T) {
	// imgfab's own BIOS grub.cfg round-trips: title, paths and options with quotes and backslashes.
	opts := `root=PARTUUID=x rw q='a' b\c "d"`
	cfg := bootloader.GRUBConfig(`It's "mine"`, bootloader.Entry{Linux: "/a b/linux", Initrd: "/i'1", Options: opts})
	e := parseGRUBConfig([]byte(cfg))
	if e == nil || e.Title != `It's "mine"` || e.Linux != "/a b/linux" || !slices.Equal(e.Initrd, []string{"/i'1"}) ||
		e.Options != strings.Join(strings.Fields(opts), " ") || e.Type != "grub" {
		t.Errorf("imgfab config:\n%s\n→ %+v", cfg, e)
	}
	debian := `### BEGIN /etc/grub.d/10_linux ###
function gfxmode {
	set gfxpayload="${1}"
}
# menuentry 'commented' { linux /no }
menuentry 'UEFI Firmware Settings' $menuentry_id_option 'uefi-firmware' {
	fwsetup
}
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux $menuentry_id_option 'gnulinux-simple-1234' {
	load_video
	if [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
	search --no-floppy --fs-uuid --set=root 1234
	echo	'Loading Linux 6.1.0-18-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-18-amd64 root=UUID=1234 ro  quiet # trailing comment
	initrd	/boot/intel-ucode.img /boot/initrd.img-6.1.0-18-amd64
}
submenu 'Advanced' {
	menuentry 'other' { linux /other x }
}
`
	e = parseGRUBConfig([]byte(debian))
	if e == nil || e.Title != "Debian GNU/Linux" || e.Linux != "/boot/vmlinuz-6.1.0-18-amd64" || e.Options != "root=UUID=1234 ro quiet" ||
		!slices.Equal(e.Initrd, []string{"/boot/intel-ucode.img", "/boot/initrd.img-6.1.0-18-amd64"}) {
		t.Errorf("debian config → %+v", e)
	}
	quoting := "menuentry \"A \\\"q\\\" \\$x\" {\n  linuxefi /vmlinuz a\\ b \"c d\" 'e'\\''f' \"g\\\\h\" \"line\\\ncont\"; initrdefi /i\n}\n"
	e = parseGRUBConfig([]byte(quoting))
	if e == nil || e.Title != `A "q" $x` || e.Linux != "/vmlinuz" || e.Options != `a b c d e'f g\h linecont` || !slices.Equal(e.Initrd, []string{"/i"}) {
		t.Errorf("quoting config → %+v", e)
	}
	// A menuentry's body ends at its closing brace: a linux line after it is not the entry's.
	if e := parseGRUBConfig([]byte("menuentry 'x' {\n echo\n}\nlinux /outside\n")); e != nil {
		t.Errorf("linux outside the entry taken: %+v", e)
	}
	for _, s := range []string{"", "set default=0\n", "menuentry {", "menuentry 'x' { linux", "'unterminated", "\"unterminated\\", "\\"} {
		if e := parseGRUBConfig([]byte(s)); e != nil {
			t.Errorf("%q → %+v, want none", s, e)
		}
	}
}

// sector0 is a sector 0 with GRUB's boot.img strings (grub-core/boot/i386/pc/boot.S) and its
// kernel sector at 0x5C.
func sector0(coreLBA uint64) []byte {
	s := make([]byte, 512)
	copy(s, []byte{0xEB, 0x63, 0x90})
	copy(s[0x180:], "GRUB \x00Geom\x00Hard Disk\x00Read\x00 Error\r\n\x00")
	binary.LittleEndian.PutUint64(s[0x5C:], coreLBA)
	s[510], s[511] = 0x55, 0xAA
	return s
}

// diskboot is diskboot.img's sector with a block list of the given lengths (from 0x1F4 down).
func diskboot(start uint64, lens ...uint16) []byte {
	s := make([]byte, 512)
	copy(s[0x11B:], "loading\x00.\x00\r\n\x00Geom\x00Read\x00 Error\x00")
	for i, n := range lens {
		e := s[0x1F4-12*i:]
		binary.LittleEndian.PutUint64(e, start)
		binary.LittleEndian.PutUint16(e[8:], n)
		binary.LittleEndian.PutUint16(e[10:], 0x820)
		start += uint64(n)
	}
	return s
}

// mbrSector is a sector 0 starting with code, with 0x55AA at 510.
func mbrSector(code ...byte) []byte {
	s := make([]byte, 512)
	copy(s, code)
	s[510], s[511] = 0x55, 0xAA
	return s
}

func TestReadBIOS(t *testing.T) {
	disk := func(s0 []byte, at int64, sec []byte) *bytes.Reader {
		b := make([]byte, 4<<20)
		copy(b, s0)
		copy(b[at*512:], sec)
		return bytes.NewReader(b)
	}
	size := int64(4 << 20)
	gpt := []Partition{{Number: 1, Type: "esp", Offset: 1 << 20, Size: 2 << 20}, {Number: 2, Type: "bios-boot", Offset: 34 * 512, Size: 2014 * 512}}
	mbr := []Partition{{Number: 1, Type: "esp", Offset: 1 << 20, Size: 2 << 20}}
	for _, c := range []struct {
		name  string
		r     io.ReaderAt
		kind  string
		parts []Partition
		want  *BIOSBoot
		err   string
	}{
		{"gpt bios boot partition", disk(sector0(34), 34, diskboot(35, 320)), "gpt", gpt, &BIOSBoot{"grub", 34, 321, "bios-boot-partition", 2}, ""},
		{"mbr gap", disk(sector0(1), 1, diskboot(2, 100, 20)), "mbr", mbr, &BIOSBoot{"grub", 1, 121, "mbr-gap", 0}, ""},
		{"inside the ESP", disk(sector0(2048), 2048, diskboot(2049, 10)), "mbr", mbr, &BIOSBoot{"grub", 2048, 11, "partition", 1}, ""},
		{"after the partitions", disk(sector0(7000), 7000, diskboot(7001, 10)), "gpt", gpt, &BIOSBoot{"grub", 7000, 11, "unpartitioned", 0}, ""},
		{"kernel sector not diskboot", disk(sector0(34), 0, nil), "gpt", gpt, &BIOSBoot{Loader: "grub", CoreLBA: 34}, "not GRUB's diskboot.img"},
		{"kernel sector past the end", disk(sector0(1<<40), 0, nil), "gpt", gpt, &BIOSBoot{Loader: "grub"}, "outside the 8192-sector disk"},
		{"other boot code", disk(mbrSector(0xFA, 0x33, 0xC0), 0, nil), "mbr", mbr, &BIOSBoot{Loader: "unknown"}, ""},
		{"no boot code", disk(mbrSector(), 0, nil), "gpt", gpt, nil, ""},
		{"no 0x55AA", disk(sector0(34)[:510], 34, diskboot(35, 1)), "gpt", gpt, nil, ""},
		{"whole-disk filesystem", disk(sector0(34), 34, diskboot(35, 1)), "none", nil, nil, ""},
	} {
		b, err := readBIOS(c.r, size, c.kind, c.parts)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		}
		if (b == nil) != (c.want == nil) || b != nil && *b != *c.want {
			t.Errorf("%s: %+v, want %+v", c.name, b, c.want)
		}
	}
}

// TestESPBootFiles: an ESP (mtools) with shim at BOOTX64.EFI and GRUB beside it whose prefix is
// /EFI/vendor, two grub.cfg, two UKIs in EFI/Linux and a kernel; readESP and resolveBoot pick the
// config the GRUB reads and read the kernel's version. Also checks fatFile.ReadAt against the bytes.
func TestESPBootFiles(t *testing.T) {
	mkfs := testtool.Need(t, "mkfs.vfat", "dosfstools")
	mcopy, mmd := testtool.Need(t, "mcopy", "mtools"), testtool.Need(t, "mmd", "mtools")
	dir := t.TempDir()
	img := filepath.Join(dir, "esp.img")
	run(t, mkfs, "-C", "-F", "12", "-n", "ESP", img, "4096")
	big := make([]byte, 70000)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	files := []struct {
		path string
		data []byte
	}{
		{"EFI/BOOT/BOOTX64.EFI", makePE(peSec{".sbat", []byte("sbat,1,SBAT Version,sbat,1,u\nshim,4,UEFI shim,shim,1,u\nshim.debian,1,Debian,shim,16.1,u\n")})},
		{"EFI/BOOT/grubx64.efi", makePE(peSec{"mods", grubMods("(memdisk)/EFI/vendor")}, peSec{".sbat", []byte("grub,5,FSF,grub,2.12,u\n")})},
		{"EFI/BOOT/grub.cfg", []byte("menuentry 'wrong' {\n linux /k/linux wrong\n}\n")},
		{"EFI/vendor/grub.cfg", []byte("set timeout=0\nmenuentry 'Vendor' {\n\tlinux /k/linux 'root=PARTUUID=ab-02' rw\n\tinitrd /k/initrd\n}\n")},
		{"EFI/Linux/a-1.efi", ukiPE("a=1", "1.0", "A")},
		{"EFI/Linux/b-2.efi", ukiPE("b=2", "2.0", "B")},
		{"loader/loader.conf", []byte("default b-*.efi\n")},
		{"k/linux", fakeKernel("6.6.6-test")},
		{"big.bin", big},
	}
	for _, d := range []string{"EFI", "EFI/BOOT", "EFI/vendor", "EFI/Linux", "loader", "k"} {
		run(t, mmd, "-i", img, "::/"+d)
	}
	for _, f := range files {
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, f.data, 0644); err != nil {
			t.Fatal(err)
		}
		run(t, mcopy, "-i", img, src, "::/"+f.path)
	}
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	boot, loader, err := readESP(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if loader != "systemd-boot" || boot.EFILoader == nil || boot.EFILoader.Kind != "shim" || boot.EFILoader.Version != "16.1" {
		t.Errorf("loader %q, efi loader %+v", loader, boot.EFILoader)
	}
	if len(boot.Entries) != 2 || boot.Entries[0].ID != "a-1" || boot.Entries[0].Default || !boot.Entries[1].Default ||
		boot.Entries[1].Options != "b=2" || boot.Entries[1].Version != "2.0" || boot.Entries[1].Title != "B" || boot.Entries[1].Linux != "/EFI/Linux/b-2.efi" {
		t.Errorf("UKI entries %+v", boot.Entries)
	}
	if len(boot.GRUB) != 2 || boot.GRUB[0].Path != "/EFI/BOOT/grub.cfg" || boot.GRUB[1].Path != "/EFI/vendor/grub.cfg" {
		t.Fatalf("grub configs %+v", boot.GRUB)
	}
	fat, err := openFAT(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	rep := Report{Boot: boot, Loader: loader}
	def := resolveBoot(&rep, nil, fat)
	if def == nil || def.Title != "Vendor" || def.Options != "root=PARTUUID=ab-02 rw" || def.Version != "6.6.6-test" || !def.Default ||
		!slices.Equal(def.Initrd, []string{"/k/initrd"}) || def.ID != "/EFI/vendor/grub.cfg" {
		t.Errorf("default entry %+v", def)
	}
	if rep.BootMode != "uefi" || !slices.Equal(rep.BootModes, []string{"uefi"}) || rep.UEFILoader != "shim" || rep.Loader != "shim" || rep.BIOSLoader != "" {
		t.Errorf("report: mode %q %q uefi %q bios %q loader %q", rep.BootMode, rep.BootModes, rep.UEFILoader, rep.BIOSLoader, rep.Loader)
	}
	if !slices.Equal(boot.GRUB[1].UsedBy, []string{"uefi"}) || boot.GRUB[0].UsedBy != nil {
		t.Errorf("used by: %+v", boot.GRUB)
	}

	// fatFile reads any range, across clusters, and stops at the file's size.
	ff, err := fat.open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{0, 1}, {0, 70000}, {2047, 2}, {2048, 4096}, {5000, 30001}, {69990, 10}, {69999, 1}} {
		got := make([]byte, r[1])
		if n, err := ff.ReadAt(got, int64(r[0])); n != r[1] || err != nil || !bytes.Equal(got, big[r[0]:r[0]+r[1]]) {
			t.Errorf("ReadAt [%d, +%d): n %d err %v, bytes match %v", r[0], r[1], n, err, bytes.Equal(got, big[r[0]:r[0]+r[1]]))
		}
	}
	got := make([]byte, 20)
	if n, err := ff.ReadAt(got, 69990); n != 10 || err != io.EOF || !bytes.Equal(got[:10], big[69990:]) {
		t.Errorf("ReadAt past the end: n %d err %v", n, err)
	}
	if n, err := ff.ReadAt(got, 80000); n != 0 || err != io.EOF {
		t.Errorf("ReadAt beyond: n %d err %v", n, err)
	}
	if _, err := fat.open("EFI"); err == nil {
		t.Error("open a directory: no error")
	}
}
