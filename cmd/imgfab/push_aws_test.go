package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/aws/awstest"
)

func awsEnv(f *awstest.Server) []string {
	return append(f.Env(), "IMGFAB_AWS_ENDPOINT_EBS="+f.URL, "IMGFAB_AWS_ENDPOINT_EC2="+f.URL)
}

// The demo (UEFI only) and the BIOS demo (hybrid) pushed through the CLI to the EBS/EC2 fake: the
// snapshot holds the guest disk, the AMI's boot mode follows the disk, a rerun is "already there".
func TestPushAWS(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ fixture, script, boot string }{
		{"demo/oci", "mkdemo.sh", "uefi"},
		{"demo-bios/oci", "mkdemo-bios.sh", "uefi-preferred"},
	} {
		disk := filepath.Join(dir, strings.ReplaceAll(c.fixture, "/", "-")+".qcow2")
		build(t, "oci:"+fixture(t, c.fixture, c.script)+":demo", "-o", disk)
		f := awstest.New(t)
		name := "imgfab-" + c.boot
		args := []string{"push", "aws", disk, "--no-check", "--name", name, "--json", "--poll-interval", "1ms", "--tag", "owner=ci", "--imdsv2"}
		r := runImgfab(t, awsEnv(f), args...)
		if r.code != 0 {
			t.Fatalf("push aws %s: exit %d\n%s", c.fixture, r.code, r.stderr)
		}
		var res publish.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("--json: %v\n%s", err, r.stdout)
		}
		if res.Target != "aws" || !strings.HasPrefix(res.ID, "ami-") || res.Region != f.Region || res.Existing {
			t.Errorf("%s: result %+v", c.fixture, res)
		}
		img, err := diskfmt.Open(context.Background(), disk)
		if err != nil {
			t.Fatal(err)
		}
		if d := f.Compare(res.Snapshot, img, img.Size()); d != "" {
			t.Errorf("%s: snapshot differs from the guest disk: %s", c.fixture, d)
		}
		img.Close()
		if f.ZeroPuts() != 0 || res.Details["blocks_zero"] == "0" || res.Details["blocks_sent"] == "" {
			t.Errorf("%s: %d zero blocks sent; details %v", c.fixture, f.ZeroPuts(), res.Details)
		}
		q := f.Image(name).Params
		if q.Get("BootMode") != c.boot || q.Get("ImdsSupport") != "v2.0" || q.Get("EnaSupport") != "true" {
			t.Errorf("%s: RegisterImage BootMode %q ImdsSupport %q ENA %q", c.fixture, q.Get("BootMode"), q.Get("ImdsSupport"), q.Get("EnaSupport"))
		}

		r2 := runImgfab(t, awsEnv(f), "push", "aws", disk, "--no-check", "--name", name, "--poll-interval", "1ms")
		if r2.code != 0 || !strings.Contains(r2.stdout, res.ID) || !strings.Contains(r2.stdout, "already there") {
			t.Errorf("rerun: exit %d\n%s%s", r2.code, r2.stdout, r2.stderr)
		}
		if f.Images() != 1 || f.SnapshotCount() != 1 {
			t.Errorf("rerun: %d images, %d snapshots", f.Images(), f.SnapshotCount())
		}
	}
}

// A recognisable secret appears in no output: not in a successful push, not when AWS refuses it.
func TestPushAWSNoSecretInOutput(t *testing.T) {
	const secret = "a-recognisable-secret-9d2e71"
	disk := filepath.Join(t.TempDir(), "d.qcow2")
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "-o", disk)
	f := awstest.New(t)
	f.SecretKey = secret
	ok := runImgfab(t, awsEnv(f), "push", "aws", disk, "--no-check", "--name", "s", "--json", "--poll-interval", "1ms")
	if ok.code != 0 {
		t.Fatalf("push: exit %d\n%s", ok.code, ok.stderr)
	}
	env := append(awsEnv(f), "AWS_SESSION_TOKEN=a-recognisable-token-55aa")
	f.SecretKey = "the-server-wants-another-secret"
	bad := runImgfab(t, env, "push", "aws", disk, "--no-check", "--name", "t", "--poll-interval", "1ms")
	if bad.code != 1 || !strings.Contains(bad.stderr, "403") {
		t.Errorf("push with a refused secret: exit %d\n%s", bad.code, bad.stderr)
	}
	f.TakeProblems() // the refused signatures
	for _, out := range []string{ok.stdout, ok.stderr, bad.stdout, bad.stderr} {
		if strings.Contains(out, secret) || strings.Contains(out, "a-recognisable-token-55aa") {
			t.Fatalf("secret in output:\n%s", out)
		}
	}
}

func TestPushAWSUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "aws", "x.raw"}, "--name is required"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--via", "s3"}, "--via s3 needs --bucket"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--via", "ftp"}, `--via "ftp"`},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--boot-mode", "efi"}, `--boot-mode "efi"`},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--tag", "novalue"}, "want KEY=VALUE"},
		{[]string{"push", "aws", "--name", "n"}, "want one DISK"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--volume-size", "-1"}, "--volume-size -1: want 1 to 65536 GiB"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--volume-size", "70000"}, "--volume-size 70000"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--parallel", "100000"}, "--parallel 100000"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--via", "s3", "--bucket", "b", "--part-size", "1024"}, "--part-size 1024: want 5 MiB to 5 GiB"},
		{[]string{"push", "aws", "x.raw", "--name", "n", "--poll-interval", "-1s"}, "--poll-interval -1s"},
		{[]string{"push", "azure", "x.vhd", "--name", "n", "--storage-account", "a", "--parallel", "0"}, "--parallel 0: want 1 to 256"},
		{[]string{"push", "gcp", "x.tar.gz", "--project", "p", "--bucket", "b", "--name", "n", "--poll-interval", "-1s"}, "--poll-interval -1s"},
	} {
		r := runImgfab(t, nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
}
