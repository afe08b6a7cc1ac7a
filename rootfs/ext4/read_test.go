package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// openImage opens an image file with the reader.
func openImage(t testing.TB, img string) fs.FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Open(f, st.Size())
	if err != nil {
		t.Fatalf("Open %s: %v", img, err)
	}
	return fsys
}

// compareTrees walks want and checks that got has the same entries, types, permission bits, sizes,
// contents and link targets. With meta it also compares mtimes, owners and link counts (*Stat).
func compareTrees(t *testing.T, want, got fs.FS, meta bool) int {
	t.Helper()
	n := 0
	err := fs.WalkDir(want, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		wi, err := fs.Lstat(want, p)
		if err != nil {
			return err
		}
		gi, err := fs.Lstat(got, p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if wi.Mode() != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", p, gi.Mode(), wi.Mode())
			return nil
		}
		if meta {
			if !wi.ModTime().Equal(gi.ModTime()) {
				t.Errorf("%s: mtime %v, want %v", p, gi.ModTime(), wi.ModTime())
			}
			ws, gs := *wi.Sys().(*Stat), *gi.Sys().(*Stat)
			if ws != gs {
				t.Errorf("%s: stat %+v, want %+v", p, gs, ws)
			}
		}
		switch {
		case wi.Mode().IsRegular():
			if wi.Size() != gi.Size() {
				t.Errorf("%s: size %d, want %d", p, gi.Size(), wi.Size())
			}
			wb, err := fs.ReadFile(want, p)
			if err != nil {
				return err
			}
			gb, err := fs.ReadFile(got, p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
			} else if !bytes.Equal(wb, gb) {
				i := 0
				for i < len(wb) && i < len(gb) && wb[i] == gb[i] {
					i++
				}
				t.Errorf("%s: content differs from byte %d (%d bytes, want %d)", p, i, len(gb), len(wb))
			}
		case wi.Mode()&fs.ModeSymlink != 0:
			wl, err := fs.ReadLink(want, p)
			if err != nil {
				return err
			}
			if gl, err := fs.ReadLink(got, p); err != nil || gl != wl {
				t.Errorf("%s: link %q (%v), want %q", p, gl, err, wl)
			}
		case wi.IsDir():
			wes, err := fs.ReadDir(want, p)
			if err != nil {
				return err
			}
			ges, err := fs.ReadDir(got, p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				return fs.SkipDir
			}
			names := func(es []fs.DirEntry) (s []string) {
				for _, e := range es {
					s = append(s, e.Name())
				}
				return s
			}
			gn := names(ges)
			if p == "." && !meta { // mke2fs adds lost+found
				gn = slices.DeleteFunc(gn, func(s string) bool { return s == "lost+found" })
			}
			if wn := names(wes); !slices.Equal(wn, gn) {
				t.Errorf("%s: entries %d %.200q, want %d %.200q", p, len(gn), gn, len(wn), wn)
				return fs.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReadWriterImage reads back what our Writer made and compares with the Writer's own view,
// metadata included.
func TestReadWriterImage(t *testing.T) {
	es := richTree()
	for i := 0; i < 3000; i++ { // htree with two index levels is not needed; one is enough
		es = append(es, reg(fmt.Sprintf("big/f%05d", i), 0644, fmt.Sprint(i)))
	}
	es = append(es, manyExtents("ext/d1", 400), manyExtents("ext/d2", 1500))
	f, w := buildOpen(t, testOpts, es)
	view, err := w.FS()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(f, w.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := compareTrees(t, view, got, true); n < 3000 {
		t.Errorf("walked only %d entries", n)
	}
	// Symlinks resolve inside the tree.
	for _, p := range []string{"abs-lib/bin/tool", "usr/lib/bin/tool", "fast"} {
		if _, err := fs.ReadFile(got, p); err != nil {
			t.Errorf("ReadFile %s through symlinks: %v", p, err)
		}
	}
	info, err := Probe(f, w.Size())
	if err != nil {
		t.Fatal(err)
	}
	if info.UUID != testOpts.UUID || info.Label != testOpts.Label || info.BlockSize != 4096 || info.Blocks*4096 != w.Size() {
		t.Errorf("Probe = %+v", info)
	}
	if s := info.UUIDString(); s != "12345678-9abc-def0-1122-334455667788" {
		t.Errorf("UUIDString = %s", s)
	}
}

// mkSource makes a host tree exercising the reader: a big directory, a fragmented sparse file, a file
// crossing block groups, fast and slow symlinks, hard links, an empty file.
func mkSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, b []byte) {
		must(os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0755))
		must(os.WriteFile(filepath.Join(src, p), b, 0644))
	}
	for i := 0; i < 2000; i++ {
		write(fmt.Sprintf("big/entry-with-a-longish-name-%05d", i), []byte(fmt.Sprint(i)))
	}
	// Sparse: 300 data runs of 4 KiB separated by 12 KiB holes → many extents.
	sp, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	for i := 0; i < 300; i++ {
		_, err := sp.WriteAt(pattern(4096, byte(i)), int64(i)*16384)
		must(err)
	}
	must(sp.Close())
	write("large", pattern(9<<20+123, 7)) // crosses block groups with 1 KiB blocks (8 MiB groups)
	write("etc/os-release", []byte("NAME=Test\nID=test\n"))
	write("empty", nil)
	must(os.Symlink("etc/os-release", filepath.Join(src, "fast")))
	must(os.Symlink("/"+strings.Repeat("s", 100)+"/x", filepath.Join(src, "slow")))
	must(os.Symlink("../etc", filepath.Join(src, "big/up")))
	must(os.Link(filepath.Join(src, "large"), filepath.Join(src, "large-hl")))
	must(os.Chmod(filepath.Join(src, "empty"), 04711))
	return src
}

func TestReadMke2fs(t *testing.T) {
	mke2fs := testtool.Need(t, "mke2fs", "e2fsprogs")
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	src := mkSource(t)
	for _, c := range []struct{ name, size string }{
		{"-t ext4 -b 4096 -O 64bit", "64M"},
		{"-t ext4 -b 4096 -O ^64bit", "64M"},
		{"-t ext4 -b 1024 -O 64bit", "64M"},
		{"-t ext4 -b 1024 -O ^64bit,^flex_bg", "64M"},
		{"-t ext4 -b 2048 -O ^has_journal", "64M"},
		{"-t ext4 -b 4096 -O ^resize_inode,meta_bg", "64M"},
		{"-t ext3 -b 1024", "64M"},
		{"-t ext2 -b 4096", "64M"},
		{"-t ext4 -b 4096 -I 128", "64M"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "fs.img")
			args := append(strings.Fields(c.name), "-q", "-F", "-d", src, img, c.size)
			if out, err := exec.Command(mke2fs, args...).CombinedOutput(); err != nil {
				t.Fatalf("mke2fs %v: %v\n%s", args, err, out)
			}
			// e2fsck -D rebuilds big directories as htrees (mke2fs -d writes them linear).
			if out, err := exec.Command(e2fsck, "-fyD", img).CombinedOutput(); err != nil {
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
					t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
				}
			}
			if strings.Contains(c.name, "ext4") && !strings.Contains(c.name, "^dir_index") {
				if out := debugfsOut(t, img, "htree big"); !strings.Contains(out, "Number of entries") {
					t.Fatalf("big is not an htree:\n%.500s", out)
				}
			}
			got := openImage(t, img)
			if n := compareTrees(t, os.DirFS(src), got, false); n < 2000 {
				t.Errorf("walked only %d entries", n)
			}
			// Hard links share the inode.
			a, _ := fs.Stat(got, "large")
			b, _ := fs.Stat(got, "large-hl")
			if a == nil || b == nil || a.Sys().(*Stat).Ino != b.Sys().(*Stat).Ino || a.Sys().(*Stat).Nlink != 2 {
				t.Errorf("hard link: %v %v", a, b)
			}
			if b, err := fs.ReadFile(got, "big/up/os-release"); err != nil || string(b) != "NAME=Test\nID=test\n" {
				t.Errorf("through ../etc symlink: %q %v", b, err)
			}
		})
	}
}

