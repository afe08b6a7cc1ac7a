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
			// --keep hostname: IMGFAB-HOSTNAME-OK checks layer 2's /etc/hostname over layer 1's,
			// which the first-boot preparation would otherwise reset to localhost.
			res := build(t, "oci:"+src+":debian", "--layer", check, "--keep", "hostname", "--cmdline", "console=ttyS0", "-o", qcow, "-o", raw)
			checkOracles(t, raw, res)
			serial := bootUEFI(t, qcow, "qcow2", 10*time.Minute)
			checkDebianMarkers(t, serial)
		})
	}
}

// TestDebianBootsHybrid (issue 5): the debootstrapped Debian 12 plus grub-pc-bin's
// /usr/lib/grub/i386-pc (taken from the demo-bios fixture, as a --layer) builds as hybrid with
// --boot auto, and the one qcow2 boots to multi-user.target under SeaBIOS (GRUB core.img assembled
// by imgfab) and under OVMF (systemd-boot).
func TestDebianBootsHybrid(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow acceptance test (two Debian boots): IMGFAB_SLOW=1 or make test-slow")
	}
	check, err := filepath.Abs(filepath.Join("..", "..", "testdata", "debian-check"))
	if err != nil {
		t.Fatal(err)
	}
	src := fixture(t, "debian/oci", "mkdebian.sh")
	bios := fixture(t, "demo-bios/oci", "mkdemo-bios.sh")
	// Only the GRUB modules: the fixture's bios/ layer also carries the demo's initramfs.
	grub := t.TempDir()
	from := filepath.Join(filepath.Dir(bios), "bios", "usr", "lib", "grub", "i386-pc")
	to := filepath.Join(grub, "usr", "lib", "grub", "i386-pc")
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil || len(ents) < 100 {
		t.Fatalf("grub-pc-bin modules in %s: %d entries, %v", from, len(ents), err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	qcow, raw := filepath.Join(out, "disk.qcow2"), filepath.Join(out, "disk.raw")
	res := build(t, "oci:"+src+":debian", "--layer", check, "--layer", grub, "--keep", "hostname", "--cmdline", "console=ttyS0",
		"--source-date-epoch", "1700000000", "-o", qcow, "-o", raw)
	if res.Boot.Mode != "hybrid" || res.Boot.BIOSLoader != "grub" || res.Boot.UEFILoader != "systemd-boot" {
		t.Fatalf("--boot auto with grub-pc modules: boot %+v, want hybrid (grub + systemd-boot)", res.Boot)
	}
	checkOracles(t, raw, res)
	for _, fw := range []string{"SeaBIOS", "OVMF"} {
		var serial string
		if fw == "SeaBIOS" {
			serial = bootBIOS(t, qcow, "qcow2", 10*time.Minute)
		} else {
			serial = bootUEFI(t, qcow, "qcow2", 10*time.Minute)
		}
		for _, want := range []string{"IMGFAB-MULTIUSER active", "IMGFAB-WHITEOUT-OK", "IMGFAB-RW-OK", "IMGFAB-CHECK-DONE"} {
			if !strings.Contains(serial, want) {
				t.Errorf("%s: serial console lacks %q", fw, want)
			}
		}
		if t.Failed() {
			t.Fatalf("%s serial tail:\n%s", fw, tail(serial, 5000))
		}
		t.Logf("%s: Debian 12 reached multi-user.target", fw)
	}
}

// checkDebianMarkers checks the serial console of a Debian fixture booted with
// testdata/debian-check: multi-user reached, the whiteout and opaque directory of layer 2 applied,
// its marker and hostname there, the root writable.
func checkDebianMarkers(t *testing.T, serial string) {
	t.Helper()
	for _, want := range []string{"IMGFAB-MULTIUSER active", "IMGFAB-WHITEOUT-OK", "IMGFAB-OPAQUE-OK",
		"IMGFAB-LAYER2-OK", "IMGFAB-HOSTNAME-OK", "IMGFAB-RW-OK", "IMGFAB-CHECK-DONE"} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("serial tail:\n%s", tail(serial, 5000))
	}
}
