package assemble_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

// The tests here build their layers with their own helpers: a layer is a tar file of headers
// and bodies, handed to the build as an extra layer over the demo image.

// partEnt is one entry of such a layer.
type partEnt struct {
	hdr  tar.Header
	body string
}

func pDir(name string, mode int64) partEnt {
	return partEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: time.Unix(1600000000, 0)}}
}

func pReg(name, body string, mode int64) partEnt {
	return partEnt{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(1600000000, 0)}, body}
}

func pLink(typ byte, name, target string) partEnt {
	return partEnt{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(1600000000, 0)}}
}

// partLayer writes the entries as a tar file and returns its path.
func partLayer(t *testing.T, ents ...partEnt) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// partExtract copies [off, off+size) of a disk into a file of its own, for the oracles that take
// a whole-file filesystem.
func partExtract(t *testing.T, raw string, off, size int64) string {
	t.Helper()
	in, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.img", off))
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, size)); err != nil {
		t.Fatal(err)
	}
	return path
}

func partSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// demoSource is the demo image, the base of every test here.
func demoSource(t *testing.T) string {
	return "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
}

// varLayer is a layer that gives the image's /var an owner, a mode and some content: a file, a
// hard link beside it, a symlink, a private directory.
func varLayer(t *testing.T) string {
	mt := time.Unix(1600000000, 0)
	return partLayer(t,
		partEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "var/", Mode: 0o751, Uid: 0, Gid: 50, ModTime: mt}},
		pDir("var/lib/", 0o755), pDir("var/lib/app/", 0o755),
		partEnt{tar.Header{Typeflag: tar.TypeReg, Name: "var/lib/app/state", Mode: 0o640, Uid: 1000, Gid: 1000, Size: 300000, ModTime: mt}, strings.Repeat("state ", 50000)},
		pLink(tar.TypeLink, "var/lib/app/state.bak", "var/lib/app/state"),
		pLink(tar.TypeSymlink, "var/lib/app/current", "state"),
		partEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "var/cache/private/", Mode: 0o700, Uid: 1000, Gid: 1000, ModTime: mt}},
	)
}

// threeParts is /var (ext4, 64 MiB), /srv (ext4, 16 MiB) and a 32 MiB swap area.
func threeParts() []assemble.ExtraPartition {
	return []assemble.ExtraPartition{
		{Mount: "/var", Size: 64 << 20, FS: "ext4", Type: partition.TypeVar, Where: "test:1:1"},
		{Mount: "/srv", Size: 16 << 20, FS: "ext4", Label: "data", Type: partition.TypeSrv, Where: "test:2:1"},
		{Size: 32 << 20, FS: "swap", Label: "swap0", Type: partition.TypeSwap, Where: "test:3:1"},
	}
}

// openPart opens an ext4 partition of a raw disk.
func openPart(t *testing.T, raw string, p assemble.PartitionResult) fs.FS {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fsys, err := ext4.Open(io.NewSectionReader(f, p.Offset, p.Size), p.Size)
	if err != nil {
		t.Fatalf("partition %d (%s): %v", p.Number, p.Name, err)
	}
	return fsys
}

