package ext4

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestDirHash compares dirHash with debugfs's dx_hash (signed half_md4 with the test seed).
func TestDirHash(t *testing.T) {
	bin := testtool.Need(t, "debugfs", "e2fsprogs")
	s := testOpts.HashSeed
	seedStr := fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
	hs := [4]uint32{le.Uint32(s[0:]), le.Uint32(s[4:]), le.Uint32(s[8:]), le.Uint32(s[12:])}
	for _, name := range []string{"a", "passwd", "lost+found", "\xff\xfe\x80high", strings.Repeat("long-name-", 20), "exactly-32-bytes-long-name-xxxxx"} {
		out, err := exec.Command(bin, "-R", "dx_hash -h half_md4 -s "+seedStr+" "+name, "/dev/null").CombinedOutput()
		_ = err
		want := fmt.Sprintf("Hash of %s is 0x%x", name, dirHash(name, hs))
		if !strings.Contains(string(out), want) {
			t.Errorf("dirHash(%q): want %q in %s", name, want, out)
		}
	}
}
