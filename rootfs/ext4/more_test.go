package ext4

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// buildOpen writes entries to a file that stays open for the FS view.
func buildOpen(t *testing.T, opts Options, entries []entry) (*os.File, *Writer) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "fs.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w, err := NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if err := w.Add(&entries[i].hdr, bytes.NewReader(entries[i].body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f, w
}

func TestFSView(t *testing.T) {
	es := append(richTree(),
		reg("boot/vmlinuz-6.1.0-1-amd64", 0644, "KERNEL"),
		reg("boot/initrd.img-6.1.0-1-amd64", 0644, "INITRD"),
		symlink("vmlinuz", "boot/vmlinuz-6.1.0-1-amd64"),
		symlink("boot/abs", "/boot/vmlinuz-6.1.0-1-amd64"),
		symlink("loop1", "loop2"),
		symlink("loop2", "/loop1"),
		symlink("up", "../../../boot"),
	)
	_, w := buildOpen(t, testOpts, es)
	fsys, err := w.FS()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		got, err := fs.ReadFile(fsys, e.hdr.Name)
		if err != nil || !bytes.Equal(got, e.body) {
			t.Errorf("ReadFile %s: %v, %d bytes, want %d", e.hdr.Name, err, len(got), len(e.body))
		}
	}
	for name, want := range map[string]string{
		"vmlinuz": "KERNEL", "boot/abs": "KERNEL", "up/initrd.img-6.1.0-1-amd64": "INITRD",
		"abs-lib/bin/tool": "tool", "usr/lib/bin/tool-link-early": "late target data",
	} {
		got, err := fs.ReadFile(fsys, name)
		if err != nil || string(got) != want {
			t.Errorf("ReadFile %s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := fsys.Open("loop1"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("loop: %v", err)
	}
	if _, err := fsys.Open("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	m, err := fs.Glob(fsys, "boot/vmlinuz-*")
	if err != nil || len(m) != 1 || m[0] != "boot/vmlinuz-6.1.0-1-amd64" {
		t.Errorf("Glob = %v, %v", m, err)
	}
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !sortedStrings(names) || len(names) < 10 {
		t.Errorf("ReadDir not sorted: %v", names)
	}
	rl := fsys.(fs.ReadLinkFS)
	if tgt, err := rl.ReadLink("vmlinuz"); err != nil || tgt != "boot/vmlinuz-6.1.0-1-amd64" {
		t.Errorf("ReadLink = %q %v", tgt, err)
	}
	if fi, err := rl.Lstat("vmlinuz"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat = %v %v", fi, err)
	}
	if fi, err := fs.Stat(fsys, "vmlinuz"); err != nil || !fi.Mode().IsRegular() || fi.Size() != 6 {
		t.Errorf("Stat = %v %v", fi, err)
	}
	if fi, err := fs.Stat(fsys, "usr/bin/passwd"); err != nil || fi.Mode() != fs.ModeSetuid|0755 || fi.Sys().(*Stat).Nlink != 3 {
		t.Errorf("Stat passwd = %v %v", fi.Mode(), err)
	}
	if fi, err := fs.Stat(fsys, "tmp"); err != nil || fi.Mode() != fs.ModeDir|fs.ModeSticky|0777 {
		t.Errorf("Stat tmp = %v %v", fi.Mode(), err)
	}
	if err := fstestWalk(fsys); err != nil {
		t.Error(err)
	}
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

// fstestWalk walks the whole view and reads every regular file.
func fstestWalk(fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			f, err := fsys.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(io.Discard, f)
			return err
		}
		return nil
	})
}

// TestBackupGroups builds a fixed-size filesystem with several groups and data crossing backup ranges and
// checks the first backup superblock.
func TestBackupGroups(t *testing.T) {
	big := pattern(50<<20, 5) // the third copy crosses group 1's backup at block 32768
	es := []entry{
		reg("a/small", 0644, "x"),
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "a/big", Mode: 0644, Size: int64(len(big)), ModTime: testTime}, body: big},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "b/big2", Mode: 0644, Size: int64(len(big)), ModTime: testTime}, body: big},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "b/big3", Mode: 0644, Size: int64(len(big)), ModTime: testTime}, body: big},
	}
	for _, size := range []int64{600 << 20, 0} {
		opts := testOpts
		opts.Size = size
		img, w := build(t, opts, es)
		if size != 0 && w.Size() != size {
			t.Errorf("Size = %d", w.Size())
		}
		fsckClean(t, img)
		fsckClean(t, img, "-b", "32768", "-B", "4096")
		fsckNoChange(t, img)
		// Fixed size: GDT of 1 block, data resumes at 32770. Automatic: data skipped the provisional
		// 1 TiB geometry's 128 GDT blocks, resuming at 32897; the final GDT needs 1, the rest is free.
		resume := " 32770 "
		if size == 0 {
			resume = " 32897 "
		}
		out := debugfs(t, img, "ex /b/big3")
		if !strings.Contains(out, "32767 ") || !strings.Contains(out, resume) {
			t.Errorf("b/big3 should break at the group 1 backup:\n%s", out)
		}
		if size == 0 {
			out = debugfs(t, img, "testb 32770 127", "testb 32769")
			if strings.Count(out, "not in use") != 127 || !strings.Contains(out, "Block 32769 marked in use") {
				t.Errorf("provisional GDT range should be free:\n%.500s", out)
			}
		}
		debugfs(t, img, "dump /b/big3 "+img+".out")
		if b, err := os.ReadFile(img + ".out"); err != nil || !bytes.Equal(b, big) {
			t.Errorf("b/big3 content differs (%v)", err)
		}
	}
}

