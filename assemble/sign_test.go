package assemble_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/secureboot"
)

// stubLayer is a layer with the systemd EFI stub of the demo-uki fixture, so that the demo image
// (which has systemd-boot) can boot through a UKI with systemd-boot in front.
func stubLayer(t *testing.T) string {
	t.Helper()
	stub, err := os.ReadFile(filepath.Join(fixture(t, "demo-uki/root", "mkdemo-uki.sh"), "usr/lib/systemd/boot/efi/linuxx64.efi.stub"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, stub, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testKeys makes a PK/KEK/db set as `imgfab keys create` does.
func testKeys(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := secureboot.CreateKeys(dir, secureboot.KeyOptions{CommonName: "imgfab test", Time: time.Unix(1700000000, 0), Rand: rand.Reader}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSignedReadOnlyReproducible (issue 15): an erofs root under verity, booted through a signed
// UKI with systemd-boot (signed too) and the keys to enroll on the ESP, built twice with the same
// key into every format: the same bytes each time; every EFI binary on the ESP is in the result's
// signed list. Then the signing options that are refused before any work.
func TestSignedReadOnlyReproducible(t *testing.T) {
	keys := testKeys(t)
	src := demoSource(t)
	exts := []string{".raw", ".qcow2", ".vmdk", ".vhd", ".tar.gz", ".raw.zst"}
	sign := &assemble.SignOptions{Key: filepath.Join(keys, "db.key"), Cert: filepath.Join(keys, "db.crt"), Enroll: keys}
	stub := stubLayer(t) // one path: a layer's path is part of the build's seed
	var first assemble.Result
	for i := range 2 {
		dir := t.TempDir()
		var outs []string
		for _, e := range exts {
			outs = append(outs, filepath.Join(dir, "d"+e))
		}
		p := plan(src, outs...)
		p.ExtraLayers = []string{stub}
		p.RootFS, p.Verity, p.Boot.UKI, p.Sign = "erofs", true, true, sign
		res := run(t, p)
		for k, o := range res.Outputs {
			if sum := testtool.FileSum(t, o.Path); sum != o.SHA256 {
				t.Errorf("%s: result says %s, the file has %s", o.Path, o.SHA256, sum)
			}
			if i == 1 && o.SHA256 != first.Outputs[k].SHA256 {
				t.Errorf("%s: %s on the first build, %s on the second", exts[k], first.Outputs[k].SHA256, o.SHA256)
			}
		}
		if i == 0 {
			first = res
			var paths []string
			for _, s := range res.Signed {
				paths = append(paths, s.Path)
				if !strings.Contains(s.Subject, "imgfab test Signature Database Key") {
					t.Errorf("%s signed by %q", s.Path, s.Subject)
				}
			}
			for _, want := range []string{"/EFI/BOOT/BOOTX64.EFI", "/EFI/systemd/systemd-bootx64.efi", res.Boot.Entry} {
				if !slices.Contains(paths, want) {
					t.Errorf("signed %q: %s is not among them", paths, want)
				}
			}
		}
	}

	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			name string
			edit func(*assemble.Plan)
			want string
		}{
			{"no-uki", func(p *assemble.Plan) { p.Boot.UKI = false }, "--sign-key needs --uki"},
			{"no-cert", func(p *assemble.Plan) { p.Sign = &assemble.SignOptions{Key: sign.Key} }, "--sign-key and --sign-cert go together"},
			{"wrong-cert", func(p *assemble.Plan) {
				p.Sign = &assemble.SignOptions{Key: sign.Key, Cert: filepath.Join(keys, "KEK.crt")}
			}, "--sign-key"},
			{"missing-key", func(p *assemble.Plan) {
				p.Sign = &assemble.SignOptions{Key: filepath.Join(keys, "nope.key"), Cert: sign.Cert}
			}, "nope.key"},
			{"no-enroll-files", func(p *assemble.Plan) {
				p.Sign = &assemble.SignOptions{Key: sign.Key, Cert: sign.Cert, Enroll: t.TempDir()}
			}, "PK.auth"},
			{"shim", func(p *assemble.Plan) { p.Boot.Chain = "shim"; p.Boot.UKI = false }, "does not go with --boot-chain shim"},
		} {
			t.Run(c.name, func(t *testing.T) {
				dir := t.TempDir()
				p := plan(src, filepath.Join(dir, "disk.raw"))
				p.ExtraLayers = []string{stub}
				p.RootFS, p.Verity, p.Boot.UKI, p.Sign = "erofs", true, true, sign
				c.edit(&p)
				if msg := runErr(t, p); !strings.Contains(msg, c.want) {
					t.Errorf("error %q, want %q", msg, c.want)
				}
				emptyDir(t, dir)
			})
		}
	})
}