func debugfsOut(t *testing.T, img, cmd string) string {
	t.Helper()
	out, err := exec.Command(testtool.Need(t, "debugfs", "e2fsprogs"), "-R", cmd, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// smallImage builds a small image with our writer and returns its bytes.
func smallImage(t testing.TB) []byte {
	t.Helper()
	es := []entry{reg("etc/os-release", 0644, "ID=x\n"), manyExtents("frag", 8), symlink("l", "etc"), dir("d", 0755)}
	path := filepath.Join(t.TempDir(), "s.img")
	if _, err := buildTo(path, testOpts, es); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// walkAll reads every file, directory and link of fsys, returning the first error. It stops after 2000
// entries or 16 levels: a hostile image can link a directory into itself, which fs.WalkDir would follow forever.
func walkAll(fsys fs.FS) error {
	n := 0
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > 2000 || strings.Count(p, "/") > 16 {
			return errors.New("more than 2000 entries or 16 levels")
		}
		switch {
		case d.Type().IsRegular(): // at most 1 MiB: a hostile size can say 16 TiB
			var f fs.File
			if f, err = fsys.Open(p); err == nil {
				_, err = io.Copy(io.Discard, io.LimitReader(f, 1<<20))
				f.Close()
			}
		case d.Type()&fs.ModeSymlink != 0:
			if _, err = fs.ReadLink(fsys, p); err == nil {
				_, _ = fs.Stat(fsys, p)
			}
		}
		return err
	})
}

// inodeOffset returns the byte offset of inode ino in a writer-made image (for corrupting it).
func inodeOffset(t testing.TB, img []byte, ino uint32) int64 {
	t.Helper()
	f, err := newReadFS(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	g, idx := int64(ino-1)/f.ipg, int64(ino-1)%f.ipg
	d := img[f.descOffset(g):]
	table := int64(binary.LittleEndian.Uint32(d[8:])) | int64(binary.LittleEndian.Uint32(d[0x28:]))<<32
	return table*f.bs + idx*f.inodeSize
}

func TestReadHostile(t *testing.T) {
	good := smallImage(t)
	if err := walkAll(mustOpen(t, good)); err != nil {
		t.Fatalf("good image: %v", err)
	}
	fsys := mustOpen(t, good)
	fi, err := fs.Stat(fsys, "frag")
	if err != nil {
		t.Fatal(err)
	}
	frag := fi.Sys().(*Stat).Ino
	le32 := binary.LittleEndian.PutUint32
	le16 := binary.LittleEndian.PutUint16
	cases := []struct {
		name    string
		mutate  func(b []byte) []byte
		wantErr string // at Open, or else while walking
	}{
		{"truncated to 1 KiB", func(b []byte) []byte { return b[:1024] }, "too small"},
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, "the device has"},
		{"bad magic", func(b []byte) []byte { b[1024+0x38] = 0; return b }, "bad superblock magic"},
		{"huge block size", func(b []byte) []byte { le32(b[1024+0x18:], 30); return b }, "s_log_block_size"},
		{"zero inodes per group", func(b []byte) []byte { le32(b[1024+0x28:], 0); return b }, "inodes per group"},
		{"bad inode size", func(b []byte) []byte { le16(b[1024+0x58:], 100); return b }, "s_inode_size"},
		{"inode table past the end", func(b []byte) []byte {
			f, _ := newReadFS(bytes.NewReader(b), int64(len(b)))
			le32(b[f.descOffset(0)+8:], 0xFFFFFFF0)
			return b
		}, "inode table at block"},
		{"extent past the end", func(b []byte) []byte {
			off := inodeOffset(t, b, frag)
			le32(b[off+0x28+12+8:], 0x7FFFFFF0) // first leaf's ee_start_lo
			return b
		}, "outside the"},
		{"extent depth loop", func(b []byte) []byte {
			// Make the inode's root an index (depth 1) pointing at a block holding a copy of itself.
			off := inodeOffset(t, b, frag)
			root := b[off+0x28 : off+0x28+60]
			blk := int64(len(b))/4096 - 1
			le16(root[6:], 1)            // depth 1
			le16(root[2:], 1)            // one entry
			le32(root[12:], 0)           // ei_block
			le32(root[16:], uint32(blk)) // ei_leaf_lo
			le16(root[20:], 0)           // ei_leaf_hi
			copy(b[blk*4096:], root)     // the child claims depth 1 as well
			return b
		}, "depth"},
		{"bad extent magic", func(b []byte) []byte {
			off := inodeOffset(t, b, frag)
			b[off+0x28] = 0
			return b
		}, "bad header magic"},
		{"huge file size", func(b []byte) []byte {
			off := inodeOffset(t, b, frag)
			le32(b[off+0x6C:], 0xFFFFFFFF)
			return b
		}, "beyond what"},
		{"root not a directory", func(b []byte) []byte {
			off := inodeOffset(t, b, 2)
			le16(b[off:], 0x81A4)
			return b
		}, "not a directory"},
		{"dirent rec_len zero", func(b []byte) []byte {
			off := inodeOffset(t, b, 2)
			blk := int64(binary.LittleEndian.Uint32(b[off+0x28+12+8:]))
			le16(b[blk*4096+4:], 0)
			return b
		}, "rec_len"},
		{"dirent inode out of range", func(b []byte) []byte {
			off := inodeOffset(t, b, 2)
			blk := int64(binary.LittleEndian.Uint32(b[off+0x28+12+8:]))
			e := b[blk*4096:]
			e = e[binary.LittleEndian.Uint16(e[4:]):] // skip "."
			e = e[binary.LittleEndian.Uint16(e[4:]):] // skip ".."
			le32(e, 0xFFFFFFF0)
			return b
		}, "beyond s_inodes_count"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(slices.Clone(good))
			fsys, err := Open(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				err = walkAll(fsys)
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func mustOpen(t testing.TB, b []byte) fs.FS {
	t.Helper()
	fsys, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// TestReadSymlinkLoop: a symlink cycle is an error, not a hang.
func TestReadSymlinkLoop(t *testing.T) {
	path, _ := build(t, testOpts, []entry{symlink("a", "b"), symlink("b", "a"), symlink("c", "c/x")})
	fsys := openImage(t, path)
	for _, p := range []string{"a", "c"} {
		if _, err := fs.Stat(fsys, p); err == nil || !strings.Contains(err.Error(), "too many levels") {
			t.Errorf("Stat %s: %v", p, err)
		}
	}
	if _, err := fs.Stat(fsys, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat nope: %v", err)
	}
	if _, err := fs.ReadFile(fsys, "../x"); err == nil {
		t.Error("../x accepted")
	}
}