// describe lists a tree below dir: every entry's type, mode, owner, and its content's hash or
// link target, and which entries are one inode.
func describe(t *testing.T, fsys fs.FS, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint32]string{}
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		if rel == "" {
			rel = "."
		}
		if rel == "lost+found" {
			return fs.SkipDir // the filesystem's own
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*ext4.Stat)
		s := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x", sha256.Sum256(b))
			if first, ok := inodes[st.Ino]; ok {
				s += " =" + first
			} else {
				inodes[st.Ino] = rel
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := fsys.(fs.ReadLinkFS).ReadLink(p)
			if err != nil {
				return err
			}
			s += " → " + l
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

// TestPartitions builds the demo image with /var, /srv and a swap area and checks the disk with
// the oracles: the table, each filesystem, /var's content against the image's, the root's
// mount points, /etc/fstab, the swap signature, and a byte-identical rebuild.
func TestPartitions(t *testing.T) {
	sgdisk := testtool.Need(t, "sgdisk", "gdisk")
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	blkid := testtool.Need(t, "blkid", "util-linux")
	src := demoSource(t)
	layer := varLayer(t)
	out := t.TempDir()
	raw := filepath.Join(out, "disk.raw")
	p := plan(src, raw)
	p.SourceDateEpoch = epoch(1700000000)
	p.ExtraLayers = []string{layer}
	p.Partitions = threeParts()
	res := run(t, p)

	// The table: ESP, the three in order, the root last (a BIOS boot partition may follow in the
	// table, at the disk's head).
	if o, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(o), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, o)
	}
	want := []struct{ name, typ string }{{"esp", partition.TypeESP}, {"var", partition.TypeVar}, {"data", partition.TypeSrv},
		{"swap0", partition.TypeSwap}, {"root-x86-64", partition.TypeRootX86_64}}
	if len(res.Partitions) < len(want) {
		t.Fatalf("partitions %+v", res.Partitions)
	}
	var end int64
	for i, w := range want {
		r := res.Partitions[i]
		if r.Name != w.name || r.Type != w.typ || r.Offset < end || r.Offset%partition.MiB != 0 {
			t.Errorf("partition %d: %+v, want %s %s after %d, 1 MiB aligned", i+1, r, w.name, w.typ, end)
		}
		end = r.Offset + r.Size
		o, err := exec.Command(sgdisk, "-i", fmt.Sprint(i+1), raw).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "Partition GUID code: "+w.typ) || !strings.Contains(string(o), "Partition unique GUID: "+r.GUID) ||
			!strings.Contains(string(o), "Partition name: '"+w.name+"'") {
			t.Errorf("sgdisk -i %d: %v\n%s", i+1, err, o)
		}
	}
	parts := res.Partitions
	varP, srvP, swapP, rootP := parts[1], parts[2], parts[3], parts[4]
	for _, r := range parts {
		if r.Offset > rootP.Offset {
			t.Errorf("partition %d (%s) after the root", r.Number, r.Name)
		}
	}
	if varP.Size != 64<<20 || srvP.Size != 16<<20 || swapP.Size != 32<<20 || varP.Mount != "/var" || varP.FS != "ext4" || swapP.FS != "swap" || rootP.Mount != "" {
		t.Errorf("sizes or mounts: %+v", parts)
	}
	if guids := map[string]bool{}; true {
		for _, r := range parts {
			if guids[r.GUID] {
				t.Errorf("GUID %s twice", r.GUID)
			}
			guids[r.GUID] = true
		}
	}
	j, _ := json.Marshal(res)
	if !strings.Contains(string(j), `"name":"var","type_guid":"`+partition.TypeVar+`","guid":"`+varP.GUID) || !strings.Contains(string(j), `"mount":"/var","fs":"ext4","fs_uuid":"`) {
		t.Errorf("--json partitions: %s", j)
	}

	// Every ext4 filesystem is clean.
	for _, r := range []assemble.PartitionResult{varP, srvP, rootP} {
		if o, err := exec.Command(e2fsck, "-fn", partExtract(t, raw, r.Offset, r.Size)).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn on %s: %v\n%s", r.Name, err, o)
		}
	}

	// /var holds the image's /var, the root an empty /var with the image's mode and owner.
	plainRaw := filepath.Join(out, "plain.raw")
	pp := p
	pp.Outputs, pp.Partitions = []assemble.Output{{Path: plainRaw}}, nil
	plainRes := run(t, pp)
	image := describe(t, openRoot(t, plainRaw, plainRes), "var")
	varFS := openPart(t, raw, varP)
	if got := describe(t, varFS, "."); fmt.Sprint(got) != fmt.Sprint(image) {
		t.Errorf("/var partition:\n%v\nthe image's /var:\n%v", got, image)
	}
	t.Logf("/var: %v", image)
	if image["lib/app/state.bak"] == "" || !strings.Contains(image["lib/app/state.bak"], "=lib/app/state") {
		t.Errorf("the hard link is not one inode in the image: %v", image)
	}
	root := openRoot(t, raw, res)
	if d := describe(t, root, "var"); len(d) != 1 || d["."] != "drwxr-x--x 0:50" {
		t.Errorf("root's /var: %v, want an empty drwxr-x--x 0:50", d)
	}
	if d := describe(t, openPart(t, raw, srvP), "."); len(d) != 1 {
		t.Errorf("/srv partition: %v, want empty", d)
	}
	if fi, err := fs.Stat(root, "srv"); err != nil || !fi.IsDir() {
		t.Errorf("root's /srv mount point: %v", err)
	}

	// /etc/fstab mounts them by PARTUUID, the parent before the child, then the swap.
	fstab, err := fs.ReadFile(root, "etc/fstab")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("/etc/fstab:\n%s", fstab)
	for _, line := range []string{
		"PARTUUID=" + strings.ToLower(varP.GUID) + "\t/var\text4\tdefaults\t0\t2\n",
		"PARTUUID=" + strings.ToLower(srvP.GUID) + "\t/srv\text4\tdefaults\t0\t2\n",
		"PARTUUID=" + strings.ToLower(swapP.GUID) + "\tnone\tswap\tsw\t0\t0\n",
	} {
		if !strings.Contains(string(fstab), line) {
			t.Errorf("/etc/fstab lacks %q:\n%s", line, fstab)
		}
	}
	if res.Customize == nil || len(res.Customize.Ops) == 0 {
		t.Errorf("no generated layer for the fstab: %+v", res.Customize)
	}

	// The swap signature, as blkid reads it.
	o, err := exec.Command(blkid, "-p", "-o", "export", partExtract(t, raw, swapP.Offset, swapP.Size)).CombinedOutput()
	if err != nil || !strings.Contains(string(o), "TYPE=swap") || !strings.Contains(string(o), "LABEL=swap0") || !strings.Contains(string(o), "VERSION=1") ||
		!regexp.MustCompile(`(?m)^UUID=[0-9a-f-]{36}$`).Match(o) {
		t.Errorf("blkid -p on the swap partition: %v\n%s", err, o)
	}
	t.Logf("blkid -p on the swap partition:\n%s", o)
	o, err = exec.Command(blkid, "-p", "-o", "export", partExtract(t, raw, varP.Offset, varP.Size)).CombinedOutput()
	if err != nil || !strings.Contains(string(o), "TYPE=ext4") || !strings.Contains(string(o), "LABEL=var") || !strings.Contains(string(o), "UUID="+varP.FSUUID) {
		t.Errorf("blkid -p on the /var partition: %v\n%s", err, o)
	}
	sw := make([]byte, 4096)
	f, _ := os.Open(raw)
	f.ReadAt(sw, swapP.Offset)
	f.Close()
	if lp := binary.LittleEndian.Uint32(sw[1028:]); int64(lp) != swapP.Size/4096-1 || string(sw[4086:]) != "SWAPSPACE2" {
		t.Errorf("swap header: last_page %d, magic %q", lp, sw[4086:])
	}

	// The same plan again: the same bytes.
	raw2 := filepath.Join(out, "again.raw")
	p.Outputs = []assemble.Output{{Path: raw2}}
	res2 := run(t, p)
	if partSum(t, raw2) != partSum(t, raw) || res2.Partitions[1].GUID != varP.GUID {
		t.Error("a rebuild gave other bytes")
	}
}

