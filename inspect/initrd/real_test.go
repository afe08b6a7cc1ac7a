package initrd

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// realInitrd is the one initrd.img-VER in the fixture directory rel, and VER.
func realInitrd(t *testing.T, rel, script string) (string, string) {
	dir := testtool.Fixture(t, rel, script)
	m, _ := filepath.Glob(filepath.Join(dir, "initrd.img-*"))
	if len(m) != 1 {
		t.Fatalf("%s: want one initrd.img-*, found %q", dir, m)
	}
	return m[0], strings.TrimPrefix(filepath.Base(m[0]), "initrd.img-")
}

// decompressed is what a real tool (`gzip -dc`, `zstd -dc`) makes of file.
func decompressed(t *testing.T, tool, pkg string, file string) []byte {
	out, err := exec.Command(testtool.Need(t, tool, pkg), "-dc", file).Output()
	if err != nil {
		t.Fatalf("%s -dc %s: %v", tool, file, err)
	}
	return out
}

// names lists every entry of the initrd file with our reader.
func names(t *testing.T, file string) []string {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := NewReader(f)
	var out []string
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Name)
	}
}

func summarizeFile(t *testing.T, file string) *Summary {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Summarize(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// oracleModules are the module names in a `cpio -it` listing: the base names of *.ko files,
// '-' as '_' (computed here, not with moduleName).
func oracleModules(names []string) []string {
	var mods []string
	for _, n := range names {
		if b := filepath.Base(n); strings.HasSuffix(b, ".ko") {
			mods = append(mods, strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_"))
		}
	}
	slices.Sort(mods)
	return slices.Compact(mods)
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: %d, want %d\n got %q\nwant %q", what, len(got), len(want), head(got), head(want))
	}
}

func head(s []string) []string { return s[:min(len(s), 20)] }

// TestDebianInitrd reads Debian 12's generic initrd (initramfs-tools, gzip) and checks it against
// `gzip -dc | cpio -it`: every name, the modules, modules.builtin, the kernel version.
func TestDebianInitrd(t *testing.T) {
	file, ver := realInitrd(t, "debian/layer1/boot", "mkdebian.sh")
	archive := decompressed(t, "gzip", "gzip", file)
	oracle := cpioNames(t, archive)
	equal(t, "names", names(t, file), oracle)

	s := summarizeFile(t, file)
	equal(t, "segments", s.Segments, []string{"gzip"})
	equal(t, "modules", s.Modules, oracleModules(oracle))
	equal(t, "kernel versions", s.KernelVersions, []string{ver})
	for _, m := range []string{"nvme", "virtio_scsi", "virtio_blk", "ext4", "ena", "hv_storvsc", "xen_blkfront"} {
		if _, ok := slices.BinarySearch(s.Modules, m); !ok {
			t.Errorf("module %s not found", m)
		}
	}
	if s.Files != len(oracle) {
		t.Errorf("Files %d, cpio lists %d", s.Files, len(oracle))
	}
	for _, p := range []string{"init", "usr/sbin/modprobe", "/usr/lib/modules/" + ver + "/modules.dep"} {
		if !s.Has(p) {
			t.Errorf("Has(%q) false", p)
		}
	}

	// modules.builtin as cpio extracts it.
	cmd := exec.Command(testtool.Need(t, "cpio", "cpio"), "--quiet", "-i", "--to-stdout", "usr/lib/modules/"+ver+"/modules.builtin")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -i modules.builtin: %v", err)
	}
	equal(t, "builtin", s.Builtin, oracleModules(strings.Fields(string(out))))
	if len(s.Builtin) < 50 {
		t.Errorf("only %d builtin modules", len(s.Builtin))
	}
	t.Logf("%s: segments %q, %d entries, %d modules, %d builtin, kernel %q", file, s.Segments, s.Files, len(s.Modules), len(s.Builtin), s.KernelVersions)
}

// TestDemoInitrd reads the demo's busybox initramfs (cpio | gzip -9n, modules flat in lib/modules).
func TestDemoInitrd(t *testing.T) {
	file, _ := realInitrd(t, "demo/root/boot", "mkdemo.sh")
	oracle := cpioNames(t, decompressed(t, "gzip", "gzip", file))
	equal(t, "names", names(t, file), oracle)
	s := summarizeFile(t, file)
	equal(t, "segments", s.Segments, []string{"gzip"})
	equal(t, "modules", s.Modules, []string{"crc16", "crc32c_generic", "ext4", "jbd2", "mbcache", "virtio", "virtio_blk",
		"virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring"})
	equal(t, "kernel versions", s.KernelVersions, nil)
	if !s.Has("init") || !s.Has("bin/busybox") {
		t.Error("no init or bin/busybox")
	}
	t.Logf("%s: segments %q, %d entries, %d modules", file, s.Segments, s.Files, len(s.Modules))
}

// TestZstdInitrd reads the early-microcode layout made by testdata/mkinitrd-zstd.sh with the real
// tools (an uncompressed cpio, then Debian's archive as zstd -19), made here from the Debian
// fixture when it is missing, and checks it against `zstd -dc` of its second segment | cpio -it.
func TestZstdInitrd(t *testing.T) {
	debian, _ := realInitrd(t, "debian/layer1/boot", "mkdebian.sh")
	file := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(debian)))), "initrd-zstd", "initrd.img")
	if _, err := os.Stat(file); err != nil { // the fixture step: ~50 s, once
		for _, tool := range []string{"cpio", "gzip", "zstd"} {
			testtool.Need(t, tool, tool)
		}
		if out, err := exec.Command("sh", "../../testdata/mkinitrd-zstd.sh").CombinedOutput(); err != nil {
			t.Fatalf("testdata/mkinitrd-zstd.sh: %v\n%s", err, out)
		}
	}
	s := summarizeFile(t, file)
	equal(t, "segments", s.Segments, []string{"none", "zstd"})
	if !s.Has("kernel/x86/microcode/GenuineIntel.bin") {
		t.Error("no early microcode")
	}
	equal(t, "modules", s.Modules, summarizeFile(t, debian).Modules)

	// The oracle: cpio -it of the early archive, then of zstd -dc of the rest (cpio pads to 512).
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte{0x28, 0xb5, 0x2f, 0xfd})
	if i < 0 || i%512 != 0 {
		t.Fatalf("zstd magic at %d", i)
	}
	cmd := exec.Command(testtool.Need(t, "zstd", "zstd"), "-dc")
	cmd.Stdin = bytes.NewReader(b[i:])
	main, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd -dc: %v", err)
	}
	equal(t, "names", names(t, file), append(cpioNames(t, b[:i]), cpioNames(t, main)...))
	t.Logf("%s: segments %q, %d entries, %d modules", file, s.Segments, s.Files, len(s.Modules))
}
