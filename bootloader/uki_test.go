package bootloader

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/rootfs"
)

// ukiTree is the staged root of the demo-uki fixture (testdata/mkdemo-uki.sh): the demo's kernel,
// initrd and os-release with the real systemd stub of Debian 12.
func ukiTree(t *testing.T) fs.FS {
	t.Helper()
	stub := testtool.Fixture(t, filepath.Join("demo-uki", "root", UKIStubPaths[0]), "mkdemo-uki.sh")
	return os.DirFS(strings.TrimSuffix(stub, UKIStubPaths[0]))
}

// ukiOverlay is fs.FS a with the files of b on top.
type ukiOverlay struct{ a, b fs.FS }

func (o ukiOverlay) Open(name string) (fs.File, error) {
	if f, err := o.b.Open(name); err == nil {
		return f, nil
	}
	return o.a.Open(name)
}

func readSpec(t *testing.T, f FileSpec) []byte {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Small reads exercise the reader's part boundaries.
	var out bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := rc.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if int64(out.Len()) != f.Size {
		t.Fatalf("%s: read %d bytes, FileSpec.Size %d", f.Path, out.Len(), f.Size)
	}
	return out.Bytes()
}

func planUKI(t *testing.T, tree fs.FS) ([]FileSpec, Entry, rootfs.Kernel) {
	t.Helper()
	k, err := rootfs.FindKernel(tree)
	if err != nil {
		t.Fatal(err)
	}
	files, e, err := PlanUKI(Config{Tree: tree, Kernel: k, Options: "root=PARTUUID=x rw console=ttyS0 imgfab.test"})
	if err != nil {
		t.Fatal(err)
	}
	return files, e, k
}