// manyExtents makes a file whose every other block is a hole, so it has n extents.
func manyExtents(name string, n int) entry {
	data := make([]byte, 2*n*bs)
	for i := 0; i < n; i++ {
		copy(data[2*i*bs:], pattern(bs, byte(i)))
	}
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0644, Size: int64(len(data)), ModTime: testTime}, body: data}
}

func TestExtentTrees(t *testing.T) {
	es := []entry{manyExtents("four", 4), manyExtents("five", 5), manyExtents("d1", 1360), manyExtents("d2", 1361), manyExtents("d2b", 3000)}
	img, _ := build(t, testOpts, es)
	fsckClean(t, img)
	fsckNoChange(t, img)
	for name, depth := range map[string]string{"four": "Level Entries", "d1": "1/ 1", "d2": "2/ 2", "d2b": "2/ 2"} {
		out := debugfs(t, img, "ex /"+name)
		if !strings.Contains(out, depth) {
			t.Errorf("ex %s: want %q in\n%.600s", name, depth, out)
		}
	}
	out := t.TempDir()
	debugfs(t, img, "rdump / "+out)
	for _, e := range es {
		if b, err := os.ReadFile(filepath.Join(out, e.hdr.Name)); err != nil || !bytes.Equal(b, e.body) {
			t.Errorf("content of %s differs (%v)", e.hdr.Name, err)
		}
	}
}

func TestBuildTreeShape(t *testing.T) {
	for _, tc := range []struct {
		n, depth, blocks, root int
	}{{5, 1, 1, 1}, {340, 1, 1, 1}, {341, 1, 2, 2}, {1360, 1, 4, 4}, {1361, 2, 5 + 1, 1}, {462400, 2, 1360 + 4, 4}, {462401, 3, 1361 + 5 + 1, 1}} {
		ext := make([]extent, tc.n)
		for i := range ext {
			ext[i] = extent{log: uint32(2 * i), len: 1, phys: int64(1000 + 2*i)}
		}
		next := int64(1 << 30)
		buf := make([]byte, bs)
		var seen []int64
		alloc := func() (int64, []byte, error) { next++; seen = append(seen, next); clear(buf); return next, buf, nil }
		root, depth, nTree, err := buildTree(12, ext, 0, alloc)
		if err != nil || int(depth) != tc.depth || int(nTree) != tc.blocks || len(root) != tc.root || int64(nTree) != treeBlocks(tc.n) {
			t.Errorf("n=%d: depth %d blocks %d root %d (treeBlocks %d), want %d %d %d", tc.n, depth, nTree, len(root), treeBlocks(tc.n), tc.depth, tc.blocks, tc.root)
		}
		if root[0].log != 0 {
			t.Errorf("n=%d: root starts at %d", tc.n, root[0].log)
		}
	}
}

func TestBigDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 entries; skipped with -short")
	}
	es := make([]entry, 0, 100001)
	for i := 0; i < 100000; i++ {
		es = append(es, entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("big/file-with-a-longer-name-%06d", (i*7919)%100000), Mode: 0644, ModTime: testTime}})
	}
	img, w := build(t, testOpts, es)
	fsckClean(t, img)
	fsckNoChange(t, img)
	if n := w.paths["big"]; !n.htree || n.size/bs <= dxRootLimit+1 {
		t.Errorf("big: htree %v with %d blocks, want a 2-level htree", n.htree, n.size/bs)
	}
	if w.Stats().Files != 100000 {
		t.Errorf("stats %+v", w.Stats())
	}
	out := debugfs(t, img, "stat /big/file-with-a-longer-name-099999", "stat /big/file-with-a-longer-name-000000", "stat /big")
	if strings.Count(out, "Type: regular") != 2 || !strings.Contains(out, "Flags: 0x81000") {
		t.Errorf("lookups failed:\n%s", out)
	}
}

