package assemble_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/customize"
	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1hA2Yb+0lq0U2d4sO2mUpQzQbqk5cZ3gWq8v9m0Xx ops@example"

// customTree is a small image with the account databases and one installable unit.
func customTree() []testimage.Entry {
	e := testimage.BootEntries()
	return append(e,
		testimage.Dir("etc/", 0o755),
		testimage.Reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
		testimage.Reg("etc/group", "root:x:0:\nsudo:x:27:\n", 0o644),
		testimage.Reg("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640),
		testimage.Reg("etc/gshadow", "root:*::\nsudo:*::\n", 0o640),
		testimage.Reg("etc/hostname", "localhost\n", 0o644),
		testimage.Dir("usr/lib/systemd/system/", 0o755),
		testimage.Reg("usr/lib/systemd/system/hello.service", "[Unit]\nDescription=hello\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n", 0o644),
		testimage.Dir("home/", 0o755),
	)
}

func customConfig() *customize.Config {
	uid := uint32(1500)
	return &customize.Config{
		Users:    []customize.User{{Name: "ops", UID: &uid, Groups: []string{"sudo"}, SSHAuthorizedKeys: []string{testKey}, Where: "test:1:1"}},
		Hostname: "web",
		Files:    []customize.File{{Path: "/etc/motd", Content: []byte("managed\n"), Mode: 0o644}},
		Units:    customize.Units{Enable: []customize.Unit{{Name: "hello.service"}}},
	}
}

// openRoot opens the root partition of a raw disk built by Run.
func openRoot(t *testing.T, raw string, res assemble.Result) fs.FS {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	root := res.Partitions[len(res.Partitions)-1]
	fsys, err := ext4.Open(io.NewSectionReader(f, root.Offset, root.Size), root.Size)
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// TestCustomizeLayer builds with Plan.Customize and checks the generated layer in the root
// filesystem, the result, the seed and reproducibility.
func TestCustomizeLayer(t *testing.T) {
	src := testimage.WriteLayout(t, "custom", testimage.GzipTar(t, customTree()))
	out := t.TempDir()
	raw := filepath.Join(out, "disk.raw")
	p := plan("oci:"+src+":custom", raw)
	p.SourceDateEpoch = epoch(1700000000)
	p.Customize = customConfig()
	res := run(t, p)
	if res.Customize == nil || !strings.HasPrefix(res.Customize.Digest, "sha256:") || len(res.Customize.Ops) == 0 {
		t.Fatalf("result customize %+v", res.Customize)
	}
	j, _ := json.Marshal(res)
	if !strings.Contains(string(j), `"customize":{"digest":"sha256:`) {
		t.Errorf("--json has no customize digest: %s", j)
	}
	fsys := openRoot(t, raw, res)
	read := func(name string) string {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return string(b)
	}
	if s := read("etc/passwd"); !strings.HasPrefix(s, "root:x:0:0:") || !strings.Contains(s, "\nops:x:1500:1500::/home/ops:/bin/sh\n") {
		t.Errorf("/etc/passwd:\n%s", s)
	}
	if s := read("etc/group"); !strings.Contains(s, "sudo:x:27:ops\n") {
		t.Errorf("/etc/group:\n%s", s)
	}
	if s := read("home/ops/.ssh/authorized_keys"); s != testKey+"\n" {
		t.Errorf("authorized_keys %q", s)
	}
	if fi, err := fs.Stat(fsys, "home/ops/.ssh/authorized_keys"); err != nil {
		t.Error(err)
	} else if st := fi.Sys().(*ext4.Stat); fi.Mode().Perm() != 0o600 || st.Uid != 1500 || st.Gid != 1500 {
		t.Errorf("authorized_keys mode %v owner %d:%d", fi.Mode(), st.Uid, st.Gid)
	}
	if s := read("etc/hostname"); s != "web\n" {
		t.Errorf("/etc/hostname %q", s)
	}
	if s := read("etc/motd"); s != "managed\n" {
		t.Errorf("/etc/motd %q", s)
	}
	if l, err := fsys.(fs.ReadLinkFS).ReadLink("etc/systemd/system/multi-user.target.wants/hello.service"); err != nil || l != "/usr/lib/systemd/system/hello.service" {
		t.Errorf("wants link %q, %v", l, err)
	}
	sum := testtool.FileSum(t, raw)

	// Again: the same bytes.
	raw2 := filepath.Join(out, "again.raw")
	p.Outputs = []assemble.Output{{Path: raw2}}
	res2 := run(t, p)
	if testtool.FileSum(t, raw2) != sum || res2.Customize.Digest != res.Customize.Digest {
		t.Errorf("a rebuild gave other bytes")
	}
	// Without the customisation: other identifiers (the layer is in the seed).
	plain := filepath.Join(out, "plain.raw")
	p.Outputs, p.Customize = []assemble.Output{{Path: plain}}, nil
	res3 := run(t, p)
	if res3.Customize != nil || res3.DiskGUID == res.DiskGUID {
		t.Errorf("plain build: customize %v, disk GUID %s (customised %s)", res3.Customize, res3.DiskGUID, res.DiskGUID)
	}
}

// TestCustomizeErrors: an error of the customisation names the step and the item.
func TestCustomizeErrors(t *testing.T) {
	src := testimage.WriteLayout(t, "custom", testimage.GzipTar(t, customTree()))
	p := plan("oci:"+src+":custom", filepath.Join(t.TempDir(), "disk.raw"))
	p.Customize = &customize.Config{Units: customize.Units{Enable: []customize.Unit{{Name: "nope.service", Where: "imgfab.yaml:9:17"}}}}
	msg := runErr(t, p)
	if !strings.HasPrefix(msg, "build: customize: ") || !strings.Contains(msg, "imgfab.yaml:9:17") || !strings.Contains(msg, "nope.service") {
		t.Errorf("error %q", msg)
	}
}