func TestUKILayout(t *testing.T) {
	tree := ukiTree(t)
	files, e, k := planUKI(t, tree)
	if len(files) != 1 || files[0].Path != "/EFI/BOOT/BOOTX64.EFI" || e.Linux != "/EFI/BOOT/BOOTX64.EFI" {
		t.Fatalf("without systemd-boot the UKI should be the only file, at the fallback path: %v %+v", e.Files, e)
	}
	img := readSpec(t, files[0])
	path := filepath.Join(t.TempDir(), "uki.efi")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	pf, err := pe.Open(path)
	if err != nil {
		t.Fatalf("debug/pe cannot read the UKI: %v", err)
	}
	defer pf.Close()
	opt := pf.OptionalHeader.(*pe.OptionalHeader64)
	if opt.CheckSum != 0 {
		t.Errorf("CheckSum %#x, want 0", opt.CheckSum)
	}
	if opt.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		t.Errorf("Subsystem %d", opt.Subsystem)
	}
	want := map[string][]byte{
		".cmdline": []byte("root=PARTUUID=x rw console=ttyS0 imgfab.test"),
		".uname":   []byte(k.Version),
	}
	want[".osrel"], _ = fs.ReadFile(tree, "etc/os-release")
	want[".initrd"], _ = fs.ReadFile(tree, k.Initrd)
	want[".linux"], _ = fs.ReadFile(tree, k.Linux)
	seen := map[string]*pe.Section{}
	var order []string
	var vEnd uint32
	vsize := func(s *pe.Section) uint32 {
		if s.VirtualSize == 0 {
			return s.Size
		}
		return s.VirtualSize
	}
	stubSections := len(pf.Sections) - 5
	for i, s := range pf.Sections {
		seen[s.Name] = s
		order = append(order, s.Name)
		if i < stubSections { // the stub's own layout is its own (Debian's .sdmagic sits at 0x19100)
			vEnd = max(vEnd, s.VirtualAddress+vsize(s))
			continue
		}
		if s.VirtualAddress%opt.SectionAlignment != 0 {
			t.Errorf("%s: VirtualAddress %#x not a multiple of SectionAlignment %#x", s.Name, s.VirtualAddress, opt.SectionAlignment)
		}
		if s.Offset%opt.FileAlignment != 0 || s.Size%opt.FileAlignment != 0 {
			t.Errorf("%s: raw data %#x+%#x not aligned to FileAlignment %#x", s.Name, s.Offset, s.Size, opt.FileAlignment)
		}
		for _, o := range pf.Sections[:i] {
			if s.VirtualAddress < o.VirtualAddress+vsize(o) && o.VirtualAddress < s.VirtualAddress+vsize(s) {
				t.Errorf("%s and %s overlap in memory", o.Name, s.Name)
			}
			if s.Size > 0 && o.Size > 0 && s.Offset < o.Offset+o.Size && o.Offset < s.Offset+s.Size {
				t.Errorf("%s and %s overlap in the file", o.Name, s.Name)
			}
		}
		if s.Offset+s.Size > uint32(len(img)) {
			t.Errorf("%s: raw data past the end of the file", s.Name)
		}
		vEnd = max(vEnd, s.VirtualAddress+vsize(s))
	}
	if got := (vEnd + opt.SectionAlignment - 1) / opt.SectionAlignment * opt.SectionAlignment; opt.SizeOfImage != got {
		t.Errorf("SizeOfImage %#x, want %#x", opt.SizeOfImage, got)
	}
	if int(pf.NumberOfSections) != len(pf.Sections) {
		t.Errorf("NumberOfSections %d", pf.NumberOfSections)
	}
	if got := strings.Join(order[len(order)-5:], " "); got != ".osrel .cmdline .uname .initrd .linux" {
		t.Errorf("new sections in order %q", got)
	}
	if seen[".sbat"] == nil || seen[".text"] == nil {
		t.Errorf("stub sections lost: %v", order)
	}
	for name, data := range want {
		s := seen[name]
		if s == nil {
			t.Errorf("no %s section", name)
			continue
		}
		got := img[s.Offset : s.Offset+uint32(len(data))]
		if !bytes.Equal(got, data) {
			t.Errorf("%s content differs", name)
		}
		if name != ".linux" && s.VirtualSize != uint32(len(data)) {
			t.Errorf("%s VirtualSize %d, want %d", name, s.VirtualSize, len(data))
		}
		wantChars := uint32(pe.IMAGE_SCN_CNT_INITIALIZED_DATA | pe.IMAGE_SCN_MEM_READ)
		if name == ".linux" {
			wantChars = pe.IMAGE_SCN_CNT_CODE | pe.IMAGE_SCN_MEM_READ
		}
		if s.Characteristics != wantChars {
			t.Errorf("%s Characteristics %#x, want %#x", name, s.Characteristics, wantChars)
		}
	}
	kf, err := pe.NewFile(bytes.NewReader(want[".linux"]))
	if err != nil {
		t.Fatal(err)
	}
	if ks := kf.OptionalHeader.(*pe.OptionalHeader64).SizeOfImage; seen[".linux"].VirtualSize != max(ks, uint32(len(want[".linux"]))) {
		t.Errorf(".linux VirtualSize %#x, kernel SizeOfImage %#x", seen[".linux"].VirtualSize, ks)
	}
	checkObjdump(t, path, pf)
}

// checkObjdump compares `objdump -h` (binutils, an independent PE reader) with debug/pe.
func checkObjdump(t *testing.T, path string, pf *pe.File) {
	objdump := testtool.Need(t, "objdump", "binutils")
	out, err := exec.Command(objdump, "-h", path).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -h: %v\n%s", err, out)
	}
	// Lines: "  6 .sbat  000000e2  0000000000019000  0000000000019000  00011000  2**2"
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 7 || !strings.HasPrefix(f[6], "2**") {
			continue
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx >= len(pf.Sections) {
			t.Errorf("objdump line %q", line)
			continue
		}
		s := pf.Sections[idx]
		size, _ := strconv.ParseUint(f[2], 16, 64)
		vma, _ := strconv.ParseUint(f[3], 16, 64)
		off, _ := strconv.ParseUint(f[5], 16, 64)
		if f[1] != s.Name || vma != uint64(s.VirtualAddress)+pf.OptionalHeader.(*pe.OptionalHeader64).ImageBase || off != uint64(s.Offset) {
			t.Errorf("objdump: %q; debug/pe: %s va %#x off %#x", line, s.Name, s.VirtualAddress, s.Offset)
		}
		// objdump shows min(VirtualSize, SizeOfRawData) for sections with raw data.
		if size != uint64(min(s.VirtualSize, s.Size)) && size != uint64(s.VirtualSize) {
			t.Errorf("objdump size %#x for %s (VirtualSize %#x, raw %#x)", size, s.Name, s.VirtualSize, s.Size)
		}
		n++
	}
	if n != len(pf.Sections) {
		t.Errorf("objdump lists %d sections, debug/pe %d:\n%s", n, len(pf.Sections), out)
	}
}

