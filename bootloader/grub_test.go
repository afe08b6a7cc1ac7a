package bootloader

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/ulikunitz/xz/lzma"

	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs"
)

// The demo-bios fixture (testdata/mkdemo-bios.sh): the demo root tree plus a layer with
// /usr/lib/grub/i386-pc/ and an initramfs that also resolves MBR PARTUUIDs.
var (
	grubDemoRoot = filepath.Join("..", "testdata", "cache", "demo", "root")
	grubBiosRoot = filepath.Join("..", "testdata", "cache", "demo-bios", "bios")
)

// grubOverlay is the fixture's two layers as one tree: upper first, then lower (no whiteouts needed).
type grubOverlay struct{ upper, lower fs.FS }

func (o grubOverlay) Open(name string) (fs.File, error) {
	f, err := o.upper.Open(name)
	if err == nil {
		return f, nil
	}
	return o.lower.Open(name)
}

func grubDemoTree(t *testing.T) (fs.FS, rootfs.Kernel) {
	t.Helper()
	testtool.Fixture(t, filepath.Join("demo-bios", "bios", GRUBBIOSDir, "kernel.img"), "mkdemo-bios.sh")
	kver, err := os.ReadFile(filepath.Join(grubDemoRoot, "..", "kver"))
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(kver))
	return grubOverlay{os.DirFS(grubBiosRoot), os.DirFS(grubDemoRoot)},
		rootfs.Kernel{Version: v, Linux: "boot/vmlinuz-" + v, Initrd: "boot/initrd.img-" + v}
}

func TestResolveModules(t *testing.T) {
	moddep := "a: b c\nb: d\nc: d e\nd:\ne:\nf: a\n"
	got, err := ResolveModules(strings.NewReader(moddep), []string{"a", "e", "f.mod"})
	if err != nil {
		t.Fatal(err)
	}
	// util/resolve.c: dependencies last-listed first, depth first, each before its user.
	if want := "e d c b a f"; strings.Join(got, " ") != want {
		t.Fatalf("order %q, want %q", strings.Join(got, " "), want)
	}
	if _, err := ResolveModules(strings.NewReader(moddep), []string{"nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown module: %v", err)
	}
	if _, err := ResolveModules(strings.NewReader("a: b\nb: a\n"), []string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("a cycle must be an error: %v", err)
	}
}

// decodeGRUBLZMA decodes a raw LZMA stream of core.img (no header) of size n.
func decodeGRUBLZMA(t *testing.T, raw []byte, n int) []byte {
	t.Helper()
	h := make([]byte, lzma.HeaderLen)
	h[0] = (2*5+0)*9 + 3 // properties byte: (pb·5 + lp)·9 + lc
	binary.LittleEndian.PutUint32(h[1:], 1<<16)
	binary.LittleEndian.PutUint64(h[5:], uint64(n))
	r, err := lzma.NewReader(io.MultiReader(bytes.NewReader(h), bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding LZMA: %v", err)
	}
	return out
}

func TestGRUBLZMARoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	in := make([]byte, 300_000)
	for i := range in {
		if i%3 == 0 {
			in[i] = byte(rnd.Intn(256))
		} else {
			in[i] = byte("GRUB core "[i%10])
		}
	}
	c, err := grubLZMA(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) >= len(in) {
		t.Fatalf("no compression: %d → %d", len(in), len(c))
	}
	if got := decodeGRUBLZMA(t, c, len(in)); !bytes.Equal(got, in) {
		t.Fatal("LZMA stream does not decode to its input")
	}
}

