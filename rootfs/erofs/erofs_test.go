package erofs

import (
	"archive/tar"
	"bytes"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	goerofs "github.com/erofs/go-erofs"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestFsck checks the full tree with fsck.erofs from erofs-utils: every inode and all file data are
// decoded (--extract without a directory), and as root the extracted tree equals the source.
func TestFsck(t *testing.T) {
	fsck := testtool.Need(t, "fsck.erofs", "erofs-utils")
	es := fullTree()
	img := buildFile(t, testOpts, es)
	fsckClean(t, fsck, "--extract", img)
	// fsck.erofs verifies the superblock crc32c: one flipped label bit must fail it.
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b[sbOffset+64] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.erofs")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// (erofs-utils 1.5 reports the mismatch but exits 0.)
	if out, err := exec.Command(fsck, bad).CombinedOutput(); err == nil && !strings.Contains(string(out), "chksum doesn't match") {
		t.Errorf("fsck.erofs accepted a superblock with a wrong checksum:\n%s", out)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: extraction (device nodes, ownership) not compared")
		return
	}
	dst := filepath.Join(t.TempDir(), "x")
	fsckClean(t, fsck, "--extract="+dst, "--preserve", img)
	for _, e := range es {
		p := filepath.Join(dst, e.hdr.Name)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", e.hdr.Name, err)
			continue
		}
		switch e.hdr.Typeflag {
		case tar.TypeReg:
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, e.body) {
				t.Errorf("%s: extracted content differs (%d bytes, want %d) %v", e.hdr.Name, len(got), len(e.body), err)
			}
			if st.Mode().Perm() != fs.FileMode(e.hdr.Mode).Perm() {
				t.Errorf("%s: extracted mode %v, want %o", e.hdr.Name, st.Mode(), e.hdr.Mode)
			}
		case tar.TypeSymlink:
			if got, _ := os.Readlink(p); got != e.hdr.Linkname {
				t.Errorf("%s: extracted link %q, want %q", e.hdr.Name, got, e.hdr.Linkname)
			}
		case tar.TypeChar, tar.TypeBlock:
			if st.Mode()&fs.ModeDevice == 0 {
				t.Errorf("%s: extracted as %v", e.hdr.Name, st.Mode())
			}
		case tar.TypeFifo:
			if st.Mode()&fs.ModeNamedPipe == 0 {
				t.Errorf("%s: extracted as %v", e.hdr.Name, st.Mode())
			}
		}
	}
}

// fsckClean runs fsck.erofs; it must exit 0 and print nothing (1.5 prints some errors and still exits 0).
func fsckClean(t *testing.T, fsck string, args ...string) {
	t.Helper()
	out, err := exec.Command(fsck, args...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("fsck.erofs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// want is what one path of the image must be.
type want struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    time.Time
	body     []byte
	link     string
	rdev     uint32
	xattrs   map[string]string
	nlink    int
	hardOf   string // path of the inode this path shares
}

// model is the expected tree of fullTree-like entries: every path, implicit directories included.
func model(es []entry, opts Options) map[string]*want {
	m := map[string]*want{".": {mode: fs.ModeDir | 0755, mtime: time.Unix(opts.Time, 0), nlink: 2}}
	var mkdirs func(p string)
	mkdirs = func(p string) {
		if _, ok := m[p]; ok {
			return
		}
		mkdirs(path.Dir(p))
		m[p] = &want{mode: fs.ModeDir | 0755, mtime: time.Unix(opts.Time, 0)}
	}
	links := map[string]string{}
	for _, e := range es {
		h := e.hdr
		mkdirs(path.Dir(h.Name))
		if h.Typeflag == tar.TypeLink {
			links[h.Name] = h.Linkname
			continue
		}
		w := &want{mode: h.FileInfo().Mode(), uid: uint32(h.Uid), gid: uint32(h.Gid), mtime: h.ModTime, nlink: 1,
			body: e.body, xattrs: map[string]string{}}
		if h.Typeflag == tar.TypeSymlink {
			w.link = h.Linkname
		}
		if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
			maj, mnr := uint32(h.Devmajor), uint32(h.Devminor)
			w.rdev = mnr&0xff | maj<<8 | (mnr&^0xff)<<12
		}
		for k, v := range h.PAXRecords {
			if n, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				w.xattrs[n] = v
			}
		}
		m[h.Name] = w
	}
	for _, target := range links {
		m[target].nlink++
	}
	for l, target := range links {
		c := *m[target]
		c.hardOf = target
		m[l] = &c
	}
	for p, w := range m {
		if w.mode.IsDir() {
			w.nlink = 2
			for q, c := range m {
				if c.mode.IsDir() && q != "." && path.Dir(q) == p {
					w.nlink++
				}
			}
		}
	}
	return m
}