func TestUKIReproducible(t *testing.T) {
	tree := ukiTree(t)
	a, _, _ := planUKI(t, tree)
	b, _, _ := planUKI(t, tree)
	if sha256.Sum256(readSpec(t, a[0])) != sha256.Sum256(readSpec(t, b[0])) {
		t.Fatal("two UKIs from the same inputs differ")
	}
}

func TestUKIWithSystemdBoot(t *testing.T) {
	tree := ukiOverlay{ukiTree(t), fstest.MapFS{
		"usr/lib/systemd/boot/efi/systemd-bootx64.efi": {Data: []byte("MZ fake systemd-boot"), Mode: 0o644},
	}}
	files, e, k := planUKI(t, tree)
	wantUKI := "/EFI/Linux/imgfab-" + k.Version + ".efi"
	if e.Linux != wantUKI || e.Loader != "/EFI/BOOT/BOOTX64.EFI" {
		t.Fatalf("entry %+v", e)
	}
	got := map[string]FileSpec{}
	for _, f := range files {
		got[f.Path] = f
	}
	for _, p := range []string{"/EFI/BOOT/BOOTX64.EFI", "/EFI/systemd/systemd-bootx64.efi", wantUKI, "/loader/loader.conf"} {
		if _, ok := got[p]; !ok {
			t.Errorf("no %s in %v", p, e.Files)
		}
	}
	if conf := string(readSpec(t, got["/loader/loader.conf"])); !strings.Contains(conf, "default imgfab-"+k.Version+".efi\n") {
		t.Errorf("loader.conf:\n%s", conf)
	}
	if b := readSpec(t, got["/EFI/BOOT/BOOTX64.EFI"]); string(b) != "MZ fake systemd-boot" {
		t.Errorf("BOOTX64.EFI is not systemd-boot")
	}
}

func TestUKIErrors(t *testing.T) {
	tree := ukiTree(t)
	k, err := rootfs.FindKernel(tree)
	if err != nil {
		t.Fatal(err)
	}
	// No stub.
	_, _, err = PlanUKI(Config{Tree: fstest.MapFS{"boot/vmlinuz-1": {Data: []byte("x")}}, Kernel: k})
	var nf *StubNotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "/usr/lib/systemd/boot/efi/linuxx64.efi.stub") {
		t.Errorf("no stub: %v", err)
	}
	// A stub whose headers leave room for fewer than 5 more section headers.
	stub, err := fs.ReadFile(tree, UKIStubPaths[0])
	if err != nil {
		t.Fatal(err)
	}
	pf, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		t.Fatal(err)
	}
	peOff := binary.LittleEndian.Uint32(stub[0x3c:])
	secTable := peOff + 24 + uint32(pf.SizeOfOptionalHeader)
	tight := bytes.Clone(stub)
	binary.LittleEndian.PutUint32(tight[peOff+24+60:], secTable+uint32(len(pf.Sections)+2)*40) // SizeOfHeaders
	_, _, err = PlanUKI(Config{Tree: ukiOverlay{tree, fstest.MapFS{UKIStubPaths[0]: {Data: tight, Mode: 0o644}}}, Kernel: k})
	if err == nil || !strings.Contains(err.Error(), "room for 2 more section headers") {
		t.Errorf("tight stub: %v", err)
	}
	// A kernel that is not a PE image.
	_, _, err = PlanUKI(Config{Tree: ukiOverlay{tree, fstest.MapFS{k.Linux: {Data: bytes.Repeat([]byte{1}, 5000), Mode: 0o644}}}, Kernel: k})
	if err == nil || !strings.Contains(err.Error(), "CONFIG_EFI_STUB") {
		t.Errorf("non-PE kernel: %v", err)
	}
}