// TestCoreMatchesGrubMkimage builds core.img in Go and with grub-mkimage (test oracle only) from the
// fixture's /usr/lib/grub/i386-pc with the same modules, config and prefix. The LZMA encoders differ,
// so the compressed bytes and the fields holding their length differ; everything else, and what the
// streams decode to, must be identical.
func TestCoreMatchesGrubMkimage(t *testing.T) {
	mkimage := testtool.Need(t, "grub-mkimage", "grub-common")
	tree, _ := grubDemoTree(t)
	dir, _ := fs.Sub(tree, GRUBBIOSDir)
	tmp := t.TempDir()
	cfg := "search --no-floppy --label --set=root 'ESP'\nset prefix=($root)/grub\n"
	cfgPath := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(tmp, "core.img")
	args := append([]string{"-O", "i386-pc", "-d", filepath.Join(grubBiosRoot, GRUBBIOSDir), "-p", "/grub", "-c", cfgPath, "-o", ref}, GRUBBIOSModules...)
	if out, err := exec.Command(mkimage, args...).CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage: %v\n%s", err, out)
	}
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := BuildCore(dir, CoreOptions{Modules: GRUBBIOSModules, Config: cfg, Prefix: "/grub"})
	if err != nil {
		t.Fatal(err)
	}
	decomp, _ := fs.ReadFile(dir, "lzma_decompress.img")
	d := len(decomp)
	split := func(core []byte) (boot, dec, comp []byte) { return core[:512], core[512 : 512+d], core[512+d:] }
	gb, gd, gc := split(got)
	wb, wd, wc := split(want)
	// diskboot.img: only the first block list entry's sector count (0x1FC) may differ.
	if !bytes.Equal(gb[:0x1fc], wb[:0x1fc]) || !bytes.Equal(gb[0x1fe:], wb[0x1fe:]) {
		t.Error("diskboot.img sector differs from grub-mkimage's beyond the sector count")
	}
	if n := binary.LittleEndian.Uint16(gb[0x1fc:]); int(n) != (d+len(gc)+511)/512 {
		t.Errorf("block list sector count %d, want %d", n, (d+len(gc)+511)/512)
	}
	// lzma_decompress.img: only the compressed size (0x08) may differ.
	if !bytes.Equal(gd[:8], wd[:8]) || !bytes.Equal(gd[12:], wd[12:]) {
		t.Error("decompressor differs from grub-mkimage's beyond the compressed size")
	}
	if n := binary.LittleEndian.Uint32(gd[8:]); int(n) != len(gc) {
		t.Errorf("compressed size field %d, stream is %d", n, len(gc))
	}
	// grub-mkimage's stream has no end marker but may be followed by nothing; both decode to the
	// uncompressed size recorded at 0x0C.
	un := int(binary.LittleEndian.Uint32(wd[12:]))
	gp, wp := decodeGRUBLZMA(t, gc, un), decodeGRUBLZMA(t, wc[:binary.LittleEndian.Uint32(wd[8:])], un)
	if !bytes.Equal(gp, wp) {
		i := 0
		for i < len(gp) && gp[i] == wp[i] {
			i++
		}
		t.Fatalf("decoded payloads differ at byte %#x of %#x", i, len(gp))
	}
	t.Logf("core.img: ours %d bytes, grub-mkimage %d; payload %d bytes; %d modules", len(got), len(want), un, len(GRUBBIOSModules))
}

func TestInstallGRUBBIOS(t *testing.T) {
	boot := make([]byte, 512)
	for i := range boot {
		boot[i] = 0xAB
	}
	core := make([]byte, 512*3+100)
	for i := range core {
		core[i] = 0xCD
	}
	g := GRUBBIOS{Boot: boot, Core: core}
	disk := make([]byte, 64*512)
	for i := range disk[:512] {
		disk[i] = 0x11 // what a partition table writer left in sector 0
	}
	w := &grubMemDisk{disk}
	if err := InstallGRUBBIOS(w, g, 34, 30); err != nil {
		t.Fatal(err)
	}
	s0 := disk[:512]
	if binary.LittleEndian.Uint64(s0[0x5c:]) != 34 || s0[0x64] != 0xFF || s0[0x66] != 0x90 || s0[0x67] != 0x90 {
		t.Errorf("boot.img fields: sector %d drive %#x check %x", binary.LittleEndian.Uint64(s0[0x5c:]), s0[0x64], s0[0x66:0x68])
	}
	for i, b := range s0 {
		kept := (i >= 3 && i < 0x5a) || i >= 0x1b8
		if kept && b != 0x11 {
			t.Fatalf("byte %#x of sector 0 written (BPB / partition table area)", i)
		}
		if !kept && b == 0x11 {
			t.Fatalf("byte %#x of sector 0 not written", i)
		}
	}
	c := disk[34*512:]
	if binary.LittleEndian.Uint64(c[0x1f4:]) != 35 || binary.LittleEndian.Uint16(c[0x1fc:]) != 3 || binary.LittleEndian.Uint16(c[0x1fe:]) != 0x820 {
		t.Errorf("block list: start %d len %d seg %#x", binary.LittleEndian.Uint64(c[0x1f4:]), binary.LittleEndian.Uint16(c[0x1fc:]), binary.LittleEndian.Uint16(c[0x1fe:]))
	}
	if !bytes.Equal(c[0x1e8:0x1f4], make([]byte, 12)) {
		t.Error("block list terminator not zero")
	}
	if g.Sectors() != 4 || c[4*512-1] != 0 || c[3*512+99] != 0xCD {
		t.Error("core.img not written whole, padded to a sector")
	}
	if err := InstallGRUBBIOS(w, g, 1, 3); err == nil || !strings.Contains(err.Error(), "needs 4 sectors") {
		t.Errorf("too small a gap: %v", err)
	}
}

