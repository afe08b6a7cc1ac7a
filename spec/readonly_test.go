package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// readOnly is a class with a read-only root under verity, booted through a signed UKI.
const readOnly = `classes:
  ro:
    from: oci:./layout:demo
    boot: {uki: true}
    rootfs: erofs
    verity: true
    secure_boot:
      key: keys/db.key
      cert: /etc/imgfab/db.crt
      enroll: keys
    outputs: [{path: out/ro.qcow2}]
`

// TestReadOnlyKeys: rootfs, verity and secure_boot are decoded with their positions, the
// secure_boot paths made absolute against the file's directory, printed back by YAML (flow
// style for secure_boot) and read again to the same class, and they enter the canonical form.
func TestReadOnlyKeys(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "imgfab.yaml")
	c := mustParse(t, name, readOnly).Class("ro")
	at := func(line, col int) Pos { return Pos{File: name, Line: line, Col: col} }
	if c.RootFS != "erofs" || c.RootFSPos != at(5, 13) || !c.Verity || c.VerityPos != at(6, 13) {
		t.Errorf("rootfs %q at %v, verity %v at %v", c.RootFS, c.RootFSPos, c.Verity, c.VerityPos)
	}
	want := &SecureBoot{
		Key: "keys/db.key", Cert: "/etc/imgfab/db.crt", Enroll: "keys",
		KeyAbs: filepath.Join(dir, "keys/db.key"), CertAbs: "/etc/imgfab/db.crt", EnrollAbs: filepath.Join(dir, "keys"),
		Pos: at(8, 7),
	}
	if !reflect.DeepEqual(c.SecureBoot, want) {
		t.Errorf("secure_boot %+v, want %+v", c.SecureBoot, want)
	}
	f := mustParse(t, name, readOnly)
	out := string(f.YAML())
	for _, line := range []string{"    rootfs: erofs\n", "    verity: true\n", "    secure_boot: {key: keys/db.key, cert: /etc/imgfab/db.crt, enroll: keys}\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("YAML has no %q:\n%s", line, out)
		}
	}
	canon := string(c.Canonical())
	for _, kv := range []string{`"rootfs":"erofs"`, `"verity":true`, `"secure_boot":{"cert":"/etc/imgfab/db.crt","enroll":"keys","key":"keys/db.key"}`} {
		if !strings.Contains(canon, kv) {
			t.Errorf("canonical form has no %s:\n%s", kv, canon)
		}
	}
	// Each value changes the id; the paths are as written, not resolved.
	for _, change := range [][2]string{
		{"verity: true", "verity: false"},
		{"key: keys/db.key", "key: keys/other.key"},
		{"cert: /etc/imgfab/db.crt", "cert: keys/db.crt"},
		{"      enroll: keys\n", ""},
	} {
		other := mustParse(t, name, strings.Replace(readOnly, change[0], change[1], 1)).Class("ro").Canonical()
		if string(other) == canon {
			t.Errorf("changing %q to %q kept the canonical form", change[0], change[1])
		}
	}
	if elsewhere := mustParse(t, "/elsewhere/imgfab.yaml", readOnly).Class("ro").Canonical(); string(elsewhere) != canon {
		t.Error("the canonical form depends on the file's directory")
	}
	// Without enroll, YAML leaves it out.
	noEnroll := mustParse(t, name, strings.Replace(readOnly, "      enroll: keys\n", "", 1))
	if sb := noEnroll.Classes[0].SecureBoot; sb.Enroll != "" || sb.EnrollAbs != "" || strings.Contains(string(noEnroll.YAML()), "enroll") {
		t.Errorf("no enroll: %+v\n%s", sb, noEnroll.YAML())
	}
}

// TestReadOnlyDefaultsKeepIDs: a class that leaves rootfs, verity and secure_boot out, or writes
// their defaults (rootfs: ext4, verity: false), has the canonical form and id it had before the
// keys existed: the ids of the full example's classes are pinned.
func TestReadOnlyDefaultsKeepIDs(t *testing.T) {
	f := mustParse(t, "imgfab.yaml", full)
	for name, id := range map[string]string{
		"web":    "3ba39a6558ccd3c948e85cf9ebe7e78e1691c0147ab7f26889c5d2477145194b",
		"worker": "6962948396d5c6aee0ec6fc4e2b09d7aecad388a2810e0d96a70ee557d6012f9",
	} {
		canon := f.Class(name).Canonical()
		if sum := sha256.Sum256(canon); hex.EncodeToString(sum[:]) != id {
			t.Errorf("class %s: id %x, pinned %s:\n%s", name, sum, id, canon)
		}
		for _, k := range []string{"rootfs", "verity", "secure_boot"} {
			if strings.Contains(string(canon), `"`+k+`"`) {
				t.Errorf("class %s: %s in the canonical form of a class without it", name, k)
			}
		}
	}
	base := "classes:\n  c:\n    from: oci:./l\n"
	want := string(mustParse(t, "a.yaml", base).Classes[0].Canonical())
	for _, add := range []string{"    rootfs: ext4\n", "    verity: false\n", "    rootfs: ext4\n    verity: false\n"} {
		if got := string(mustParse(t, "a.yaml", base+add).Classes[0].Canonical()); got != want {
			t.Errorf("%q changed the canonical form:\n%s\n%s", add, got, want)
		}
	}
	if got := string(mustParse(t, "a.yaml", base+"    rootfs: erofs\n").Classes[0].Canonical()); got == want ||
		!strings.Contains(got, `"rootfs":"erofs","source_date_epoch":null`) || !strings.Contains(got, `"verity":false`) {
		t.Errorf("rootfs: erofs: %s", got)
	}
}
