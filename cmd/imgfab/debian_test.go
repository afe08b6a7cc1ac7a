package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebianBootsMultiUser is the acceptance test of the vertical slice: a debootstrapped Debian 12
// (testdata/mkdebian.sh: two layers, the second deleting /etc/motd by whiteout and replacing
// /etc/skel with an opaque directory), plus testdata/debian-check added with --layer, boots under
// OVMF to multi-user.target, where a unit prints what it sees. Both OCI and Docker v2 media types.
// It needs the Debian fixture (several minutes of debootstrap), so it runs with IMGFAB_SLOW=1
// (make test-slow); CI runs it.
func TestDebianBootsMultiUser(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow acceptance test (debootstrap + two Debian boots): IMGFAB_SLOW=1 or make test-slow")
	}
	check, err := filepath.Abs(filepath.Join("..", "..", "testdata", "debian-check"))
	if err != nil {
		t.Fatal(err)
	}
	for _, variant := range []string{"oci", "oci-docker"} {
		t.Run(variant, func(t *testing.T) {
			src := fixture(t, "debian/"+variant, "mkdebian.sh")
			out := t.TempDir()
			qcow, raw := filepath.Join(out, "disk.qcow2"), filepath.Join(out, "disk.raw")
			res := build(t, "oci:"+src+":debian", "--layer", check, "--cmdline", "console=ttyS0", "-o", qcow, "-o", raw)
			checkOracles(t, raw, res)
			serial := bootUEFI(t, qcow, "qcow2", 10*time.Minute)
			for _, want := range []string{"IMGFAB-MULTIUSER active", "IMGFAB-WHITEOUT-OK", "IMGFAB-OPAQUE-OK",
				"IMGFAB-LAYER2-OK", "IMGFAB-HOSTNAME-OK", "IMGFAB-RW-OK", "IMGFAB-CHECK-DONE"} {
				if !strings.Contains(serial, want) {
					t.Errorf("serial console lacks %q", want)
				}
			}
			if t.Failed() {
				t.Logf("serial tail:\n%s", tail(serial, 5000))
			}
		})
	}
}