// TestPartitionTooSmall: a /var too small for the image's /var fails naming the partition, its
// size and what its content takes, and leaves no output.
func TestPartitionTooSmall(t *testing.T) {
	big := make([]byte, 20<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	out := t.TempDir()
	p := plan(demoSource(t), filepath.Join(out, "disk.raw"), filepath.Join(out, "disk.qcow2"))
	p.ExtraLayers = []string{partLayer(t, pDir("var/", 0o755), pReg("var/big", string(big), 0o644))}
	p.Partitions = []assemble.ExtraPartition{{Mount: "/var", Size: 8 << 20, FS: "ext4", Type: partition.TypeVar, Where: "imgfab.yaml:7:9"}}
	msg := runErr(t, p)
	if !errors.Is(errFull(t, p), ext4.ErrFull) {
		t.Error("the error does not wrap ext4.ErrFull")
	}
	for _, want := range []string{"partition 2 (var on /var)", "8 MiB is too small", "20 MiB of file data", "needs more than 21 MiB", "raise its size"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	emptyDir(t, out)
}

func errFull(t *testing.T, p assemble.Plan) error {
	_, err := assemble.Run(t.Context(), p)
	return err
}

// TestPartitionHardlinkAcross: a hard link between /var and the root is refused, naming both.
func TestPartitionHardlinkAcross(t *testing.T) {
	out := t.TempDir()
	p := plan(demoSource(t), filepath.Join(out, "disk.raw"))
	p.ExtraLayers = []string{partLayer(t, pDir("etc/", 0o755), pReg("etc/motd", "hello\n", 0o644), pDir("var/", 0o755),
		pLink(tar.TypeLink, "var/motd", "etc/motd"))}
	p.Partitions = []assemble.ExtraPartition{{Mount: "/var", Size: 8 << 20, FS: "ext4", Type: partition.TypeVar}}
	msg := runErr(t, p)
	if !strings.Contains(msg, "hard link /var/motd → /etc/motd crosses a mount point") || !strings.Contains(msg, "partition 2 (var on /var)") {
		t.Errorf("error %q", msg)
	}
	emptyDir(t, out)
	// Bad plans are refused before any work.
	p.Partitions = []assemble.ExtraPartition{{Mount: "var", Size: 8 << 20, FS: "ext4", Type: partition.TypeVar}}
	if msg := runErr(t, p); !strings.Contains(msg, "mount point \"var\"") {
		t.Errorf("relative mount point: %q", msg)
	}
}

// TestPartitionsMBR: on an MBR disk the extra partitions get MBR types, fstab names them by the
// kernel's PARTUUID of MBR partitions, and the root (now partition 4) is found the same way.
func TestPartitionsMBR(t *testing.T) {
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	raw := filepath.Join(t.TempDir(), "disk.raw")
	p := plan(demoSource(t), raw)
	p.Boot = assemble.BootOptions{Mode: "uefi", Table: "mbr"}
	p.Partitions = []assemble.ExtraPartition{
		{Mount: "/var", Size: 8 << 20, FS: "ext4", Type: partition.TypeVar},
		{Size: 4 << 20, FS: "swap", Type: partition.TypeSwap},
	}
	res := run(t, p)
	o, err := exec.Command(sfdisk, "-d", raw).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk -d: %v\n%s", err, o)
	}
	m := regexp.MustCompile(`label-id: 0x([0-9a-f]{8})`).FindSubmatch(o)
	if m == nil || !regexp.MustCompile(`2 : start=\s+526336, size=\s+16384, type=83\n.*3 : start=\s+542720, size=\s+8192, type=82\n.*4 : start=\s+550912, .* type=83`).Match(o) {
		t.Fatalf("sfdisk -d:\n%s", o)
	}
	sig := string(m[1])
	if !strings.Contains(res.Cmdline, "root=PARTUUID="+sig+"-04 ") {
		t.Errorf("cmdline %q: want the root as partition 4 of %s", res.Cmdline, sig)
	}
	fstab, err := fs.ReadFile(openRoot(t, raw, res), "etc/fstab")
	if err != nil || !strings.Contains(string(fstab), "PARTUUID="+sig+"-02\t/var\text4\t") || !strings.Contains(string(fstab), "PARTUUID="+sig+"-03\tnone\tswap\t") {
		t.Errorf("/etc/fstab (%v):\n%s", err, fstab)
	}
}
