package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/publish/aws/awstest"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
	"github.com/imgfab/imgfab/spec"
)

// TestClassFilePush: `build -f FILE --push all` builds the class, then runs its publish: entries
// in file order on its first output (an AMI through the EBS fake, a containerDisk to a registry),
// placeholders filled; a rerun makes nothing new; --push aws runs only the aws entry.
func TestClassFilePush(t *testing.T) {
	src := fixture(t, "demo/oci", "mkdemo.sh")
	reg := httptest.NewServer(ocitest.Registry())
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	f := awstest.New(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "imgfab.yaml")
	body := "classes:\n  worker:\n    from: oci:" + src + ":demo\n" +
		"    kernel: {cmdline: console=ttyS0}\n" +
		"    outputs: [{path: \"out/{class}.qcow2\"}]\n" +
		"    publish:\n" +
		"      - {target: aws, name: \"{class}-{arch}\", poll_interval: 1ms, no_check: true}\n" +
		"      - {target: oci, ref: \"" + host + "/vms/{class}:{arch}\", insecure: true, no_check: true}\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runImgfab(t, awsEnv(f), "build", "-f", file, "--push", "all")
	if r.code != 0 {
		t.Fatalf("build -f --push all: exit %d\n%s", r.code, r.stderr)
	}
	disk := filepath.Join(dir, "out", "worker.qcow2")
	want, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	img := f.Image("worker-amd64")
	if img == nil || !strings.Contains(r.stdout, "worker-amd64") {
		t.Fatalf("no AMI worker-amd64 registered; stdout:\n%s", r.stdout)
	}
	if got := ocitest.PulledDisk(t, host+"/vms/worker:amd64"); !bytes.Equal(got, want) {
		t.Errorf("containerDisk: %d bytes, differs from the class's qcow2 (%d bytes)", len(got), len(want))
	}
	if i, j := strings.Index(r.stdout, "worker-amd64"), strings.Index(r.stdout, host); i < 0 || j < 0 || i > j {
		t.Errorf("pushes not in file order (aws, then oci):\n%s", r.stdout)
	}

	again := runImgfab(t, awsEnv(f), "build", "-f", file, "--push", "aws")
	if again.code != 0 || !strings.Contains(again.stdout, "already there") || strings.Contains(again.stdout, host) {
		t.Errorf("rerun with --push aws: exit %d, stdout %s, stderr %s; want the existing AMI and no oci push", again.code, again.stdout, again.stderr)
	}
	if n := f.Calls("RegisterImage"); n != 1 {
		t.Errorf("RegisterImage called %d times, want 1", n)
	}

	for _, c := range []struct{ push, want string }{
		{"aws --name x", "want all, or targets separated by commas"},
		{"gcp", "no publish: entry of the classes built has one of these targets"},
	} {
		r := runImgfab(t, nil, "build", "-f", file, "--push", c.push)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("--push %q: exit %d, stderr %s; want 2 and %q", c.push, r.code, r.stderr, c.want)
		}
	}
	sf, err := spec.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	c := sf.Class("worker")
	pushes := classPushes(c, c.Platforms[0], "d.qcow2", []string{"oci"}, true)
	if len(pushes) != 1 || !slices.Equal(pushes[0], []string{"oci", "d.qcow2", host + "/vms/worker:amd64", "--insecure=true", "--no-check=true", "--json"}) {
		t.Errorf("oci push arguments %q", pushes)
	}
}