// TestGoErofs reads the image with go-erofs (an independent reader) and compares every path with the source.
func TestGoErofs(t *testing.T) {
	es := fullTree()
	img := buildMem(t, testOpts, es)
	fsys, err := goerofs.Open(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	m := model(es, testOpts)
	seen := map[string]bool{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		seen[p] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing, extra []string
	for p := range m {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	for p := range seen {
		if m[p] == nil {
			extra = append(extra, p)
		}
	}
	if len(missing)+len(extra) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		t.Fatalf("walk: missing %q, extra %q", missing, extra)
	}
	inos := map[string]int64{}
	for p, w := range m {
		fi, err := fs.Lstat(fsys, p)
		if err != nil {
			t.Errorf("%s: lstat: %v", p, err)
			continue
		}
		st := fi.Sys().(*goerofs.Stat)
		inos[p] = st.Ino
		if st.Mode != w.mode {
			t.Errorf("%s: mode %v, want %v", p, st.Mode, w.mode)
		}
		if st.UID != w.uid || st.GID != w.gid {
			t.Errorf("%s: uid/gid %d/%d, want %d/%d", p, st.UID, st.GID, w.uid, w.gid)
		}
		if !fi.ModTime().Equal(w.mtime) {
			t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), w.mtime)
		}
		if st.Nlink != w.nlink {
			t.Errorf("%s: nlink %d, want %d", p, st.Nlink, w.nlink)
		}
		if st.Rdev != w.rdev {
			t.Errorf("%s: rdev %#x, want %#x", p, st.Rdev, w.rdev)
		}
		gx := map[string]string{}
		for k, v := range st.Xattrs {
			// go-erofs names index 2 and 3 "system.posix_acl_access." (with a dot); the kernel and
			// erofs-utils use the prefix alone as the full name, with an empty suffix, as written here.
			gx[strings.TrimSuffix(k, ".")] = v
		}
		if len(gx) != len(w.xattrs) {
			t.Errorf("%s: xattrs %q, want %q", p, gx, w.xattrs)
		}
		for k, v := range w.xattrs {
			if gx[k] != v {
				t.Errorf("%s: xattr %s = %q, want %q", p, k, gx[k], v)
			}
		}
		switch {
		case w.mode.IsRegular():
			got, err := fs.ReadFile(fsys, p)
			if err != nil || !bytes.Equal(got, w.body) {
				t.Errorf("%s: content (%d bytes, want %d) differs: %v", p, len(got), len(w.body), err)
			}
			if fi.Size() != int64(len(w.body)) {
				t.Errorf("%s: size %d, want %d", p, fi.Size(), len(w.body))
			}
		case w.mode&fs.ModeSymlink != 0:
			got, err := fs.ReadLink(fsys, p)
			if err != nil || got != w.link {
				t.Errorf("%s: link %q, want %q (%v)", p, got, w.link, err)
			}
		case w.mode.IsDir():
			// Lookup through every directory (binary search over dirent blocks) must find each child.
			ents, err := fs.ReadDir(fsys, p)
			if err != nil {
				t.Errorf("%s: readdir: %v", p, err)
			}
			for _, e := range ents {
				if _, err := fs.Stat(fsys, path.Join(p, e.Name())); err != nil && e.Type()&fs.ModeSymlink == 0 {
					t.Errorf("%s: stat child %s: %v", p, e.Name(), err)
				}
			}
		}
	}
	nHard := 0
	for p, w := range m {
		if w.hardOf != "" {
			nHard++
			if inos[p] != inos[w.hardOf] {
				t.Errorf("hardlink %s: inode %d, target %s has %d", p, inos[p], w.hardOf, inos[w.hardOf])
			}
		}
	}
	if nHard != 3 {
		t.Errorf("model has %d hardlinks, want 3", nHard)
	}
	// Distinct entries have distinct inodes.
	byIno := map[int64]string{}
	for p, ino := range inos {
		if m[p].hardOf != "" {
			continue
		}
		if q, ok := byIno[ino]; ok {
			t.Errorf("%s and %s share inode %d", p, q, ino)
		}
		byIno[ino] = p
	}
}

