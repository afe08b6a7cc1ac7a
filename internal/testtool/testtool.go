// Package testtool finds the outside programs that tests use as oracles (e2fsck, qemu-img,
// sgdisk, …). imgfab itself never runs them.
//
// A missing tool fails the test under CI (CI set in the environment: .ci/run installs every
// tool, so a missing one is a broken install that must not pass silently) and skips it elsewhere,
// naming the Debian package to install.
package testtool

import (
	"os"
	"os/exec"
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
