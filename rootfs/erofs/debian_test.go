package erofs

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	goerofs "github.com/erofs/go-erofs"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestDebianTree writes a real distribution tree — the debootstrapped Debian 12 fixture's root as
// one tar (testdata/mkdebian.sh: 13,000 entries, hardlinks, setuid binaries, security.capability,
// long directories) — streamed from the tar, as a build would, then checks it with fsck.erofs and
// reads every entry back with go-erofs: type, mode, owner, mtime, size, content (sha256), link
// target, device number, xattrs, and hardlinks sharing an inode.
func TestDebianTree(t *testing.T) {
	fsck := testtool.Need(t, "fsck.erofs", "erofs-utils")
	tarPath := filepath.Join(testtool.Fixture(t, "debian", "mkdebian.sh"), "rootfs.tar")
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgPath := filepath.Join(t.TempDir(), "debian.erofs")
	img, err := os.Create(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	w, err := NewWriter(img, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		hdr    tar.Header
		sum    [32]byte
		hardOf string
	}
	wants := map[string]*want{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
		if name == "" || name == "." {
			name = "."
		}
		hdr.Name = name
		wt := &want{hdr: *hdr}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = strings.TrimPrefix(hdr.Linkname, "./")
			wt.hardOf = hdr.Linkname
		}
		h := sha256.New()
		if err := w.Add(hdr, io.TeeReader(tr, h)); err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		copy(wt.sum[:], h.Sum(nil))
		wants[name] = wt
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := img.Stat(); err != nil || fi.Size() != w.Size() {
		t.Fatalf("image file is %v bytes, Size() %d (%v)", fi.Size(), w.Size(), err)
	}
	if out, err := exec.Command(fsck, imgPath).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 && strings.Contains(string(out), "error") {
		t.Fatalf("fsck.erofs: %v\n%s", err, out)
	}

	fsys, err := goerofs.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	inos := map[string]int64{}
	nReg, nHard, nXattr := 0, 0, 0
	for name, wt := range wants {
		fi, err := fs.Lstat(fsys, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		st := fi.Sys().(*goerofs.Stat)
		inos[name] = st.Ino
		hdr := wt.hdr
		if wt.hardOf != "" {
			nHard++
			continue // checked against its target below
		}
		if st.UID != uint32(hdr.Uid) || st.GID != uint32(hdr.Gid) {
			t.Errorf("%s: uid/gid %d/%d, want %d/%d", name, st.UID, st.GID, hdr.Uid, hdr.Gid)
		}
		// go-erofs's FileInfo.Mode drops setuid, setgid and sticky; its Stat.Mode has them.
		if got, want := st.Mode, hdr.FileInfo().Mode(); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
		if fi.ModTime().Unix() != hdr.ModTime.Unix() {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), hdr.ModTime)
		}
		gx := map[string]string{}
		for k, v := range st.Xattrs {
			gx[strings.TrimSuffix(k, ".")] = v // go-erofs names the ACLs "system.posix_acl_access."
		}
		var xattrs int
		for k, v := range hdr.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xattrs++
				if got := gx[x]; got != v {
					t.Errorf("%s: xattr %s = %q, want %q", name, x, got, v)
				}
			}
		}
		if xattrs > 0 {
			nXattr++
		}
		if len(gx) != xattrs {
			t.Errorf("%s: %d xattrs, want %d", name, len(gx), xattrs)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			nReg++
			r, err := fsys.Open(name)
			if err != nil {
				t.Errorf("%s: open: %v", name, err)
				continue
			}
			h := sha256.New()
			n, err := io.Copy(h, r)
			r.Close()
			if err != nil || n != hdr.Size || [32]byte(h.Sum(nil)) != wt.sum {
				t.Errorf("%s: content differs (%d bytes of %d, %v)", name, n, hdr.Size, err)
			}
		case tar.TypeSymlink:
			if got, err := fs.ReadLink(fsys, name); err != nil || got != hdr.Linkname {
				t.Errorf("%s: link %q, want %q (%v)", name, got, hdr.Linkname, err)
			}
		}
	}
	for name, wt := range wants {
		if wt.hardOf != "" && inos[name] != inos[wt.hardOf] {
			t.Errorf("hardlink %s: inode %d, its target %s %d", name, inos[name], wt.hardOf, inos[wt.hardOf])
		}
	}
	t.Logf("%d entries (%d files, %d hardlinks, %d with xattrs), image %d MiB", len(wants), nReg, nHard, nXattr, w.Size()>>20)
	if nReg < 5000 || nHard == 0 || nXattr == 0 {
		t.Errorf("the fixture is not the Debian tree expected: %d files, %d hardlinks, %d with xattrs", nReg, nHard, nXattr)
	}
}
