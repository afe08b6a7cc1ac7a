package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/publish/aws/awstest"
)

// The CLI defects of issue #11, one test each.

func TestPushFlagBlank(t *testing.T) {
	src := testimage.WriteLayout(t, "p", testimage.GzipTar(t, testimage.BootEntries()))
	out := t.TempDir()
	for _, v := range []string{"  ", ""} {
		r := runImgfab(t, nil, "build", "oci:"+src, "-o", filepath.Join(out, "d.raw"), "--push", v)
		if r.code != 2 || !strings.Contains(r.stderr, "--push") || strings.Contains(r.stderr, "panic") {
			t.Errorf("--push %q: exit %d, stderr %s", v, r.code, r.stderr)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	main := runImgfab(t, nil, "help")
	if main.code != 0 {
		t.Fatalf("imgfab help: exit %d", main.code)
	}
	for _, c := range commands {
		// Every command imgfab help lists answers --help with exit 0 and its usage on stdout.
		r := runImgfab(t, nil, c.name, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: imgfab "+c.name) {
			t.Errorf("imgfab %s --help: exit %d, stdout %q, stderr %q", c.name, r.code, r.stdout, r.stderr)
		}
		// "imgfab help CMD" is the same text.
		h := runImgfab(t, nil, "help", c.name)
		if h.code != 0 || h.stdout != r.stdout {
			t.Errorf("imgfab help %s: exit %d, and its text differs from %s --help:\n%s", c.name, h.code, c.name, h.stdout)
		}
	}
	// convert's formats are a readable list, not a Go slice.
	conv := runImgfab(t, nil, "convert", "--help")
	if strings.Contains(conv.stdout, "[gce") || !strings.Contains(conv.stdout, "gce, qcow2, raw") {
		t.Errorf("convert --help lists its formats as %q", conv.stdout[strings.LastIndex(conv.stdout, "Output formats"):])
	}
	// The help of main, convert and inspect names the GCE tarballs both read.
	for name, text := range map[string]string{"imgfab help": main.stdout, "convert --help": conv.stdout,
		"inspect --help": runImgfab(t, nil, "inspect", "--help").stdout} {
		if !strings.Contains(text, "GCE") {
			t.Errorf("%s does not mention GCE tarballs:\n%s", name, text)
		}
	}
}

func TestErrorNamesCommandOnce(t *testing.T) {
	src := testimage.WriteLayout(t, "k", testimage.GzipTar(t, []testimage.Entry{testimage.Reg("etc/hostname", "x\n", 0o644)}))
	r := runImgfab(t, nil, "build", "oci:"+src, "-o", filepath.Join(t.TempDir(), "d.raw"))
	if r.code != 1 || strings.Contains(r.stderr, "build: build:") || !strings.HasPrefix(r.stderr, "imgfab build: ") {
		t.Errorf("exit %d, stderr %q (want one 'imgfab build: ' prefix)", r.code, r.stderr)
	}
}

// A push says what it is doing before its first request returns, and the plain result names
// the snapshot.
func TestPushSaysWhatItDoes(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "d.qcow2")
	src := testimage.WriteLayout(t, "q", testimage.GzipTar(t, testimage.BootEntries()))
	build(t, "oci:"+src, "-o", disk)
	f := awstest.New(t)
	r := runImgfab(t, awsEnv(f), "push", "aws", disk, "--no-check", "--name", "said", "--poll-interval", "1ms")
	if r.code != 0 {
		t.Fatalf("push: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "imgfab push: aws: uploading "+disk) {
		t.Errorf("stderr does not say the push started: %q", r.stderr)
	}
	if !strings.Contains(r.stdout, ", snapshot snap-") {
		t.Errorf("the plain result omits the snapshot id: %q", r.stdout)
	}
}

// Without AWS credentials the message says what to set, not the SDK's "no EC2 IMDS role found".
func TestPushAWSNoCredentials(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(imgfabBin, "push", "aws", disk, "--no-check", "--name", "n", "--region", "eu-west-1", "--boot-mode", "uefi",
		"--endpoint-ebs", "http://127.0.0.1:1", "--endpoint-ec2", "http://127.0.0.1:1")
	home := t.TempDir()
	// No credentials anywhere, and no instance metadata service to ask (it would be a request
	// off this machine).
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none")}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v: %s", err, out)
	}
	if !strings.Contains(string(out), "AWS_ACCESS_KEY_ID") || !strings.Contains(string(out), "AWS_PROFILE") {
		t.Errorf("the error does not say what to set: %s", out)
	}
}
