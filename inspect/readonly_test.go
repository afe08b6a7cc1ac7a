package inspect

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/internal/testtool"
)

// demoPretty is PRETTY_NAME of the demo images (testdata/mkdemo.sh).
const demoPretty = "imgfab demo (busybox on Debian 12 kernel)"

// buildReadOnly builds a demo fixture with an EROFS root (assemble.Run, the options `imgfab build`
// gives by default) and returns the raw disk's path and the build's Result.
func buildReadOnly(t *testing.T, fixture, script, tag string, uki, verity bool) (string, assemble.Result) {
	t.Helper()
	src := "oci:" + testtool.Fixture(t, fixture, script) + ":" + tag
	out := filepath.Join(t.TempDir(), "disk.raw")
	res, err := assemble.Run(t.Context(), assemble.Plan{
		Source: src, Platform: "linux/amd64", ESPSize: 256 << 20,
		Boot:   assemble.BootOptions{Mode: "auto", Table: "gpt", UKI: uki},
		RootFS: "erofs", Verity: verity,
		Outputs: []assemble.Output{{Path: out}},
	})
	if err != nil {
		t.Fatalf("assemble.Run %s: %v", src, err)
	}
	return out, res
}

// flipped is a disk image with the bytes at offs XORed with 0x01.
type flipped struct {
	r    io.ReaderAt
	offs []int64
}

func (f flipped) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.r.ReadAt(p, off)
	for _, o := range f.offs {
		if o >= off && o < off+int64(n) {
			p[o-off] ^= 1
		}
	}
	return n, err
}

