package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/gcp/gcptest"
)

// gcpServers starts fake-gcs-server and the Compute stub, both requiring the bearer token that
// the loopback token server issues for a generated service-account key.
func gcpServers(t *testing.T) (*gcptest.GCS, *gcptest.Compute, []string, string) {
	gcs := gcptest.StartGCS(t, "bkt")
	cs := gcptest.StartCompute(t, "proj-1")
	cs.Source = gcptest.SourceCheck(gcs)
	creds, token := gcptest.Credentials(t)
	gcs.Token, cs.Token = token, token
	env := []string{
		"GOOGLE_APPLICATION_CREDENTIALS=" + creds,
		"IMGFAB_GCP_ENDPOINT_STORAGE=" + gcs.URL + "/storage/v1/",
		"IMGFAB_GCP_ENDPOINT_COMPUTE=" + cs.URL + "/compute/v1/",
		"GOOGLE_CLOUD_PROJECT=proj-1",
	}
	return gcs, cs, env, creds
}

// The demo (UEFI) as qcow2, converted to a GCE tarball on the fly, and as a tarball built by
// imgfab, uploaded as it is: the object is the tarball imgfab convert writes, the image has
// UEFI_COMPATIBLE, a rerun is "already there"; build --push does the same in one step. The
// access token and the service-account key appear in no output.
func TestPushGCP(t *testing.T) {
	dir := t.TempDir()
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	qc, tgz := filepath.Join(dir, "demo.qcow2"), filepath.Join(dir, "demo.tar.gz")
	build(t, src, "-o", qc, "-o", tgz)
	gcs, cs, env, creds := gcpServers(t)
	conv := filepath.Join(dir, "conv.tar.gz")
	if r := runImgfab(t, nil, "convert", qc, conv); r.code != 0 {
		t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
	}
	wantConv, _ := os.ReadFile(conv)
	wantTgz, _ := os.ReadFile(tgz)

	var outs []runResult
	for _, c := range []struct {
		disk, name string
		want       []byte
	}{{qc, "demo-qcow2", wantConv}, {tgz, "demo-tgz", wantTgz}} {
		r := runImgfab(t, env, "push", "gcp", c.disk, "--no-check", "--bucket", "bkt", "--name", c.name, "--family", "demo",
			"--label", "owner=ci", "--json", "--poll-interval", "1ms", "--chunk-size", "1")
		outs = append(outs, r)
		if r.code != 0 {
			t.Fatalf("push gcp %s: exit %d\n%s", c.name, r.code, r.stderr)
		}
		var res publish.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("--json: %v\n%s", err, r.stdout)
		}
		if res.Target != "gcp" || res.Existing || !strings.HasSuffix(res.ID, "/projects/proj-1/global/images/"+c.name) {
			t.Errorf("%s: result %+v", c.name, res)
		}
		obj, err := gcs.Fake.GetObject("bkt", "imgfab/"+c.name+".tar.gz")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(obj.Content, c.want) {
			t.Errorf("%s: object is %d bytes, differs from the %d-byte GCE tarball", c.name, len(obj.Content), len(c.want))
		}
		ins := cs.LastInsert(t)
		var feats []string
		for _, f := range ins.GuestOsFeatures {
			feats = append(feats, f.Type)
		}
		if !slices.Equal(feats, []string{"UEFI_COMPATIBLE", "GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}) || ins.Family != "demo" || ins.Labels["owner"] != "ci" {
			t.Errorf("%s: insert features %v family %q labels %v", c.name, feats, ins.Family, ins.Labels)
		}
		r2 := runImgfab(t, env, "push", "gcp", c.disk, "--no-check", "--bucket", "bkt", "--name", c.name)
		outs = append(outs, r2)
		if r2.code != 0 || !strings.Contains(r2.stdout, "already there") {
			t.Errorf("%s rerun: exit %d\n%s%s", c.name, r2.code, r2.stdout, r2.stderr)
		}
	}
	if len(cs.Inserts) != 2 {
		t.Errorf("%d images.insert calls, want 2 (reruns insert nothing)", len(cs.Inserts))
	}

	// build --push.
	r := runImgfab(t, env, "build", src, "-o", filepath.Join(dir, "b.tar.gz"),
		"--push", "gcp --no-check --bucket bkt --name demo-build --poll-interval 1ms")
	outs = append(outs, r)
	if r.code != 0 {
		t.Fatalf("build --push gcp: exit %d\n%s", r.code, r.stderr)
	}
	if obj, err := gcs.Fake.GetObject("bkt", "imgfab/demo-build.tar.gz"); err != nil || !bytes.Equal(obj.Content, wantTgz) {
		t.Errorf("build --push: object %v (err %v), want the build's tarball", len(obj.Content), err)
	}

	// A wrong token: refused with the status, and still no secret in the output.
	gcs.Token = "another-token"
	cs.Token = ""
	bad := runImgfab(t, env, "push", "gcp", qc, "--no-check", "--bucket", "bkt", "--name", "refused", "--poll-interval", "1ms")
	outs = append(outs, bad)
	if bad.code != 1 || !strings.Contains(bad.stderr, "401") {
		t.Errorf("refused token: exit %d\n%s", bad.code, bad.stderr)
	}

	var sa struct {
		PrivateKey string `json:"private_key"`
	}
	b, _ := os.ReadFile(creds)
	json.Unmarshal(b, &sa)
	keyPart := strings.Split(sa.PrivateKey, "\n")[3]
	for _, o := range outs {
		for _, s := range []string{o.stdout, o.stderr} {
			if strings.Contains(s, keyPart) || strings.Contains(s, "ya29.") {
				t.Fatalf("a credential in the output:\n%s", s)
			}
		}
	}
}

func TestPushGCPUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "gcp", "x.raw", "--project", "p", "--bucket", "b"}, "--name are required"},
		{[]string{"push", "gcp", "x.raw", "--project", "p", "--name", "n"}, "--bucket and --name are required"},
		{[]string{"push", "gcp", "x.raw", "--project", "p", "--bucket", "b", "--name", "n", "--label", "novalue"}, "want KEY=VALUE"},
		{[]string{"push", "gcp", "x.raw", "--project", "p", "--bucket", "b", "--name", "n", "--chunk-size", "0"}, "--chunk-size 0"},
		{[]string{"push", "gcp", "--project", "p", "--bucket", "b", "--name", "n"}, "want one DISK"},
	} {
		r := runImgfab(t, []string{"GOOGLE_CLOUD_PROJECT="}, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
}
