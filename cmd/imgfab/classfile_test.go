package main

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

// imgfabIn runs the command in process: exit code, stdout, stderr.
func imgfabIn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// classLines decodes `build -f … --json`: one object per line.
func classLines(t *testing.T, out string) []classResult {
	t.Helper()
	var rs []classResult
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r classResult
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("--json: %v\n%s", err, out)
		}
		rs = append(rs, r)
	}
	return rs
}

func sha(t *testing.T, path string) string {
	t.Helper()
	return testtool.FileSum(t, path)
}

// TestClassFileDemo builds examples/demo.yaml (its source pointed at the fixture, its outputs
// beside the copy) and compares it with the plain build the file's comment says it equals.
func TestClassFileDemo(t *testing.T) {
	src := fixture(t, "demo/oci", "mkdemo.sh")
	ex, err := os.ReadFile("../../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	yml := strings.Replace(string(ex), "oci:../testdata/cache/demo/oci:demo", "oci:"+src+":demo", 1)
	if yml == string(ex) {
		t.Fatal("examples/demo.yaml: no from: to point at the fixture")
	}
	file := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	code, out, errs := imgfabIn(t, "build", "-f", file, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rs := classLines(t, out)
	if len(rs) != 1 || rs[0].Class != "demo" || rs[0].Platform != "linux/amd64" || len(rs[0].Outputs) != 2 || rs[0].Customize != nil {
		t.Fatalf("results %+v", rs)
	}
	for _, o := range rs[0].Outputs {
		if sha(t, o.Path) != o.SHA256 || filepath.Dir(o.Path) != filepath.Join(dir, "out") {
			t.Errorf("output %+v", o)
		}
	}
	flags := filepath.Join(dir, "flags.qcow2")
	code, _, errs = imgfabIn(t, "build", "oci:"+src+":demo", "--cmdline", "console=ttyS0", "-o", flags)
	if code != 0 {
		t.Fatalf("flags build: exit %d: %s", code, errs)
	}
	if sha(t, flags) != rs[0].Outputs[0].SHA256 {
		t.Errorf("the file's qcow2 differs from the plain build's")
	}
}

const classKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1hA2Yb+0lq0U2d4sO2mUpQzQbqk5cZ3gWq8v9m0Xx ops@example"

// TestClassFileCustomize builds a class with a user, an SSH key, a hostname, a file and a unit
// (written by files: and enabled), then reads them back from the root filesystem.
func TestClassFileCustomize(t *testing.T) {
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	src := fixture(t, "demo/oci", "mkdemo.sh")
	dir := t.TempDir()
	file := filepath.Join(dir, "imgfab.yaml")
	yml := `classes:
  web:
    from: oci:` + src + `:demo
    source_date_epoch: 1700000000
    hostname: web
    users:
      - name: ops
        uid: 1500
        ssh_authorized_keys: ["` + classKey + `"]
    files:
      - {path: /etc/motd, content: "managed by imgfab\n", mode: "0640", owner: "ops:ops"}
      - path: /etc/systemd/system/imgfab-hello.service
        content: |
          [Unit]
          Description=hello
          [Service]
          ExecStart=/bin/true
          [Install]
          WantedBy=multi-user.target
    units: {enable: [imgfab-hello.service]}
    outputs:
      - {path: "out/{class}-{arch}.raw"}
`
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := imgfabIn(t, "build", "-f", file, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rs := classLines(t, out)
	if len(rs) != 1 || rs[0].Customize == nil || !strings.HasPrefix(rs[0].Customize.Digest, "sha256:") {
		t.Fatalf("results %+v", rs)
	}
	res := rs[0]
	raw := filepath.Join(dir, "out", "web-amd64.raw")
	if res.Outputs[0].Path != raw {
		t.Fatalf("output %s", res.Outputs[0].Path)
	}
	root := res.Partitions[len(res.Partitions)-1]
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := ext4.Open(io.NewSectionReader(f, root.Offset, root.Size), root.Size)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return string(b)
	}
	owner := func(name string) (fs.FileMode, uint32, uint32) {
		fi, err := fs.Stat(fsys, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st := fi.Sys().(*ext4.Stat)
		return fi.Mode(), st.Uid, st.Gid
	}
	if s := read("etc/passwd"); !strings.HasPrefix(s, "root:") || !strings.Contains(s, "\nops:x:1500:1500::/home/ops:/bin/sh\n") {
		t.Errorf("/etc/passwd:\n%s", s)
	}
	if s := read("home/ops/.ssh/authorized_keys"); s != classKey+"\n" {
		t.Errorf("authorized_keys %q", s)
	}
	if m, u, g := owner("home/ops/.ssh/authorized_keys"); m.Perm() != 0o600 || u != 1500 || g != 1500 {
		t.Errorf("authorized_keys %v %d:%d", m, u, g)
	}
	if s := read("etc/hostname"); s != "web\n" {
		t.Errorf("/etc/hostname %q", s)
	}
	if s := read("etc/motd"); s != "managed by imgfab\n" {
		t.Errorf("/etc/motd %q", s)
	}
	if m, u, g := owner("etc/motd"); m.Perm() != 0o640 || u != 1500 || g != 1500 {
		t.Errorf("/etc/motd %v %d:%d", m, u, g)
	}
	link, err := fsys.(fs.ReadLinkFS).ReadLink("etc/systemd/system/multi-user.target.wants/imgfab-hello.service")
	if err != nil || link != "/etc/systemd/system/imgfab-hello.service" {
		t.Errorf("wants link %q, %v", link, err)
	}
	// e2fsck on the root partition.
	img := filepath.Join(dir, "root.ext4")
	w, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, root.Offset, root.Size)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if o, err := exec.Command(e2fsck, "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, o)
	}
	// A rebuild gives the same bytes.
	sum := sha(t, raw)
	if sum != res.Outputs[0].SHA256 {
		t.Errorf("sha256 %s, result says %s", sum, res.Outputs[0].SHA256)
	}
	if code, _, errs := imgfabIn(t, "build", "-f", file, "--no-cache"); code != 0 { // built again, not copied
		t.Fatalf("rebuild: exit %d: %s", code, errs)
	}
	if sha(t, raw) != sum {
		t.Errorf("a rebuild gave other bytes")
	}
}

// TestClassFileErrors: a malformed file exits 2 with file:line:col; what a file sets cannot be
// given as flags too; what is not built yet says so with its position.
func TestClassFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	head := "classes:\n  a:\n    from: oci:./layout\n    outputs: [{path: a.raw}]\n"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", write("bad.yaml", head+"    bogus: 1\n")}, "bad.yaml:5:5: classes.a: unknown key \"bogus\""},
		{[]string{"-f", write("syntax.yaml", head+"    kernel: {cmdline: [\n")}, "syntax.yaml:"},
		{[]string{"-f", write("ok.yaml", head), "--size", "1GiB", "-o", "x.raw"}, "--output (the file's outputs), --size (the file's disk.size)"},
		{[]string{"-f", write("ok2.yaml", head), "oci:./layout"}, "class names, not a SOURCE"},
		{[]string{"-f", write("ok3.yaml", head), "b"}, `no class "b" (the file has: a)`},
		{[]string{"-f", write("s390x.yaml", head+"    platforms: [linux/s390x]\n")}, `unknown arch "s390x"`},
		{[]string{"-f", write("ok4.yaml", head), "--push", "aws --name x"}, "want all, or targets separated by commas"},
		{[]string{"-f", write("ok5.yaml", head), "--push", "all"}, "no publish: entry of the classes built"},
		{[]string{"-f", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
	} {
		code, _, errs := imgfabIn(t, append([]string{"build"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %s; want 2 and %q", c.args, code, errs, c.want)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "*.raw")); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// TestClassFilePrintSpec builds once from flags and once from the file --print-spec prints for
// them: every output must have the same sha256 (the same seed: the layer as written goes in).
func TestClassFilePrintSpec(t *testing.T) {
	src := fixture(t, "demo/oci", "mkdemo.sh")
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll("overlay/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("overlay/etc/motd", []byte("from a layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flags := []string{"build", "oci:" + src + ":demo", "--layer", "./overlay", "--cmdline", "console=ttyS0 quiet",
		"--size", "600MiB", "--esp-size", "64MiB", "--source-date-epoch", "1700000000", "--no-journal",
		"--boot", "uefi", "-o", "d.raw", "-o", "d.qcow2"}
	code, out, errs := imgfabIn(t, append(flags, "--print-spec", "--class", "d")...)
	if code != 0 {
		t.Fatalf("--print-spec: exit %d: %s", code, errs)
	}
	for _, want := range []string{"  d:\n", "layers:", "./overlay", "console=ttyS0 quiet", "600MiB", "no_journal: true", "mode: uefi", "d.qcow2"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-spec has no %q:\n%s", want, out)
		}
	}
	if err := os.WriteFile("imgfab.yaml", []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("d.raw"); err == nil {
		t.Fatal("--print-spec built something")
	}
	if code, _, errs := imgfabIn(t, flags...); code != 0 {
		t.Fatalf("flags: exit %d: %s", code, errs)
	}
	sums := map[string]string{}
	for _, o := range []string{"d.raw", "d.qcow2"} {
		sums[o] = sha(t, o)
		if err := os.Remove(o); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs = imgfabIn(t, "build", "-f", "imgfab.yaml", "--json")
	if code != 0 {
		t.Fatalf("-f: exit %d: %s", code, errs)
	}
	rs := classLines(t, out)
	if len(rs) != 1 || len(rs[0].Outputs) != 2 {
		t.Fatalf("results %+v", rs)
	}
	for _, o := range []string{"d.raw", "d.qcow2"} {
		if got := sha(t, o); got != sums[o] {
			t.Errorf("%s: from the file %s, from flags %s", o, got, sums[o])
		}
	}
}
