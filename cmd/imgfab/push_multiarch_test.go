package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/publish/aws/awstest"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
)

// TestPushArm64 (issue 14, "Done when" 4): push takes the architecture from the disk. The arm64
// demo, built here, pushed through the CLI: the EC2 fake registers it with Architecture=arm64 and
// BootMode=uefi, the Compute fake inserts it with architecture ARM64; the amd64 and arm64 demos
// pushed together make one containerDisk index whose platforms, pulled back with skopeo
// --override-arch, give each its own disk byte for byte.
func TestPushArm64(t *testing.T) {
	dir := t.TempDir()
	arm := filepath.Join(dir, "demo-arm64.qcow2")
	amd := filepath.Join(dir, "demo-amd64.qcow2")
	build(t, "oci:"+fixture(t, "demo-arm64/oci", "mkdemo-arm64.sh")+":demo", "-o", arm)
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "-o", amd)

	t.Run("aws", func(t *testing.T) {
		f := awstest.New(t)
		if r := runImgfab(t, awsEnv(f), "push", "aws", arm, "--no-check", "--name", "arm", "--poll-interval", "1ms"); r.code != 0 {
			t.Fatalf("push aws: exit %d\n%s", r.code, r.stderr)
		}
		if im := f.Image("arm"); im.Arch() != "arm64" || im.BootMode() != "uefi" {
			t.Errorf("RegisterImage Architecture %q BootMode %q, want arm64 uefi", im.Arch(), im.BootMode())
		}
	})
	t.Run("gcp", func(t *testing.T) {
		_, cs, env, _ := gcpServers(t)
		if r := runImgfab(t, env, "push", "gcp", arm, "--no-check", "--bucket", "bkt", "--name", "arm", "--poll-interval", "1ms"); r.code != 0 {
			t.Fatalf("push gcp: exit %d\n%s", r.code, r.stderr)
		}
		if a := cs.LastInsert(t).Architecture; a != "ARM64" {
			t.Errorf("images.insert architecture %q, want ARM64", a)
		}
	})
	t.Run("oci-index", func(t *testing.T) {
		skopeo := testtool.Need(t, "skopeo", "skopeo")
		host := ocitest.Serve(t, ocitest.Registry())
		ref := host + "/vms/demo:multi"
		pushOCICLI(t, nil, amd, arm, ref)
		_, idx := ocitest.PullIndex(t, ref)
		var plats []string
		for _, m := range idx.Manifests {
			if m.Platform != nil {
				plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
			}
		}
		if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
			t.Fatalf("index platforms %v, want linux/amd64,linux/arm64", plats)
		}
		for _, c := range []struct{ arch, disk string }{{"amd64", amd}, {"arm64", arm}} {
			want, err := os.ReadFile(c.disk)
			if err != nil {
				t.Fatal(err)
			}
			_, cfg, es := ocitest.PullPlatform(t, ref, v1.Platform{OS: "linux", Architecture: c.arch})
			if cfg.Architecture != c.arch {
				t.Errorf("%s: config architecture %q", c.arch, cfg.Architecture)
			}
			if got := ocitest.CheckContainerDisk(t, es, want); !bytes.Equal(got, want) {
				t.Errorf("%s: pulled disk differs from the pushed one", c.arch)
			}
			out := filepath.Join(t.TempDir(), c.arch)
			cmd := exec.Command(skopeo, "--insecure-policy", "--override-os", "linux", "--override-arch", c.arch,
				"copy", "--src-tls-verify=false", "docker://"+ref, "dir:"+out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy --override-arch %s: %v\n%s", c.arch, err, b)
			}
			var m v1.Manifest
			if b, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || json.Unmarshal(b, &m) != nil || len(m.Layers) != 1 {
				t.Fatalf("skopeo's manifest.json: %v", err)
			}
			if got := ocitest.LayerFileDisk(t, filepath.Join(out, m.Layers[0].Digest.Hex)); !bytes.Equal(got, want) {
				t.Errorf("skopeo --override-arch %s: the disk differs from the pushed %s disk", c.arch, c.arch)
			}
		}
	})
}