// TestLayout checks which data layout each case gets.
func TestLayout(t *testing.T) {
	fsys, err := goerofs.Open(bytes.NewReader(buildMem(t, testOpts, fullTree())))
	if err != nil {
		t.Fatal(err)
	}
	for p, layout := range map[string]uint8{
		"exact":          layoutFlatPlain,
		"one-block":      layoutFlatPlain,
		"empty":          layoutFlatPlain,
		"three-and-tail": layoutFlatInline,
		"tail-4032":      layoutFlatInline, // 64-byte inode + 4032 bytes: exactly one block
		"tail-4095":      layoutFlatPlain,  // inode + tail exceed a block
		"etc/passwd":     layoutFlatInline,
		"fat-xattrs":     layoutFlatPlain, // tail does not fit next to 3.9 KB of xattrs
		"longlink":       layoutFlatInline,
		"maxlink":        layoutFlatPlain,
		"big":            layoutFlatInline,
		"links":          layoutFlatInline,
		"etc":            layoutFlatInline,
	} {
		fi, err := fs.Lstat(fsys, p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Sys().(*goerofs.Stat).InodeLayout; got != layout {
			t.Errorf("%s: layout %d, want %d", p, got, layout)
		}
	}
	fi, err := fs.Stat(fsys, "big")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= 4*bs {
		t.Errorf("big: directory of %d bytes, want several dirent blocks", fi.Size())
	}
}

// TestSuperblock checks the superblock fields and its checksum.
func TestSuperblock(t *testing.T) {
	img := buildMem(t, testOpts, fullTree())
	s := img[sbOffset : sbOffset+sbSize]
	if le.Uint32(s) != magic || s[12] != blkBits || le.Uint32(s[8:]) != featureCompatCsum {
		t.Fatalf("magic/blkszbits/compat: %x %d %x", le.Uint32(s), s[12], le.Uint32(s[8:]))
	}
	if got := int64(le.Uint32(s[36:])) * bs; got != int64(len(img)) {
		t.Errorf("blocks: %d bytes, image %d", got, len(img))
	}
	if le.Uint64(s[24:]) != uint64(testOpts.Time) {
		t.Errorf("build_time %d", le.Uint64(s[24:]))
	}
	if !bytes.Equal(s[48:64], testOpts.UUID[:]) || string(bytes.TrimRight(s[64:80], "\x00")) != testOpts.Label {
		t.Errorf("uuid/label %x %q", s[48:64], s[64:80])
	}
	blk := bytes.Clone(img[sbOffset:bs])
	sum := le.Uint32(blk[4:])
	le.PutUint32(blk[4:], 0)
	if want := ^crc32.Checksum(blk, crc32.MakeTable(crc32.Castagnoli)); sum != want {
		t.Errorf("checksum %#x, want %#x", sum, want)
	}
	// Data starts at block 1; metadata after it.
	if meta := le.Uint32(s[40:]); meta < 1 || int64(meta)*bs >= int64(len(img)) {
		t.Errorf("meta_blkaddr %d", meta)
	}
}

// TestDeterministic writes the same entries twice.
func TestDeterministic(t *testing.T) {
	a := buildMem(t, testOpts, fullTree())
	b := buildMem(t, testOpts, fullTree())
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same entries differ")
	}
	o := testOpts
	o.UUID[0] ^= 1
	if bytes.Equal(a, buildMem(t, o, fullTree())) {
		t.Fatal("UUID does not reach the image")
	}
}

// TestEmpty is an image with only the root.
func TestEmpty(t *testing.T) {
	fsck := testtool.Need(t, "fsck.erofs", "erofs-utils")
	img := buildFile(t, testOpts, nil)
	fsckClean(t, fsck, "--extract", img)
	b, _ := os.ReadFile(img)
	fsys, err := goerofs.Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil || len(ents) != 0 {
		t.Fatalf("root: %v %v", ents, err)
	}
	if len(b) != 2*bs {
		t.Errorf("empty image is %d bytes, want 2 blocks", len(b))
	}
}

