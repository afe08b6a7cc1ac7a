package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
)

// pushOCI runs imgfab push oci ... --json and decodes the result.
func pushOCICLI(t *testing.T, env []string, args ...string) publish.Result {
	t.Helper()
	r := runImgfab(t, env, append([]string{"push", "oci", "--no-check", "--json", "--insecure"}, args...)...)
	if r.code != 0 {
		t.Fatalf("imgfab push oci %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	var res publish.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	return res
}

// TestPushOCI pushes the demo disk to a registry on loopback (go-containerregistry's) as a
// KubeVirt containerDisk and pulls it back: the qcow2 bytes are the same (issue #4, Done when 3);
// a raw disk arrives as the qcow2 `imgfab convert` makes; the digest is reproducible; a rerun
// uploads nothing; --artifact gives the OCI artifact manifest.
func TestPushOCI(t *testing.T) {
	host := ocitest.Serve(t, ocitest.Registry())
	dir := t.TempDir()
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	qc := filepath.Join(dir, "demo.qcow2")
	build(t, src, "-o", qc)
	want, err := os.ReadFile(qc)
	if err != nil {
		t.Fatal(err)
	}

	res := pushOCICLI(t, nil, qc, host+"/vms/demo:1")
	if res.Target != "oci" || !strings.HasPrefix(res.ID, "sha256:") || res.Existing || res.Name != host+"/vms/demo:1" {
		t.Errorf("result %+v", res)
	}
	if got := ocitest.PulledDisk(t, host+"/vms/demo:1"); !bytes.Equal(got, want) {
		t.Errorf("pulled disk/disk.img: %d bytes, differs from the pushed qcow2 (%d bytes)", len(got), len(want))
	}
	if r2 := pushOCICLI(t, nil, qc, host+"/other/repo:x"); r2.ID != res.ID || r2.Existing {
		t.Errorf("same disk to another repository: %s existing=%v, want %s", r2.ID, r2.Existing, res.ID)
	}
	if r3 := pushOCICLI(t, nil, qc, host+"/vms/demo:1"); r3.ID != res.ID || !r3.Existing {
		t.Errorf("rerun: %s existing=%v, want %s existing", r3.ID, r3.Existing, res.ID)
	}
	r := runImgfab(t, nil, "push", "oci", "--no-check", "--insecure", qc, host+"/vms/demo:1")
	if r.code != 0 || !strings.Contains(r.stdout, res.ID) || !strings.Contains(r.stdout, "already there") {
		t.Errorf("plain rerun: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A raw disk: converted; the pulled bytes are what imgfab convert makes.
	raw := filepath.Join(dir, "demo.raw")
	build(t, src, "-o", raw)
	conv := filepath.Join(dir, "conv.qcow2")
	if r := runImgfab(t, nil, "convert", raw, conv); r.code != 0 {
		t.Fatalf("convert: %s", r.stderr)
	}
	wantConv, _ := os.ReadFile(conv)
	rr := pushOCICLI(t, nil, raw, host+"/vms/demo:raw")
	if rr.Details["converted_from"] != "raw" {
		t.Errorf("raw push details %v", rr.Details)
	}
	if got := ocitest.PulledDisk(t, host+"/vms/demo:raw"); !bytes.Equal(got, wantConv) {
		t.Errorf("pulled converted disk: %d bytes, differs from imgfab convert's (%d)", len(got), len(wantConv))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".imgfab-oci-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// --artifact.
	ra := pushOCICLI(t, nil, "--artifact", qc, host+"/disks/demo:1")
	digest, m, body := ocitest.PullManifest(t, host+"/disks/demo:1")
	if digest != ra.ID || m.ArtifactType != "application/vnd.imgfab.disk.v1" ||
		m.Config.MediaType != "application/vnd.oci.empty.v1+json" || len(m.Layers) != 1 ||
		m.Layers[0].MediaType != "application/vnd.imgfab.disk.qcow2" || m.Annotations["io.imgfab.disk.boot-modes"] == "" {
		t.Errorf("artifact manifest %s:\n%s", digest, body)
	}
	if got := ocitest.PullBlob(t, host+"/disks/demo:1", m.Layers[0].Digest.String()); !bytes.Equal(got, want) {
		t.Errorf("pulled artifact blob: %d bytes, differs from the qcow2 (%d)", len(got), len(want))
	}

	// imgfab build --push: the same disk, so the same digest, already there.
	r = runImgfab(t, nil, "build", src, "-o", filepath.Join(dir, "again.qcow2"), "--push", "oci "+host+"/vms/demo:1 --insecure --no-check")
	if r.code != 0 || !strings.Contains(r.stdout, res.ID+" ("+host+"/vms/demo:1), already there") {
		t.Errorf("build --push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Usage errors.
	for _, args := range [][]string{{"push", "oci", qc}, {"push", "oci", "--artifact", qc, qc, "x/y:1"}, {"push", "oci", "--nope", qc, "x/y:1"}} {
		if r := runImgfab(t, nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
}

// TestPushOCICredentials: the registry needs basic auth; ~/.docker/config.json (in a temporary
// HOME) holds it. The push works, and the password appears in no output; with a wrong password
// the push fails with a 401, again without the password.
func TestPushOCICredentials(t *testing.T) {
	const user, secret = "imgfab", "Xq7-imgfab-S3CRET-9d1e"
	host := ocitest.Serve(t, ocitest.BasicAuth(ocitest.Registry(), user, secret))
	dir := t.TempDir()
	qc := filepath.Join(dir, "demo.qcow2")
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "-o", qc)

	env := func(pass string) []string {
		home, dc := ocitest.DockerConfig(t, host, user, pass)
		return []string{"HOME=" + home, "DOCKER_CONFIG=" + dc}
	}
	leaks := func(r runResult) {
		t.Helper()
		enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
		for _, s := range []string{secret, enc, "S3CRET"} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("%q appears in the output:\n%s\n%s", s, r.stdout, r.stderr)
			}
		}
	}
	for _, args := range [][]string{{qc, host + "/vms/c:1"}, {"--artifact", qc, host + "/vms/c:a"}} {
		r := runImgfab(t, env(secret), append([]string{"push", "oci", "--no-check", "--insecure", "--json"}, args...)...)
		if r.code != 0 {
			t.Errorf("push %v with credentials: exit %d\n%s", args, r.code, r.stderr)
		}
		leaks(r)
	}
	r := runImgfab(t, env(secret+"-wrong"), "push", "oci", "--no-check", "--insecure", qc, host+"/vms/c:2")
	if r.code != 1 || !strings.Contains(r.stderr, "401") && !strings.Contains(r.stderr, "UNAUTHORIZED") {
		t.Errorf("wrong password: exit %d, want 1 and a 401\n%s", r.code, r.stderr)
	}
	leaks(r)
}

// TestPushOCIDistribution pushes to the reference registry (distribution v3), run from the binary
// in $IMGFAB_REGISTRY_BIN, `registry` in PATH or ~/.cache/imgfab-bin/registry (make servers), and
// pulls the disk back.
func TestPushOCIDistribution(t *testing.T) {
	addr := startRegistry(t)
	dir := t.TempDir()
	qc := filepath.Join(dir, "demo.qcow2")
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "-o", qc)
	want, _ := os.ReadFile(qc)
	res := pushOCICLI(t, nil, qc, addr+"/vms/demo:1")
	if got := ocitest.PulledDisk(t, addr+"/vms/demo:1"); !bytes.Equal(got, want) {
		t.Errorf("pulled disk/disk.img differs from the pushed qcow2 (%d vs %d bytes)", len(got), len(want))
	}
	if r := pushOCICLI(t, nil, qc, addr+"/vms/demo:1"); !r.Existing || r.ID != res.ID {
		t.Errorf("rerun: %+v, want existing %s", r, res.ID)
	}
	ra := pushOCICLI(t, nil, "--artifact", qc, addr+"/disks/demo:1")
	digest, m, _ := ocitest.PullManifest(t, addr+"/disks/demo:1")
	if digest != ra.ID {
		t.Fatalf("artifact: digest %s want %s", digest, ra.ID)
	}
	got := ocitest.PullBlob(t, addr+"/disks/demo:1", m.Layers[0].Digest.String())
	if !bytes.Equal(got, want) || m.ArtifactType != "application/vnd.imgfab.disk.v1" {
		t.Errorf("artifact: blob %d bytes (want %d), artifactType %q", len(got), len(want), m.ArtifactType)
	}
}

// startRegistry runs the reference registry (distribution v3) on loopback for the test, from
// $IMGFAB_REGISTRY_BIN, `registry` in PATH or ~/.cache/imgfab-bin/registry (make servers), and
// returns its address.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("IMGFAB_REGISTRY_BIN")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "imgfab-bin", "registry") // where `make servers` puts it
		if p, err := exec.LookPath("registry"); err == nil {
			bin = p
		}
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("the distribution registry is not installed: run `make servers` (go install of distribution v3.1.2), " +
				"or put `registry` in PATH or set IMGFAB_REGISTRY_BIN (this integration test needs a real registry)")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)), 0o644)
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 100 {
			t.Fatalf("registry did not answer on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	return addr
}
