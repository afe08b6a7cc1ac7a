package assemble_test

import (
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	goerofs "github.com/erofs/go-erofs"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/partition"
)

// roParts are a result's partitions as testtool.Part, in table order.
func roParts(res assemble.Result) []testtool.Part {
	var ps []testtool.Part
	for _, p := range res.Partitions {
		ps = append(ps, testtool.Part{Name: p.Name, Offset: p.Offset, Size: p.Size})
	}
	return ps
}

// openErofs opens the erofs root partition of a raw disk with go-erofs (an independent reader).
func openErofs(t *testing.T, raw string, p assemble.PartitionResult) fs.FS {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fsys, err := goerofs.Open(io.NewSectionReader(f, p.Offset, p.Size))
	if err != nil {
		t.Fatalf("go-erofs: %v", err)
	}
	return fsys
}

// TestReadOnlyRoot (issue 15) builds the demo image with a /var of its own content (varLayer) as
// an erofs root under dm-verity, to a raw and a qcow2, and checks: the layout (ESP, root, its
// verity partition, /var last) with the Discoverable Partitions types and the partition UUIDs
// taken from the root hash's halves, the oracles (sgdisk, fsck.vfat, fsck.erofs, veritysetup
// verify with the build's root hash, e2fsck), the command line, /var's content on its own
// filesystem and the root's empty mount point with the image's mode and owner, /etc/fstab and
// /etc/machine-id of a read-only root, raw and qcow2 equal, and the same bytes on a rebuild.
// Then erofs without verity, and the plans refused before any work.
func TestReadOnlyRoot(t *testing.T) {
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	out := t.TempDir()
	raw, qcow := filepath.Join(out, "disk.raw"), filepath.Join(out, "disk.qcow2")
	p := plan(demoSource(t), raw, qcow)
	p.ExtraLayers = []string{varLayer(t)}
	p.RootFS, p.Verity = "erofs", true
	res := run(t, p)
	if res.Verity == nil || len(res.Verity.RootHash) != 64 || len(res.Verity.Salt) != 64 {
		t.Fatalf("verity result %+v", res.Verity)
	}
	rh := res.Verity.RootHash
	testtool.CheckReadOnlyDisk(t, raw, roParts(res), rh)
	if len(res.Partitions) != 4 {
		t.Fatalf("partitions %+v", res.Partitions)
	}
	root, vp, v := res.Partitions[1], res.Partitions[2], res.Partitions[3]
	guid := func(h string) string {
		return strings.ToUpper(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
	}
	if root.Type != partition.TypeRootX86_64 || root.GUID != guid(rh[:32]) {
		t.Errorf("root partition %+v: want type %s, GUID from the root hash's first half %s", root, partition.TypeRootX86_64, guid(rh[:32]))
	}
	if vp.Name != "root-x86-64-verity" || vp.Type != "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5" || vp.GUID != guid(rh[32:]) {
		t.Errorf("verity partition %+v: want root-verity type, GUID from the root hash's second half %s", vp, guid(rh[32:]))
	}
	if v.Name != "var" || v.Type != partition.TypeVar || v.Offset+v.Size != res.VirtualSize-partition.Tail || v.Mount != "/var" || v.FS != "ext4" || len(v.FSUUID) != 36 {
		t.Errorf("var partition %+v: want the var type, last on the disk", v)
	}
	if res.RootFS.Type != "erofs" {
		t.Errorf("rootfs %+v", res.RootFS)
	}
	for _, want := range []string{"root=/dev/mapper/root ", " ro ", "rootfstype=erofs", "roothash=" + rh} {
		if !strings.Contains(res.Cmdline+" ", want) {
			t.Errorf("command line %q lacks %q", res.Cmdline, want)
		}
	}
	if o, err := exec.Command(qemuImg, "compare", "-q", "-f", "raw", "-F", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare raw qcow2: %v\n%s", err, o)
	}

	// /var's content is on its own filesystem, as the image has it; the root keeps the mount point.
	got := describe(t, openPart(t, raw, v), ".")
	for name, want := range map[string]string{
		".":                 "drwxr-x--x 0:50",
		"lib/app/state":     "-rw-r----- 1000:1000",
		"lib/app/state.bak": "=lib/app/state",
		"lib/app/current":   "→ state",
		"cache/private":     "drwx------ 1000:1000",
	} {
		if !strings.Contains(got[name], want) {
			t.Errorf("/var/%s: %q, want %q", name, got[name], want)
		}
	}
	rfs := openErofs(t, raw, root)
	ents, err := fs.ReadDir(rfs, "var")
	if err != nil || len(ents) != 0 {
		t.Errorf("root's /var: %v entries, %v: want an empty mount point", len(ents), err)
	}
	if fi, err := fs.Stat(rfs, "var"); err != nil || fi.Mode().Perm() != 0o751 {
		t.Errorf("root's /var: %v %v, want the image's mode 0751", fi, err)
	}
	fstab, err := fs.ReadFile(rfs, "etc/fstab")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/dev/mapper/root\t/\terofs\tro\t0\t0", "UUID=" + v.FSUUID + "\t/var\text4\tdefaults", "tmpfs\t/tmp\ttmpfs\t"} {
		if !strings.Contains(string(fstab), want) {
			t.Errorf("/etc/fstab lacks %q:\n%s", want, fstab)
		}
	}
	if id, err := fs.ReadFile(rfs, "etc/machine-id"); err != nil || len(id) != 0 {
		t.Errorf("/etc/machine-id %q %v: want an empty file on a read-only root", id, err)
	}

	// Same inputs, same bytes.
	out2 := t.TempDir()
	p2 := p
	p2.Outputs = []assemble.Output{{Path: filepath.Join(out2, "disk.raw")}, {Path: filepath.Join(out2, "disk.qcow2")}}
	res2 := run(t, p2)
	for i := range res.Outputs {
		if res.Outputs[i].SHA256 != res2.Outputs[i].SHA256 {
			t.Errorf("%s: %s then %s on a rebuild", res.Outputs[i].Format, res.Outputs[i].SHA256, res2.Outputs[i].SHA256)
		}
	}

	t.Run("no-verity", func(t *testing.T) {
		raw := filepath.Join(t.TempDir(), "disk.raw")
		p := plan(demoSource(t), raw)
		p.RootFS = "erofs"
		res := run(t, p)
		testtool.CheckReadOnlyDisk(t, raw, roParts(res), "")
		root := res.Partitions[1]
		if res.Verity != nil || !strings.Contains(res.Cmdline, "root=PARTUUID="+strings.ToLower(root.GUID)+" rootfstype=erofs ro") {
			t.Errorf("erofs without verity: verity %+v, command line %q", res.Verity, res.Cmdline)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			name string
			edit func(*assemble.Plan)
			want string
		}{
			{"verity-ext4", func(p *assemble.Plan) { p.RootFS = "ext4" }, "--verity needs --rootfs erofs"},
			{"rootfs-xfs", func(p *assemble.Plan) { p.RootFS = "xfs" }, `--rootfs "xfs": want ext4 or erofs`},
			{"mbr", func(p *assemble.Plan) { p.Boot.Table = "mbr" }, "--rootfs erofs needs a GPT disk"},
			{"var-partition", func(p *assemble.Plan) {
				p.Partitions = []assemble.ExtraPartition{{Mount: "/var", Size: 8 << 20, FS: "ext4", Type: partition.TypeVar}}
			}, "makes /var a partition of its own"},
			{"too-small", func(p *assemble.Plan) { p.Size = vp.Offset + vp.Size + 4<<20 }, "is too small for this image: it leaves"},
			{"no-room", func(p *assemble.Plan) { p.Size = 264 << 20 }, "the ESP and the partitions before the root end at 257 MiB, and /var needs 8 MiB"},
			{"var-full", func(p *assemble.Plan) {
				// Room for the root and 12 MiB of /var, which a 14 MiB file under /var does not fit.
				p.Size = vp.Offset + vp.Size + 13<<20
				p.ExtraLayers = append(p.ExtraLayers, partLayer(t, pDir("var/", 0o755), pReg("var/big", strings.Repeat("v", 14<<20), 0o644)))
			}, "/var gets the 12 MiB left after the root and its hash tree"},
		} {
			t.Run(c.name, func(t *testing.T) {
				dir := t.TempDir()
				p := plan(demoSource(t), filepath.Join(dir, "disk.raw"))
				p.RootFS, p.Verity = "erofs", true
				c.edit(&p)
				if msg := runErr(t, p); !strings.Contains(msg, c.want) {
					t.Errorf("error %q, want %q", msg, c.want)
				}
				emptyDir(t, dir)
			})
		}
	})
}