// openDisk opens the raw disk at path with the bytes at offs flipped.
func openDisk(t *testing.T, path string, offs ...int64) diskfmt.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	img, err := diskfmt.OpenReaderAt(flipped{f, offs}, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestEROFSVerityDisk: the demo-uki fixture built with --rootfs erofs --verity --uki. Inspect reads
// the EROFS root from its data partition (os-release, the kernel), reports the verity superblock as
// the build made it, roothash= and the GUID convention; --verify-verity finds the tree intact, and a
// flipped byte in the data, in the tree or in the superblock's salt is a mismatch, not an error.
func TestEROFSVerityDisk(t *testing.T) {
	disk, res := buildReadOnly(t, "demo-uki/oci", "mkdemo-uki.sh", "demo-uki", true, true)
	if res.Verity == nil {
		t.Fatal("the build made no verity tree")
	}
	ctx := context.Background()
	rep, err := Inspect(ctx, openDisk(t, disk))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("warnings: %q", rep.Warnings)
	}
	if len(rep.Partitions) != 4 {
		t.Fatalf("%d partitions, want esp, root, root-verity, var: %+v", len(rep.Partitions), rep.Partitions)
	}
	root, hash := rep.Partitions[1], rep.Partitions[2]
	if fs := root.Filesystem; root.Type != "root-x86-64" || fs.Type != "erofs" || fs.UUID != res.RootFS.UUID || fs.Label != "root" || fs.Size != res.RootFS.Size {
		t.Errorf("root partition %+v, filesystem %+v; build said %+v", root, fs, res.RootFS)
	}
	if hash.Type != "root-x86-64-verity" || hash.TypeGUID != "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5" || hash.Filesystem.Type != "DM_verity_hash" {
		t.Errorf("hash partition %+v %+v", hash, hash.Filesystem)
	}
	if rep.Root == nil || rep.Root.Partition != 2 || rep.Root.By != "roothash" {
		t.Errorf("root %+v, want partition 2 by roothash", rep.Root)
	}
	if rep.OS == nil || rep.OS.PrettyName != demoPretty {
		t.Errorf("os %+v", rep.OS)
	}
	if rep.Kernel != res.Kernel || rep.Initrd != res.Initrd || rep.KernelVersion != res.KernelVer || rep.Cmdline != res.Cmdline {
		t.Errorf("kernel %q initrd %q version %q cmdline %q; build said %q %q %q %q", rep.Kernel, rep.Initrd, rep.KernelVersion, rep.Cmdline,
			res.Kernel, res.Initrd, res.KernelVer, res.Cmdline)
	}
	v := rep.Verity
	if v == nil {
		t.Fatal("no verity report")
	}
	if v.Partition != 3 || v.DataPartition != 2 || !v.Superblock || v.Version != 1 || v.HashType != 1 || v.Algorithm != "sha256" ||
		v.DataBlockSize != 4096 || v.HashBlockSize != 4096 || v.DataBlocks != res.Verity.DataBlocks ||
		v.Salt != res.Verity.Salt || v.RootHash != res.Verity.RootHash || v.UUID == "" || hash.Filesystem.UUID != v.UUID {
		t.Errorf("verity %+v; build said %+v", v, res.Verity)
	}
	if v.GUIDsMatch == nil || !*v.GUIDsMatch {
		t.Errorf("GUIDsMatch %v, want true", v.GUIDsMatch)
	}
	if v.Verify != nil {
		t.Errorf("verified without being asked: %+v", v.Verify)
	}
	if len(rep.EFIBinaries) != 1 || rep.EFIBinaries[0].Path != "/EFI/BOOT/BOOTX64.EFI" || len(rep.EFIBinaries[0].Signatures) != 0 || rep.EFIBinaries[0].Error != "" {
		t.Errorf("EFI binaries %+v, want the UKI, unsigned", rep.EFIBinaries)
	}

	// The root as an fs.FS, for package check.
	d, err := Open(ctx, openDisk(t, disk))
	if err != nil {
		t.Fatal(err)
	}
	if d.Root == nil {
		t.Fatal("Open: no root filesystem")
	}
	// fstest.TestFS reads every file several times: /etc only, within the reader's budget.
	etc, err := fs.Sub(d.Root, "etc")
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(etc, "os-release", "fstab"); err != nil {
		t.Error(err)
	}
	if b, err := fs.ReadFile(d.Root, "etc/os-release"); err != nil || !strings.Contains(string(b), demoPretty) {
		t.Errorf("os-release: %q %v", b, err)
	}
	fi, err := fs.Stat(d.Root, strings.TrimPrefix(res.Kernel, "/"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("kernel %s: %v", res.Kernel, err)
	}
	if b, err := fs.ReadFile(d.Root, strings.TrimPrefix(res.Kernel, "/")); err != nil || int64(len(b)) != fi.Size() || string(b[0x202:0x206]) != "HdrS" {
		t.Errorf("kernel %s: %d bytes of %d, %v", res.Kernel, len(b), fi.Size(), err)
	}

	// --verify-verity.
	verify := func(what string, offs ...int64) *VerityCheck {
		t.Helper()
		rep, err := InspectWith(ctx, openDisk(t, disk, offs...), Options{VerifyVerity: true})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if rep.Verity == nil || rep.Verity.Verify == nil {
			t.Fatalf("%s: no verification in %+v", what, rep.Verity)
		}
		c := rep.Verity.Verify
		if c.Error != "" {
			t.Fatalf("%s: %s", what, c.Error)
		}
		return c
	}
	c := verify("intact")
	if !c.OK || !c.RootHashMatch || !c.TreeMatch || c.RootHash != res.Verity.RootHash || c.BadHashBlocks != 0 || c.FirstBadHashBlock != -1 ||
		c.HashBlocks != res.Verity.HashBytes/4096-1 {
		t.Errorf("intact: %+v; build said %+v", c, res.Verity)
	}
	// A byte of data block 100: its level-0 hash block (hash block 2: the superblock's block, then
	// the top level, then level 0) and the top one (block 1) differ, and so does the root hash.
	c = verify("data", root.Offset+100*4096+77)
	if c.OK || c.RootHashMatch || c.TreeMatch || c.RootHash == res.Verity.RootHash || c.BadHashBlocks != 2 || c.FirstBadHashBlock < 1 {
		t.Errorf("a flipped data byte: %+v", c)
	}
	// A byte of the first level-0 hash block (after the superblock's and the top block): the data
	// gives the right root, the disk's tree is not it.
	c = verify("tree", hash.Offset+2*4096+5)
	if c.OK || !c.RootHashMatch || c.TreeMatch || c.BadHashBlocks != 1 || c.FirstBadHashBlock != 2 {
		t.Errorf("a flipped tree byte: %+v", c)
	}
	// The salt: every hash differs.
	c = verify("salt", hash.Offset+88)
	if c.OK || c.RootHashMatch || c.TreeMatch || c.BadHashBlocks != c.HashBlocks {
		t.Errorf("a flipped salt byte: %+v", c)
	}
}

// TestVerityGUIDConvention: a hash partition found by type whose GUIDs are not the root hash's
// halves is reported (GUIDsMatch false, a warning per partition); a roothash= that is no hash is a
// warning.
func TestVerityGUIDConvention(t *testing.T) {
	disk, res := buildReadOnly(t, "demo/oci", "mkdemo.sh", "demo", false, true)
	ctx := context.Background()
	img := openDisk(t, disk)
	rep, err := Inspect(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if v := rep.Verity; v == nil || v.GUIDsMatch == nil || !*v.GUIDsMatch || v.RootHash != res.Verity.RootHash || len(rep.Warnings) > 0 {
		t.Fatalf("verity %+v, warnings %q", rep.Verity, rep.Warnings)
	}
	if rep.Root == nil || rep.Root.By != "roothash" || rep.OS == nil || rep.OS.PrettyName != demoPretty || rep.Kernel != res.Kernel {
		t.Errorf("root %+v os %+v kernel %q", rep.Root, rep.OS, rep.Kernel)
	}
	// Another root hash on the command line: the root is found by type, the hash partition by
	// type, neither GUID is a half of it.
	other := strings.Repeat("ab", 32)
	r2 := Report{Partitions: rep.Partitions, Cmdline: "root=/dev/mapper/root roothash=" + other}
	var warns []string
	warn := func(f string, a ...any) { warns = append(warns, fmt.Sprintf(f, a...)) }
	rp := findRoot(r2.Partitions, r2.Cmdline)
	if rp == nil || rp.by != "type" || rp.p.Number != 2 {
		t.Fatalf("findRoot %+v", rp)
	}
	if err := inspectVerity(ctx, img, &r2, rp.p, false, warn); err != nil {
		t.Fatal(err)
	}
	if v := r2.Verity; v == nil || v.GUIDsMatch == nil || *v.GUIDsMatch || v.Partition != 3 || v.RootHash != other || len(warns) != 2 {
		t.Errorf("verity %+v, warnings %q", r2.Verity, warns)
	}
	// Not a hash.
	r3 := Report{Partitions: rep.Partitions, Cmdline: "roothash=xyz"}
	warns = nil
	if err := inspectVerity(ctx, img, &r3, rp.p, false, warn); err != nil {
		t.Fatal(err)
	}
	if v := r3.Verity; v == nil || v.GUIDsMatch != nil || v.RootHash != "" || len(warns) != 1 || !strings.Contains(warns[0], "not a hash") {
		t.Errorf("verity %+v, warnings %q", r3.Verity, warns)
	}
}

// TestEROFSRootNoVerity: an EROFS root without verity, booted by systemd-boot with a BLS entry:
// root=PARTUUID= finds it, it is read like an ext4 root, and there is no verity report.
func TestEROFSRootNoVerity(t *testing.T) {
	disk, res := buildReadOnly(t, "demo/oci", "mkdemo.sh", "demo", false, false)
	rep, err := InspectWith(context.Background(), openDisk(t, disk), Options{VerifyVerity: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) > 0 || rep.Verity != nil {
		t.Errorf("warnings %q, verity %+v", rep.Warnings, rep.Verity)
	}
	if len(rep.Partitions) != 3 || rep.Partitions[1].Filesystem.Type != "erofs" || rep.Partitions[2].Type != "var" {
		t.Errorf("partitions %+v", rep.Partitions)
	}
	if rep.Root == nil || rep.Root.Partition != 2 || rep.Root.By != "cmdline" || rep.OS == nil || rep.OS.PrettyName != demoPretty ||
		rep.Kernel != res.Kernel || rep.Initrd != res.Initrd {
		t.Errorf("root %+v os %+v kernel %q initrd %q", rep.Root, rep.OS, rep.Kernel, rep.Initrd)
	}
	var paths []string
	for _, b := range rep.EFIBinaries {
		paths = append(paths, b.Path)
	}
	if strings.Join(paths, " ") != "/EFI/BOOT/BOOTX64.EFI /EFI/systemd/systemd-bootx64.efi" {
		t.Errorf("EFI binaries %q", paths)
	}
}
