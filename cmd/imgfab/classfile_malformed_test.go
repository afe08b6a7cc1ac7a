package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClassFileMalformed: malformed class files, and classes that ask the image for what it
// cannot give (a unit it lacks, a uid it already has), each exit 2 with FILE:LINE:COL and what
// was expected, and leave no output.
func TestClassFileMalformed(t *testing.T) {
	src := fixture(t, "demo/oci", "mkdemo.sh")
	dir := t.TempDir()
	head := "classes:\n  a:\n    from: oci:" + src + ":demo\n    outputs: [{path: a.raw}]\n"
	for i, c := range []struct {
		body string // after head, unless it starts with "classes:"
		pos  string // LINE:COL
		want string
	}{
		{"    bogus: 1\n", "5:5", `unknown key "bogus"`},
		{"    hostname: [web]\n", "5:15", "want"},
		{"    hostname: a\n    hostname: b\n", "6:5", "hostname"},
		{"classes:\n  a:\n    from: oci:x\n  a:\n    from: oci:y\n", "4:3", "a"},
		{"    users: [{name: ops, uid: 1500, password: hunter2}]\n", "5:36", "password_hash"},
		{"    files: [{path: /etc/../../x, content: a}]\n", "5:20", ".."},
		{"    files: [{path: etc/motd, content: a}]\n", "5:20", "absolute"},
		{"    files: [{path: /etc/motd, content: a, source: m}]\n", "5:43", "both content and source"},
		{"classes:\n  a:\n    from: \"\"\n", "3:11", "from"},
		{"    platforms: [linux/sparc]\n", "5:17", "sparc"},
		{"    files: [{path: /etc/motd, content: a, mode: \"999\"}]\n", "5:49", "octal mode"},
		{"    disk: {size: lots}\n", "5:18", "want a size"},
		{"    users: [{name: ops, uid: many}]\n", "5:30", "want a number"},
		{"    users: [{name: ops, uid: 1500, ssh_authorized_keys: [\"ssh-rsa notakey\"]}]\n", "5:58", "not base64"},
		{"    hostname: \"-web\"\n", "5:15", "hostname"},
		{"    publish: [{target: aws, name: w, secret_key: x}]\n", "5:38", "looks like a credential"},
		{"    publish: [{target: ftp, name: w}]\n", "5:24", "ftp"},
		{"    boot: {mode: pxe}\n", "5:18", "pxe"},
		{"    units: {enable: [nginx.service]}\n", "5:22", "nginx.service"},
		{"    users: [{name: ops, uid: 0}]\n", "5:30", "root's"},
		{"    users: [{name: root, uid: 1500}]\n", "5:13", "clashes with /etc/passwd:1 (root)"},
		{"    rootfs: zfs\n", "5:13", `want one of "ext4", "erofs", got "zfs"`},
		{"    verity: true\n", "5:13", "verity needs rootfs: erofs"},
		{"    secure_boot: {key: k}\n", "5:19", "key and cert go together"},
		{"    secure_boot: {key: k, cert: c}\n", "5:18", "secure_boot needs boot.uki: true"},
	} {
		name := filepath.Join(dir, "bad.yaml")
		body := c.body
		if !strings.HasPrefix(body, "classes:") {
			body = head + body
		}
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Chdir(dir)
		code, _, errs := imgfabIn(t, "build", "-f", name)
		if code != 2 || !strings.Contains(errs, name+":"+c.pos+":") || !strings.Contains(errs, c.want) {
			t.Errorf("case %d:\n%s\nexit %d, stderr %s\nwant 2 with %s:%s: and %q", i, c.body, code, errs, name, c.pos, c.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "a.raw")); err == nil {
			t.Errorf("case %d left a.raw", i)
			os.Remove(filepath.Join(dir, "a.raw"))
		}
	}
}
