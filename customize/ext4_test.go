package customize

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/rootfs/ext4"
)

// TestExt4View runs Layer over the ext4 writer's FS view, as the build does: owners come from
// ext4.Stat and symlinks through ReadLink.
func TestExt4View(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "fs.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ext4.NewWriter(f, ext4.Options{MaxSize: 1 << 30, Time: epoch.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	add := func(h *tar.Header, body string) {
		t.Helper()
		h.ModTime = epoch
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := w.Add(h, strings.NewReader(body)); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
	}
	add(&tar.Header{Name: "etc", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, passwd)
	add(&tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, group)
	add(&tar.Header{Name: "etc/shadow", Typeflag: tar.TypeReg, Mode: 0o640, Gid: 42}, "root:*:19000:0:99999:7:::\n")
	add(&tar.Header{Name: "usr", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/lib", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/lib/systemd", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/lib/systemd/system", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/lib/systemd/system/a.service", Typeflag: tar.TypeReg, Mode: 0o644}, "[Install]\nWantedBy=multi-user.target\n")
	add(&tar.Header{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"}, "")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	view, err := w.FS()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Layer(context.Background(), view, Config{
		Users: []User{{Name: "bob", UID: u32(1500)}},
		Units: Units{Enable: []Unit{{Name: "a.service"}}},
	}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ents := readTar(t, r.Tar)
	if h := ents["etc/shadow"].hdr; h.Gid != 42 || h.Mode != 0o640 {
		t.Errorf("shadow owner gid %d mode %o, want the image's 42 and 0640", h.Gid, h.Mode)
	}
	if !strings.HasSuffix(ents["etc/passwd"].data, "bob:x:1500:1500::/home/bob:/bin/sh\n") {
		t.Errorf("passwd %q", ents["etc/passwd"].data)
	}
	if l := ents["etc/systemd/system/multi-user.target.wants/a.service"].hdr.Linkname; l != "/lib/systemd/system/a.service" {
		t.Errorf("link → %q", l)
	}
	if _, ok := ents["home"]; !ok {
		t.Errorf("no /home made for the user: %v", keys(ents))
	}
}
