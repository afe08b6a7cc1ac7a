package bootloader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/rootfs"
)

func testTree(initrdSize int) fstest.MapFS {
	big := bytes.Repeat([]byte("initrd-data-"), initrdSize/12)
	return fstest.MapFS{
		"usr/lib/systemd/boot/efi/systemd-bootx64.efi": {Data: []byte("MZ fake systemd-boot")},
		"boot/vmlinuz-6.1.0-28-amd64":                  {Data: bytes.Repeat([]byte{0xAB}, 300_000)},
		"boot/initrd.img-6.1.0-28-amd64":               {Data: big},
		"etc/os-release":                               {Data: []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")},
	}
}

func writeESP(t *testing.T, tree fstest.MapFS, size int64) (string, Entry, error) {
	t.Helper()
	k, err := rootfs.FindKernel(tree)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "esp.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size + 1<<20); err != nil {
		t.Fatal(err)
	}
	e, err := InstallSystemdBoot(context.Background(), f, 1<<20, size, Config{
		Tree: tree, Kernel: k, Options: "root=PARTUUID=X rw console=ttyS0", Epoch: time.Unix(1700000000, 0),
	})
	return path, e, err
}

func TestInstallSystemdBoot(t *testing.T) {
	fsck := testtool.Need(t, "fsck.vfat", "dosfstools")
	mtype := testtool.Need(t, "mtype", "mtools")
	tree := testTree(5 << 20)
	path, e, err := writeESP(t, tree, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	// fsck.vfat (dosfstools 4.2) has no offset option: check a copy of the region.
	region := filepath.Join(t.TempDir(), "region.img")
	if err := exec.Command("dd", "if="+path, "of="+region, "bs=1M", "skip=1", "status=none").Run(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fsck, "-n", region).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
	img := path + "@@1M"
	read := func(p string) []byte {
		out, err := exec.Command(mtype, "-i", img, "::"+p).Output()
		if err != nil {
			t.Fatalf("mtype %s: %v", p, err)
		}
		return out
	}
	if got := read("/EFI/BOOT/BOOTX64.EFI"); string(got) != "MZ fake systemd-boot" {
		t.Errorf("BOOTX64.EFI = %q", got)
	}
	if got := read("/EFI/systemd/systemd-bootx64.efi"); string(got) != "MZ fake systemd-boot" {
		t.Errorf("systemd-bootx64.efi = %q", got)
	}
	if got := read(e.Linux); sha256.Sum256(got) != sha256.Sum256(tree["boot/vmlinuz-6.1.0-28-amd64"].Data) {
		t.Errorf("kernel on ESP differs (%d bytes)", len(got))
	}
	if got := read(e.Initrd); !bytes.Equal(got, tree["boot/initrd.img-6.1.0-28-amd64"].Data) {
		t.Errorf("initrd on ESP differs (%d bytes)", len(got))
	}
	conf := string(read(e.Conf))
	for _, want := range []string{"title Debian GNU/Linux 12 (bookworm)\n", "linux /imgfab/6.1.0-28-amd64/linux\n",
		"initrd /imgfab/6.1.0-28-amd64/initrd\n", "options root=PARTUUID=X rw console=ttyS0\n", "version 6.1.0-28-amd64\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("entry lacks %q:\n%s", want, conf)
		}
	}
	if lc := string(read("/loader/loader.conf")); !strings.Contains(lc, "default imgfab-6.1.0-28-amd64.conf\n") {
		t.Errorf("loader.conf:\n%s", lc)
	}
	// Reproducible: a second build gives the same bytes.
	path2, _, err := writeESP(t, tree, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(path2)
	if !bytes.Equal(a, b) {
		t.Fatal("two ESPs from the same input differ")
	}
}

func TestESPTooSmall(t *testing.T) {
	_, _, err := writeESP(t, testTree(40<<20), 34<<20)
	if err == nil || !strings.Contains(err.Error(), "--esp-size") || !strings.Contains(err.Error(), "MiB") {
		t.Fatalf("want a too-small error with numbers, got %v", err)
	}
}

func TestNoLoader(t *testing.T) {
	tree := testTree(1000)
	delete(tree, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	_, _, err := writeESP(t, tree, 64<<20)
	var nl *LoaderNotFoundError
	if !errors.As(err, &nl) || !strings.Contains(err.Error(), "/usr/lib/systemd/boot/efi/systemd-bootx64.efi") {
		t.Fatalf("want LoaderNotFoundError listing paths, got %v", err)
	}
}
