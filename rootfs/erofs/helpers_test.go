package erofs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// entry is one tar entry of a test tree.
type entry struct {
	hdr  tar.Header
	body []byte
}

var testTime = time.Unix(1600000000, 123456789)

var testOpts = Options{
	UUID:  [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88},
	Time:  1700000000,
	Label: "imgfab-test",
}

func reg(name string, mode int64, data []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: testTime}, body: data}
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: testTime}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0777, ModTime: testTime}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: testTime}}
}

func dev(typ byte, name string, major, minor int64) entry {
	return entry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0660, Devmajor: major, Devminor: minor, ModTime: testTime}}
}

func withXattrs(e entry, kv ...string) entry {
	if e.hdr.PAXRecords == nil {
		e.hdr.PAXRecords = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		e.hdr.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
	}
	return e
}

// pattern is n bytes that differ from block to block (so misplaced blocks show).
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/4096)*31 + byte(i%251) + seed
	}
	return b
}

// memAt is an in-memory io.WriterAt that records the highest byte written and any write below 0.
type memAt struct {
	b   []byte
	max int64
}

func (m *memAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	end := off + int64(len(p))
	if end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	m.max = max(m.max, end)
	return len(p), nil
}

func addAll(w *Writer, entries []entry) error {
	for i := range entries {
		e := &entries[i]
		if err := w.Add(&e.hdr, bytes.NewReader(e.body)); err != nil {
			return err
		}
	}
	return nil
}

// buildMem writes entries to memory and returns the image bytes.
func buildMem(t testing.TB, opts Options, entries []entry) []byte {
	t.Helper()
	m := &memAt{}
	w, err := NewWriter(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := addAll(w, entries); err != nil {
		t.Fatalf("add: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if w.Size()%bs != 0 || m.max != w.Size() || int64(len(m.b)) != w.Size() {
		t.Fatalf("Size() = %d, highest byte written %d", w.Size(), m.max)
	}
	return m.b
}

// buildFile writes entries to a new image file and returns its path.
func buildFile(t testing.TB, opts Options, entries []entry) string {
	t.Helper()
	img := buildMem(t, opts, entries)
	path := filepath.Join(t.TempDir(), "fs.erofs")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fullTree is every entry type the writer supports, with the edge cases of the layout.
func fullTree() []entry {
	longTarget := strings.Repeat("very-long-symlink-target/", 6) + "end"
	acl := []byte{2, 0, 0, 0, // version 2
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // USER_OBJ rw-
		2, 0, 4, 0, 0xe8, 0x03, 0, 0, // USER 1000 r--
		4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // GROUP_OBJ r--
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // MASK r--
		0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff} // OTHER ---
	es := []entry{
		dir(".", 0755),
		dir("etc", 0755),
		reg("etc/passwd", 0644, []byte("root:x:0:0::/root:/bin/sh\n")),
		reg("empty", 0600, nil),
		reg("exact", 0644, pattern(2*4096, 1)),
		reg("one-block", 0644, pattern(4096, 9)),
		reg("three-and-tail", 0640, pattern(3*4096+100, 2)),
		reg("tail-4095", 0644, pattern(4095, 3)),
		reg("tail-4032", 0644, pattern(4032, 6)),
		reg("usr/bin/su", 04755, []byte("#!setuid binary")),
		reg("usr/bin/wall", 02755, []byte("#!setgid binary")),
		dir("tmp", 01777),
		withXattrs(reg("usr/bin/ping", 0755, pattern(5000, 4)),
			"security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
			"user.comment", "hello xattr",
			"trusted.overlay.opaque", "y"),
		// Xattrs so large that inode + xattrs + tail do not fit one block: the tail goes to a data block.
		withXattrs(reg("fat-xattrs", 0644, pattern(4096+300, 5)), "user.big", strings.Repeat("x", 3900)),
		withXattrs(dir("xdir", 0750), "user.dir", "d"),
		withXattrs(reg("acl", 0640, []byte("acl file")), "system.posix_acl_access", string(acl)),
		hardlink("hard", "etc/passwd"),
		hardlink("fwd", "zz/later"), // target comes later in the stream
		reg("zz/later", 0644, []byte("forward hardlink target")),
		hardlink("usr/hard2", "zz/later"),
		dev(tar.TypeChar, "dev/null", 1, 3),
		dev(tar.TypeChar, "dev/bigchar", 0xABC, 0xFEDCB),
		dev(tar.TypeBlock, "dev/bigblock", 0xFFF, 0xFFFFF),
		dev(tar.TypeBlock, "dev/sda", 8, 0),
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0620, ModTime: testTime}},
		symlink("bin", "usr/bin"),
		symlink("longlink", longTarget),
		symlink("maxlink", strings.Repeat("m", 4095)),
		reg("a/b/c/implicit-parents", 0644, []byte("deep")),
		// Names sorting before "." and "..": checks the dirent order the kernel's binary search needs.
		reg("!bang", 0644, []byte("!")),
		reg("-dash", 0644, []byte("-")),
		reg("owner", 0600, []byte("owned")),
	}
	es[len(es)-1].hdr.Uid, es[len(es)-1].hdr.Gid = 100000, 4000000000
	es[len(es)-2].hdr.ModTime = time.Unix(0, 1)
	// A directory over several dirent blocks, filled in an unsorted order.
	for i := 0; i < 500; i++ {
		k := (i * 7919) % 500
		name := fmt.Sprintf("big/%03d-%s", k, strings.Repeat("long-name-", 10+k%15))
		es = append(es, reg(name, 0644, []byte(name)))
	}
	// A directory whose dirents exactly need more than one block plus an inline tail.
	for i := 0; i < 40; i++ {
		es = append(es, symlink(fmt.Sprintf("links/%02d-%s", i, strings.Repeat("y", 200)), "../"+strings.Repeat("t", i+1)))
	}
	return es
}

// sinkWriter discards writes (for streaming size checks).
type sinkWriter struct{ max int64 }

func (s *sinkWriter) WriteAt(p []byte, off int64) (int, error) {
	s.max = max(s.max, off+int64(len(p)))
	return len(p), nil
}

var _ io.WriterAt = (*sinkWriter)(nil)