// TestHostile refuses untrusted entries with errors that name them, and never writes outside [0, Size()).
func TestHostile(t *testing.T) {
	long := strings.Repeat("n", 256)
	cases := []struct {
		e    entry
		want string
	}{
		{reg("../x", 0644, []byte("x")), `"../x"`},
		{reg("a/../../x", 0644, nil), `not a clean relative path`},
		{reg("/abs", 0644, nil), `"/abs"`},
		{reg("a//b", 0644, nil), `not a clean relative path`},
		{reg("./a", 0644, nil), `not a clean relative path`},
		{reg("a/", 0644, nil), `not a clean relative path`},
		{reg("", 0644, nil), `not a clean relative path`},
		{reg("nul\x00byte", 0644, nil), `not a clean relative path`},
		{reg("d/"+long, 0644, nil), `is 256 bytes, at most 255`},
		{entry{hdr: tar.Header{Typeflag: tar.TypeReg + 0x20, Name: "odd"}}, `"odd": unsupported tar type`},
		{entry{hdr: tar.Header{Typeflag: 'S', Name: "sock"}}, `"sock"`},
		{hardlink("h", "../etc/shadow"), `hardlink "h"`},
		{hardlink("h", "/etc/shadow"), `not a clean relative path`},
		{symlink("s", strings.Repeat("t", 4096)), `symlink "s"`},
		{dev(tar.TypeChar, "c", 0x1000, 0), `"c": 4096:0 does not fit`},
		{withXattrs(reg("x", 0644, nil), "os2.foo", "v"), `"os2.foo": unsupported namespace`},
		{withXattrs(reg("x", 0644, nil), "system.posix_acl_access", "junk"), `malformed POSIX ACL`},
		{withXattrs(reg("x", 0644, nil), "user.big", strings.Repeat("v", 4100)), `entry "x"`},
		{entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "short", Size: 10000}, body: []byte("abc")}, `short body`},
	}
	for _, c := range cases {
		m := &memAt{}
		w, err := NewWriter(m, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		ok := reg("ok", 0644, pattern(9000, 7))
		if err := w.Add(&ok.hdr, bytes.NewReader(ok.body)); err != nil {
			t.Fatal(err)
		}
		err = w.Add(&c.e.hdr, bytes.NewReader(c.e.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %s", c.e.hdr.Name, err, c.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "erofs: ") {
			t.Errorf("%q: error %q lacks the package prefix", c.e.hdr.Name, err)
		}
		// A refused entry leaves a usable writer unless it failed while streaming data.
		cerr := w.Close()
		if cerr == nil && m.max > w.Size() {
			t.Errorf("%q: wrote up to %d, Size() %d", c.e.hdr.Name, m.max, w.Size())
		}
	}
	// Refused sockets and the like leave the rest of the stream intact.
	m := &memAt{}
	w, _ := NewWriter(m, testOpts)
	for _, e := range []entry{reg("a", 0644, []byte("a")), {hdr: tar.Header{Typeflag: 'S', Name: "sock"}}, reg("b", 0644, []byte("b"))} {
		_ = w.Add(&e.hdr, bytes.NewReader(e.body))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m.max != w.Size() {
		t.Errorf("wrote up to %d, Size() %d", m.max, w.Size())
	}
	fsys, err := goerofs.Open(bytes.NewReader(m.b))
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := fs.ReadDir(fsys, "."); len(ents) != 2 {
		t.Errorf("root has %d entries, want a and b", len(ents))
	}
}

// TestEntries checks duplicate handling, hardlink errors and Add/Close misuse, as rootfs/ext4 does.
func TestEntries(t *testing.T) {
	w, _ := NewWriter(&memAt{}, testOpts)
	must := func(e entry) {
		t.Helper()
		if err := w.Add(&e.hdr, bytes.NewReader(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	add := func(e entry) error { return w.Add(&e.hdr, bytes.NewReader(e.body)) }
	must(reg("f", 0644, []byte("1")))
	if err := add(reg("f", 0644, []byte("2"))); err == nil || !strings.Contains(err.Error(), `"f": duplicate entry`) {
		t.Errorf("duplicate file: %v", err)
	}
	must(reg("d/x", 0644, nil))
	must(dir("d", 0700)) // explicit entry for an implicit directory sets its metadata
	if err := add(reg("d", 0644, nil)); err == nil {
		t.Error("file over a non-empty directory accepted")
	}
	if err := add(reg("f/y", 0644, nil)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("entry below a file: %v", err)
	}
	if err := add(hardlink("hd", "d")); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("hardlink to a directory: %v", err)
	}
	must(hardlink("dangling", "nowhere"))
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), `"nowhere" is not in the stream`) {
		t.Errorf("dangling hardlink: %v", err)
	}
	if err := add(reg("late", 0644, nil)); err == nil {
		t.Error("Add after Close accepted")
	}
	if _, err := NewWriter(&memAt{}, Options{Label: strings.Repeat("l", 17)}); err == nil {
		t.Error("17-byte label accepted")
	}

	// The explicit directory's metadata wins over the implicit one.
	img := buildMem(t, testOpts, []entry{reg("d/x", 0644, nil), dir("d", 0700)})
	fsys, err := goerofs.Open(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := fs.Stat(fsys, "d")
	if err != nil || fi.Sys().(*goerofs.Stat).Mode != fs.ModeDir|0700 || !fi.ModTime().Equal(testTime) {
		t.Errorf("d: %v %v %v", fi.Sys().(*goerofs.Stat).Mode, fi.ModTime(), err)
	}
}

// TestStreaming checks that file data goes to dst during Add, before Close.
func TestStreaming(t *testing.T) {
	s := &sinkWriter{}
	w, _ := NewWriter(s, testOpts)
	e := reg("big", 0644, pattern(10*bs+5, 0))
	if err := w.Add(&e.hdr, bytes.NewReader(e.body)); err != nil {
		t.Fatal(err)
	}
	if s.max != 11*bs {
		t.Errorf("after Add, wrote up to %d, want the 10 whole blocks after block 0", s.max)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s.max != w.Size() {
		t.Errorf("wrote up to %d, Size() %d", s.max, w.Size())
	}
}
