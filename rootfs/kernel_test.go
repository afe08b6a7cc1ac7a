package rootfs

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

func TestFindKernel(t *testing.T) {
	f := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	cases := []struct {
		name string
		fs   fstest.MapFS
		want Kernel
	}{
		{"debian", fstest.MapFS{
			"boot/vmlinuz-6.1.0-9-amd64":      f("k1"),
			"boot/vmlinuz-6.1.0-28-amd64":     f("k2"),
			"boot/initrd.img-6.1.0-28-amd64":  f("i2"),
			"boot/initrd.img-6.1.0-9-amd64":   f("i1"),
			"boot/vmlinuz-6.1.0-30-amd64.old": f("old"),
		}, Kernel{"6.1.0-28-amd64", "boot/vmlinuz-6.1.0-28-amd64", "boot/initrd.img-6.1.0-28-amd64"}},
		{"fedora", fstest.MapFS{
			"boot/vmlinuz-6.5.6-300.fc39.x86_64":       f("k"),
			"boot/initramfs-6.5.6-300.fc39.x86_64.img": f("i"),
		}, Kernel{"6.5.6-300.fc39.x86_64", "boot/vmlinuz-6.5.6-300.fc39.x86_64", "boot/initramfs-6.5.6-300.fc39.x86_64.img"}},
		{"bootc", fstest.MapFS{
			"usr/lib/modules/6.8.0/vmlinuz":       f("k"),
			"usr/lib/modules/6.8.0/initramfs.img": f("i"),
			"boot/vmlinuz-5.0":                    f("older convention loses"),
		}, Kernel{"6.8.0", "usr/lib/modules/6.8.0/vmlinuz", "usr/lib/modules/6.8.0/initramfs.img"}},
		{"alpine", fstest.MapFS{
			"boot/vmlinuz-lts":   f("k"),
			"boot/initramfs-lts": f("i"),
		}, Kernel{"lts", "boot/vmlinuz-lts", "boot/initramfs-lts"}},
		{"no initrd", fstest.MapFS{"boot/vmlinuz-6.1": f("k")}, Kernel{"6.1", "boot/vmlinuz-6.1", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := FindKernel(c.fs)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestFindKernelMissing(t *testing.T) {
	_, err := FindKernel(fstest.MapFS{"etc/hostname": {Data: []byte("x")}, "boot/vmlinuz-1.0": {Mode: fs.ModeDir | 0o755}})
	var nf *KernelNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("want KernelNotFoundError, got %v", err)
	}
	for _, want := range []string{"/boot/vmlinuz-*", "/usr/lib/modules/*/vmlinuz"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not list %s", err, want)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range [][2]string{{"6.1.0-9", "6.1.0-28"}, {"5.10", "6.1"}, {"6.1", "6.1.1"}, {"lts", "virt"}} {
		if !versionLess(c[0], c[1]) || versionLess(c[1], c[0]) {
			t.Errorf("want %s < %s", c[0], c[1])
		}
	}
}

func TestOSRelease(t *testing.T) {
	m, err := OSRelease(fstest.MapFS{"usr/lib/os-release": {Data: []byte("# c\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if m["NAME"] != "Debian GNU/Linux" || m["ID"] != "debian" || m["VERSION_ID"] != "12" {
		t.Fatalf("got %v", m)
	}
}

// TestOSReleaseBounded: an os-release bigger than MaxOSRelease (a sparse file costs the image
// nothing) or not a regular file is refused, not read.
func TestOSReleaseBounded(t *testing.T) {
	big := fstest.MapFS{"etc/os-release": {Data: []byte("NAME=x\n" + strings.Repeat("#", MaxOSRelease))}}
	if _, err := OSRelease(big); err == nil || !strings.Contains(err.Error(), "/etc/os-release") || !strings.Contains(err.Error(), "more than the 65536") {
		t.Errorf("big: got %v", err)
	}
	dev := fstest.MapFS{"etc/os-release": {Mode: fs.ModeDevice | fs.ModeCharDevice}}
	if _, err := OSRelease(dev); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("device: got %v", err)
	}
	ok := fstest.MapFS{"etc/os-release": {Data: []byte("NAME=x\n" + strings.Repeat("#", MaxOSRelease-7))}}
	if m, err := OSRelease(ok); err != nil || m["NAME"] != "x" {
		t.Errorf("at the limit: %v %v", m, err)
	}
}
