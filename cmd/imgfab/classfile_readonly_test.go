package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/secureboot"
)

// classStubLayer writes, under dir/stub, a layer with the systemd EFI stub of the demo-uki
// fixture, so that the demo image (which has systemd-boot, to enroll keys) boots through a UKI.
func classStubLayer(t *testing.T, dir string) {
	t.Helper()
	stub, err := os.ReadFile(filepath.Join(fixture(t, "demo-uki/root", "mkdemo-uki.sh"), "usr/lib/systemd/boot/efi/linuxx64.efi.stub"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "stub/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, stub, 0o644); err != nil {
		t.Fatal(err)
	}
}

// classKeys makes a PK/KEK/db set in dir, as `imgfab keys create` does.
func classKeys(t *testing.T, dir, cn string) {
	t.Helper()
	if err := secureboot.CreateKeys(dir, secureboot.KeyOptions{CommonName: cn, Time: time.Unix(1700000000, 0), Rand: rand.Reader}); err != nil {
		t.Fatal(err)
	}
}

// TestClassFileReadOnly: the read-only root and signing flags print as rootfs, verity and
// secure_boot (--print-spec), and the class file builds the demo image (with the systemd stub
// as a layer) to the same bytes as the flags: an erofs root under verity, every EFI binary
// signed, the keys to enroll on the ESP. Built again it comes from the output cache; a change of
// the certificate file's bytes, of an .auth file or of the key pair (the paths kept) is not
// served from the cache. A key that cannot be read is an error at secure_boot's position.
func TestClassFileReadOnly(t *testing.T) {
	src := fixture(t, "demo/oci", "mkdemo.sh")
	dir := t.TempDir()
	classStubLayer(t, dir) // before the chdir: fixtures are found from the package's directory
	t.Chdir(dir)
	t.Setenv("SOURCE_DATE_EPOCH", "")
	classKeys(t, "keys", "imgfab test")
	classKeys(t, "keys2", "imgfab other")
	cacheDir := filepath.Join(dir, "cache")

	flags := []string{"build", "oci:" + src + ":demo", "--layer", "stub", "--cmdline", "console=ttyS0",
		"--rootfs", "erofs", "--verity", "--uki", "--sign-key", "keys/db.key", "--sign-cert", "keys/db.crt", "--enroll-keys", "keys",
		"-o", "out/ro.raw"}
	code, spec, errs := imgfabIn(t, append(flags, "--print-spec", "--class", "ro")...)
	if code != 0 {
		t.Fatalf("--print-spec: exit %d: %s", code, errs)
	}
	for _, want := range []string{"  ro:\n", "    boot:\n      uki: true\n", "    rootfs: erofs\n", "    verity: true\n",
		"    secure_boot: {key: keys/db.key, cert: keys/db.crt, enroll: keys}\n"} {
		if !strings.Contains(spec, want) {
			t.Errorf("--print-spec has no %q:\n%s", want, spec)
		}
	}
	if err := os.WriteFile("imgfab.yaml", []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("out", 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := imgfabIn(t, flags...); code != 0 {
		t.Fatalf("flags: exit %d: %s", code, errs)
	}
	fromFlags := sha(t, "out/ro.raw")
	if err := os.Remove("out/ro.raw"); err != nil {
		t.Fatal(err)
	}

	buildFile := func(what string) classResult {
		t.Helper()
		code, out, errs := imgfabIn(t, "build", "-f", "imgfab.yaml", "--json", "--cache", cacheDir)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", what, code, errs)
		}
		rs := classLines(t, out)
		if len(rs) != 1 || len(rs[0].Outputs) != 1 || sha(t, rs[0].Outputs[0].Path) != rs[0].Outputs[0].SHA256 {
			t.Fatalf("%s: results %+v", what, rs)
		}
		return rs[0]
	}
	first := buildFile("first build")
	if first.Cached || first.Outputs[0].SHA256 != fromFlags {
		t.Errorf("first build: cached %v, sha256 %s; the flags gave %s", first.Cached, first.Outputs[0].SHA256, fromFlags)
	}
	if first.RootFS.Type != "erofs" || first.Verity == nil || !strings.Contains(first.Cmdline, "roothash="+first.Verity.RootHash) {
		t.Errorf("rootfs %+v, verity %+v, cmdline %q", first.RootFS, first.Verity, first.Cmdline)
	}
	signedEntry := false
	for _, s := range first.Signed {
		signedEntry = signedEntry || s.Path == first.Boot.Entry
		if !strings.Contains(s.Subject, "imgfab test Signature Database Key") {
			t.Errorf("%s signed by %q", s.Path, s.Subject)
		}
	}
	if !signedEntry || len(first.Signed) < 2 {
		t.Errorf("signed %+v: want systemd-boot and the UKI %s", first.Signed, first.Boot.Entry)
	}
	if again := buildFile("second build"); !again.Cached || again.Outputs[0].SHA256 != first.Outputs[0].SHA256 {
		t.Errorf("second build: cached %v, sha256 %s", again.Cached, again.Outputs[0].SHA256)
	}

	// The same certificate, its file's bytes changed: built, not copied (the same bytes: the
	// signatures embed the certificate, not its file).
	crt, err := os.ReadFile("keys/db.crt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("keys/db.crt", append(crt, "\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := buildFile("certificate file changed"); r.Cached || r.Outputs[0].SHA256 != first.Outputs[0].SHA256 {
		t.Errorf("certificate file changed: cached %v, sha256 %s, first %s", r.Cached, r.Outputs[0].SHA256, first.Outputs[0].SHA256)
	}
	// Another PK.auth at the same path: built, and the ESP differs.
	replaceFile(t, "keys2/PK.auth", "keys/PK.auth")
	enrolled := buildFile("PK.auth changed")
	if enrolled.Cached || enrolled.Outputs[0].SHA256 == first.Outputs[0].SHA256 {
		t.Errorf("PK.auth changed: cached %v, sha256 %s as before", enrolled.Cached, enrolled.Outputs[0].SHA256)
	}
	// Another key pair at the same paths: built, signed by the other key.
	replaceFile(t, "keys2/db.key", "keys/db.key")
	replaceFile(t, "keys2/db.crt", "keys/db.crt")
	other := buildFile("key pair changed")
	if other.Cached || other.Outputs[0].SHA256 == enrolled.Outputs[0].SHA256 || len(other.Signed) == 0 ||
		!strings.Contains(other.Signed[0].Subject, "imgfab other") {
		t.Errorf("key pair changed: cached %v, sha256 %s (before %s), signed %+v", other.Cached, other.Outputs[0].SHA256, enrolled.Outputs[0].SHA256, other.Signed)
	}

	// A key that is not there: an error naming secure_boot's line, nothing built.
	if err := os.Remove("keys/db.key"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove("out/ro.raw"); err != nil {
		t.Fatal(err)
	}
	line := 1 + strings.Count(spec[:strings.Index(spec, "secure_boot:")], "\n")
	for _, cacheFlag := range []string{"--cache=" + cacheDir, "--no-cache"} {
		code, _, errs = imgfabIn(t, "build", "-f", "imgfab.yaml", cacheFlag)
		if want := "imgfab.yaml:" + strconv.Itoa(line) + ":18: classes.ro.secure_boot: reading signing key"; code == 0 || !strings.Contains(errs, want) {
			t.Errorf("missing key, %s: exit %d, stderr %s; want %q", cacheFlag, code, errs, want)
		}
		if _, err := os.Stat("out/ro.raw"); err == nil {
			t.Errorf("%s: a build without its key left an output", cacheFlag)
		}
	}
}

// TestClassFileReadOnlyFlags: with -f, the read-only root and signing flags are the file's keys;
// --print-spec refuses what a class file cannot say, with the file's words.
func TestClassFileReadOnlyFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "imgfab.yaml")
	if err := os.WriteFile(file, []byte("classes:\n  a:\n    from: oci:./layout\n    outputs: [{path: a.raw}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", file, "--rootfs", "erofs", "--verity"}, "the class file sets --rootfs (the file's rootfs), --verity (the file's verity)"},
		{[]string{"-f", file, "--sign-key", "k", "--sign-cert", "c", "--enroll-keys", "d"},
			"--sign-key (the file's secure_boot.key), --sign-cert (the file's secure_boot.cert), --enroll-keys (the file's secure_boot.enroll)"},
		{[]string{"oci:./layout", "-o", "a.raw", "--verity", "--print-spec"}, "classes.default.verity: verity needs rootfs: erofs"},
		{[]string{"oci:./layout", "-o", "a.raw", "--sign-key", "k", "--sign-cert", "c", "--print-spec"}, "classes.default.secure_boot: secure_boot needs boot.uki: true"},
		{[]string{"oci:./layout", "-o", "a.raw", "--uki", "--sign-key", "k", "--print-spec"}, "key and cert go together"},
	} {
		code, _, errs := imgfabIn(t, append([]string{"build"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %s; want 2 and %q", c.args, code, errs, c.want)
		}
	}
	code, out, errs := imgfabIn(t, "build", "oci:./layout", "-o", "a.raw", "--rootfs", "ext4", "--print-spec")
	if code != 0 || strings.Contains(out, "rootfs") || strings.Contains(out, "verity") || strings.Contains(out, "secure_boot") {
		t.Errorf("--rootfs ext4 --print-spec: exit %d, %s%s", code, out, errs)
	}
}

func replaceFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