type grubMemDisk struct{ b []byte }

func (m *grubMemDisk) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write past the end")
	}
	return copy(m.b[off:], p), nil
}

func TestHasGRUBBIOSAndConfig(t *testing.T) {
	if HasGRUBBIOS(fstest.MapFS{"usr/lib/grub/i386-pc/kernel.img": {}}) {
		t.Error("a lone kernel.img is not GRUB")
	}
	if _, err := PlanGRUBBIOS(fstest.MapFS{}, Entry{Linux: "/l"}, "ESP"); !errors.As(err, new(*MissingGRUBFileError)) {
		t.Errorf("no GRUB in the tree: %v", err)
	}
	cfg := GRUBConfig("Demo 'x'", Entry{Linux: "/imgfab/1/linux", Initrd: "/imgfab/1/initrd", Options: "root=PARTUUID=ab rw  console=ttyS0"})
	for _, want := range []string{"set timeout=0", "terminal_output serial console", `menuentry 'Demo '\''x'\''' {`,
		"\tlinux '/imgfab/1/linux' 'root=PARTUUID=ab' 'rw' 'console=ttyS0'\n", "\tinitrd '/imgfab/1/initrd'\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
}

// grubMakeDisk builds a demo disk in Go: GPT with a BIOS boot partition, the ESP (label ESP: systemd-boot,
// kernel, initrd, grub.cfg) and an ext4 root made by mke2fs -d from the demo root; or, with mbr, an
// MBR table with the ESP (active) and root, core.img in the gap after sector 0.
func grubMakeDisk(t *testing.T, path string, mbr bool) partition.Layout {
	t.Helper()
	mke2fs := testtool.Need(t, "mke2fs", "e2fsprogs")
	tree, k := grubDemoTree(t)
	seed := []byte("grub-bios-test")
	specs := []partition.Spec{
		{Name: "esp", Type: partition.TypeESP, GUID: partition.DeriveGUID(seed, "esp"), Size: 64 * partition.MiB},
		{Name: "root-x86-64", Type: partition.TypeRootX86_64, GUID: partition.DeriveGUID(seed, "root"), Size: 64 * partition.MiB},
	}
	if !mbr {
		specs = append([]partition.Spec{{Name: "bios", Type: partition.TypeBIOSBoot, GUID: partition.DeriveGUID(seed, "bios"), Size: partition.MiB}}, specs...)
	}
	l, err := partition.Plan(0, partition.DeriveGUID(seed, "disk"), specs)
	if err != nil {
		t.Fatal(err)
	}
	esp, root := l.Partitions[len(l.Partitions)-2], l.Partitions[len(l.Partitions)-1]
	sig := partition.DiskSignature(seed)
	rootID := strings.ToLower(root.GUID)
	if mbr {
		rootID = partition.MBRPartUUID(sig, 2)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-d", grubDemoRoot, "-E", "offset="+grubItoa(root.Offset),
		path, grubItoa(root.Size/1024)+"k").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	cfg := Config{Tree: tree, Kernel: k, Options: "root=PARTUUID=" + rootID + " rw console=ttyS0 imgfab.test",
		Epoch: time.Unix(1700000000, 0)}
	files, e, err := PlanSystemdBoot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := PlanGRUBBIOS(tree, e, "ESP")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, g.Config)
	if err := WriteESP(context.Background(), f, esp.Offset, esp.Size, "ESP", cfg.Serial, cfg.Epoch, files); err != nil {
		t.Fatal(err)
	}
	if mbr {
		if err := partition.WriteMBR(f, l, sig, 0); err != nil {
			t.Fatal(err)
		}
		if err := InstallGRUBBIOS(f, g, 1, partition.Head/partition.SectorSize-1); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if err := InstallGRUBBIOS(f, g, l.Partitions[0].Offset/partition.SectorSize, l.Partitions[0].Size/partition.SectorSize); err != nil {
		t.Fatal(err)
	}
	if err := partition.WriteGPT(f, l); err != nil {
		t.Fatal(err)
	}
	return l
}

func grubItoa(n int64) string { return strconv.FormatInt(n, 10) }

// grubBoot runs qemu on disk under SeaBIOS (-machine pc), or OVMF with uefi, and returns the serial log.
func grubBoot(t *testing.T, disk string, uefi bool) string {
	t.Helper()
	qemu := testtool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	dir := t.TempDir()
	log := filepath.Join(dir, "serial.log")
	args := []string{"-machine", "pc", "-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-no-reboot",
		"-nic", "none", "-monitor", "none", "-serial", "file:" + log,
		"-drive", "if=virtio,format=raw,file=" + disk + ",snapshot=on"}
	if uefi {
		code, vars := "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
		b, err := os.ReadFile(vars)
		if err != nil {
			t.Fatalf("%v (apt-get install ovmf)", err)
		}
		v := filepath.Join(dir, "vars.fd")
		if err := os.WriteFile(v, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args[1] = "q35"
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+code, "-drive", "if=pflash,format=raw,file="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, args...).CombinedOutput()
	serial, _ := os.ReadFile(log)
	s := string(serial)
	if ctx.Err() != nil || err != nil {
		t.Fatalf("qemu: %v (timeout: %v)\n%s\nserial tail:\n%s", err, ctx.Err() != nil, out, grubLastN(s, 3000))
	}
	return s
}

func grubLastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func grubWantBooted(t *testing.T, serial string) {
	t.Helper()
	if !strings.Contains(serial, "IMGFAB-BOOT-OK") || strings.Contains(serial, "IMGFAB-BOOT-FAIL") {
		t.Fatalf("no IMGFAB-BOOT-OK; serial tail:\n%s", grubLastN(serial, 3000))
	}
}

// TestBIOSBootGPT: one GPT disk (BIOS boot + ESP + root) boots under SeaBIOS through GRUB and under
// OVMF through systemd-boot; sgdisk -v finds no problem; two builds are identical.
func TestBIOSBootGPT(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu")
	}
	sgdisk := testtool.Need(t, "sgdisk", "gdisk")
	dir := t.TempDir()
	disk := filepath.Join(dir, "gpt.raw")
	l := grubMakeDisk(t, disk, false)
	if out, err := exec.Command(sgdisk, "-v", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	out, _ := exec.Command(sgdisk, "-i", "1", disk).CombinedOutput()
	if !strings.Contains(string(out), partition.TypeBIOSBoot) {
		t.Errorf("partition 1 is not a BIOS boot partition:\n%s", out)
	}
	again := filepath.Join(dir, "gpt2.raw")
	grubMakeDisk(t, again, false)
	// mke2fs (the test's stand-in for imgfab's ext4 writer) is not reproducible; the rest must be.
	root := l.Partitions[len(l.Partitions)-1]
	if !grubSameFiles(t, disk, again, root.Offset, root.End()) {
		t.Error("two builds of the same disk differ outside the root filesystem")
	}
	t.Run("seabios", func(t *testing.T) {
		s := grubBoot(t, disk, false)
		grubWantBooted(t, s)
		if !strings.Contains(s, "Booting") && !strings.Contains(s, "GRUB") {
			t.Logf("serial log does not show GRUB's own lines (fine if the kernel booted)")
		}
	})
	t.Run("ovmf", func(t *testing.T) { grubWantBooted(t, grubBoot(t, disk, true)) })
}

// TestBIOSBootMBR: an MBR disk (ESP active + root, core.img in the gap) boots under SeaBIOS with an
// MBR root=PARTUUID=SSSSSSSS-02; sfdisk reads the table back as written.
func TestBIOSBootMBR(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu")
	}
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	disk := filepath.Join(t.TempDir(), "mbr.raw")
	grubMakeDisk(t, disk, true)
	out, err := exec.Command(sfdisk, "-d", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk -d: %v\n%s", err, out)
	}
	sig := partition.DiskSignature([]byte("grub-bios-test"))
	for _, want := range []string{"label: dos", "label-id: 0x" + partition.MBRPartUUID(sig, 1)[:8],
		"start=        2048, size=      131072, type=ef, bootable", "start=      133120, size=      131072, type=83"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sfdisk -d lacks %q:\n%s", want, out)
		}
	}
	grubWantBooted(t, grubBoot(t, disk, false))
}

// grubSameFiles compares two files, skipping bytes [skipFrom, skipTo).
func grubSameFiles(t *testing.T, a, b string, skipFrom, skipTo int64) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		return false
	}
	return bytes.Equal(x[:skipFrom], y[:skipFrom]) && bytes.Equal(x[skipTo:], y[skipTo:])
}