func TestSizes(t *testing.T) {
	es := []entry{reg("a", 0644, string(pattern(10<<20, 1)))}
	// Automatic: used + max(25%, 64 MiB), whole MiB.
	img, w := build(t, testOpts, es)
	fsckClean(t, img)
	if w.Size()%(1<<20) != 0 || w.Size() < 74<<20 || w.Size() > 90<<20 {
		t.Errorf("auto size = %d", w.Size())
	}
	if fi, _ := os.Stat(img); fi.Size() != w.Size() {
		t.Errorf("file %d, Size %d", fi.Size(), w.Size())
	}
	// Fixed size, and full.
	opts := testOpts
	opts.Size = 200 << 20
	_, w = build(t, opts, es)
	if w.Size() != 200<<20 {
		t.Errorf("fixed size = %d", w.Size())
	}
	opts.Size = 32 << 20
	_, err := buildTo(filepath.Join(t.TempDir(), "x"), opts, []entry{es[0], reg("b", 0644, string(pattern(30<<20, 2)))})
	if err == nil || !strings.Contains(err.Error(), "filesystem full") || !strings.Contains(err.Error(), "filesystem is 32 MiB") {
		t.Errorf("full: %v", err)
	}
	// Automatic with a small MaxSize: full as well.
	opts = testOpts
	opts.MaxSize = 16 << 20
	_, err = buildTo(filepath.Join(t.TempDir(), "y"), opts, []entry{reg("b", 0644, string(pattern(30<<20, 2)))})
	if err == nil || !strings.Contains(err.Error(), "filesystem full") {
		t.Errorf("auto full: %v", err)
	}
	// No journal.
	opts = testOpts
	opts.NoJournal = true
	img, _ = build(t, opts, es)
	fsckClean(t, img)
	fsckNoChange(t, img)
}

func TestReproducible(t *testing.T) {
	sum := func() [32]byte {
		img, _ := build(t, testOpts, richTree())
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	if a, b := sum(), sum(); a != b {
		t.Errorf("two builds differ: %x %x", a, b)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		es   []entry
		want string
	}{
		{[]entry{reg("a", 0644, "1"), reg("a", 0644, "2")}, "duplicate entry"},
		{[]entry{reg("a", 0644, "1"), reg("a/b", 0644, "2")}, "not a directory"},
		{[]entry{reg("d/x", 0644, "1"), reg("d", 0644, "2")}, "has entries"},
		{[]entry{hardlink("l", "missing")}, `target "missing" is not in the stream`},
		{[]entry{dir("d", 0755), hardlink("l", "d")}, "is a directory"},
		{[]entry{reg(strings.Repeat("x", 256), 0644, "")}, "at most 255"},
		{[]entry{reg("../x", 0644, "")}, "clean relative path"},
		{[]entry{symlink("s", strings.Repeat("x", 4096))}, "1 to 4095"},
		{[]entry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "x", Size: 1, PAXRecords: map[string]string{"SCHILY.xattr.foo.bar": "1"}}, body: []byte("1")}}, "unsupported namespace"},
		{[]entry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "x", Size: 10}, body: []byte("1")}}, "short body"},
		{[]entry{{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "x"}}}, "unsupported tar type"},
		{[]entry{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "c", Devmajor: 4096}}}, "does not fit"},
	} {
		_, err := buildTo(filepath.Join(t.TempDir(), "e"), testOpts, tc.es)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.es[len(tc.es)-1].hdr.Name, err, tc.want)
		}
	}
	if _, err := NewWriter(nil, Options{Label: "12345678901234567"}); err == nil {
		t.Error("long label accepted")
	}
}

// discard is a sparse in-memory sink that drops data (for benchmarks).
type discard struct{}

func (discard) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

func BenchmarkWriteTree(b *testing.B) {
	// 2,000 files of 64 KiB plus 20,000 small files: 128 MiB + metadata.
	var es []entry
	for i := 0; i < 2000; i++ {
		es = append(es, reg(fmt.Sprintf("usr/lib/d%02d/f%04d", i%50, i), 0644, string(pattern(64<<10, byte(i)))))
	}
	for i := 0; i < 20000; i++ {
		es = append(es, reg(fmt.Sprintf("usr/share/d%03d/s%05d", i%300, i), 0644, "small file"))
	}
	var total int64
	for _, e := range es {
		total += int64(len(e.body))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		w, err := NewWriter(discard{}, testOpts)
		if err != nil {
			b.Fatal(err)
		}
		for i := range es {
			if err := w.Add(&es[i].hdr, bytes.NewReader(es[i].body)); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteTreeFile is BenchmarkWriteTree into a real sparse file (page cache included).
func BenchmarkWriteTreeFile(b *testing.B) {
	var es []entry
	for i := 0; i < 2000; i++ {
		es = append(es, reg(fmt.Sprintf("usr/lib/d%02d/f%04d", i%50, i), 0644, string(pattern(64<<10, byte(i)))))
	}
	for i := 0; i < 20000; i++ {
		es = append(es, reg(fmt.Sprintf("usr/share/d%03d/s%05d", i%300, i), 0644, "small file"))
	}
	var total int64
	for _, e := range es {
		total += int64(len(e.body))
	}
	b.SetBytes(total)
	path := filepath.Join(b.TempDir(), "bench.img")
	for b.Loop() {
		os.Remove(path)
		if _, err := buildTo(path, testOpts, es); err != nil {
			b.Fatal(err)
		}
	}
}
