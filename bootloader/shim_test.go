package bootloader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/rootfs"
)

// sbTree is the debian-sb fixture (testdata/mkdebian-sb.sh) as one tree: the extracted shim/GRUB
// packages over the debootstrap tree.
func sbTree(t *testing.T) fs.FS {
	t.Helper()
	testtool.Fixture(t, filepath.Join("debian-sb", "sb", ShimPaths[0]), "mkdebian-sb.sh")
	sb := testtool.Fixture(t, filepath.Join("debian-sb", "sb"), "mkdebian-sb.sh")
	l1 := testtool.Fixture(t, filepath.Join("debian", "layer1"), "mkdebian.sh")
	return ukiOverlay{os.DirFS(l1), os.DirFS(sb)}
}

func planShim(t *testing.T, tree fs.FS) ([]FileSpec, Entry, rootfs.Kernel) {
	t.Helper()
	k, err := rootfs.FindKernel(tree)
	if err != nil {
		t.Fatal(err)
	}
	files, e, err := PlanShim(Config{Tree: tree, Kernel: k, Options: "root=PARTUUID=ab-cd rw console=ttyS0 it's", Epoch: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return files, e, k
}

func TestPlanShim(t *testing.T) {
	tree := sbTree(t)
	files, e, k := planShim(t, tree)
	got := map[string]FileSpec{}
	var paths []string
	for _, f := range files {
		got[f.Path] = f
		paths = append(paths, f.Path)
	}
	dir := "/imgfab/" + k.Version
	want := []string{"/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/grubx64.efi", "/EFI/BOOT/mmx64.efi", dir + "/linux", dir + "/initrd",
		"/EFI/debian/grub.cfg", "/EFI/BOOT/grub.cfg"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", paths, want)
	}
	if e.Conf != "/EFI/debian/grub.cfg" {
		t.Errorf("grub.cfg at %s: Debian's signed GRUB has prefix /EFI/debian", e.Conf)
	}
	for dst, src := range map[string]string{"/EFI/BOOT/BOOTX64.EFI": ShimPaths[0], "/EFI/BOOT/grubx64.efi": SignedGrubPaths[0],
		"/EFI/BOOT/mmx64.efi": MokManagerPaths[0], dir + "/linux": k.Linux, dir + "/initrd": k.Initrd} {
		b, err := fs.ReadFile(tree, src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readSpec(t, got[dst]), b) {
			t.Errorf("%s is not /%s", dst, src)
		}
	}
	cfg := string(readSpec(t, got[e.Conf]))
	wantCfg := "menuentry 'Debian GNU/Linux 12 (bookworm)' {\n\tlinux " + dir + "/linux 'root=PARTUUID=ab-cd' 'rw' 'console=ttyS0' 'it'\\''s'\n\tinitrd " + dir + "/initrd\n}\n"
	if !strings.Contains(cfg, wantCfg) || !strings.Contains(cfg, "set timeout=0\n") {
		t.Errorf("grub.cfg:\n%s\nwant it to contain:\n%s", cfg, wantCfg)
	}
	if string(readSpec(t, got["/EFI/BOOT/grub.cfg"])) != cfg {
		t.Errorf("the two grub.cfg differ")
	}
}

func TestShimESPReproducible(t *testing.T) {
	tree := sbTree(t)
	sum := func() [32]byte {
		files, _, _ := planShim(t, tree)
		var need int64
		for _, f := range files {
			need += f.Size
		}
		size := int64(256 << 20)
		p := filepath.Join(t.TempDir(), "esp.img")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if err := WriteESP(context.Background(), f, 0, size, "ESP", 0x1234abcd, time.Unix(1700000000, 0), files); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	if sum() != sum() {
		t.Fatal("two ESPs with the shim chain from the same inputs differ")
	}
}

func TestPlanShimMissing(t *testing.T) {
	tree := sbTree(t)
	k, err := rootfs.FindKernel(tree)
	if err != nil {
		t.Fatal(err)
	}
	grub, _ := fs.ReadFile(tree, SignedGrubPaths[0])
	for name, c := range map[string]struct {
		tree fs.FS
		want string
	}{
		"no shim": {fstest.MapFS{SignedGrubPaths[0]: {Data: grub}}, "no signed shim in the image (install shim-signed); looked at: /usr/lib/shim/shimx64.efi.signed"},
		"no grub": {fstest.MapFS{ShimPaths[0]: {Data: []byte("MZ")}}, "no signed GRUB in the image (install grub-efi-amd64-signed); looked at: /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"},
	} {
		_, _, err := PlanShim(Config{Tree: c.tree, Kernel: k})
		var nf *ShimNotFoundError
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A "GRUB" that is not a grub-mkimage image.
	_, _, err = PlanShim(Config{Tree: fstest.MapFS{ShimPaths[0]: {Data: []byte("MZ")}, SignedGrubPaths[0]: {Data: []byte("MZ not grub")}}, Kernel: k})
	if err == nil || !strings.Contains(err.Error(), "not a PE image") {
		t.Errorf("fake GRUB: %v", err)
	}
}
