// Package testtool finds what tests need from outside the Go code: the programs used as oracles
// (e2fsck, qemu-img, sgdisk, …; imgfab itself never runs them) and the fixtures built by the
// scripts under testdata/; and the checks built on them that several packages' tests share
// (oracle.go: a file's sha256, a partition copied out, the structural oracles of a built disk).
//
// A missing tool fails the test under CI (CI set in the environment: .ci/run installs every
// tool, so a missing one is a broken install that must not pass silently) and skips it elsewhere,
// naming the Debian package to install. A missing fixture is treated the same way, naming the
// script that builds it.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Need returns the path of the program name, from the Debian package pkg.
func Need(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (apt-get install %s): this test needs it as an oracle, and CI must have it", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s); skipped outside CI (under CI=true this fails)", name, pkg)
	return ""
}

// Fixture returns the absolute path of testdata/cache/rel, a fixture made by testdata/script
// (`make fixtures` builds the demo ones, `make debian-fixture` the Debian ones; both need root).
// rel is any path in the cache; a directory named oci* must hold an OCI layout's index.json. A
// missing fixture fails the test under CI (make test builds every fixture first) and skips it
// elsewhere, naming the script that makes it.
func Fixture(t testing.TB, rel, script string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("fixture %s: %v", rel, err)
	}
	p := filepath.Join(root, "testdata", "cache", rel)
	probe := p
	if strings.HasPrefix(filepath.Base(rel), "oci") { // an OCI layout is there once its index is
		probe = filepath.Join(p, "index.json")
	}
	if _, err := os.Stat(probe); err != nil {
		msg := fmt.Sprintf("fixture testdata/cache/%s missing: run `bash testdata/%s` as root (or `make fixtures debian-fixture`)", rel, script)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipped outside CI (under CI=true this fails)")
	}
	return p
}

// moduleRoot is the nearest directory at or above the working directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = up
	}
}
