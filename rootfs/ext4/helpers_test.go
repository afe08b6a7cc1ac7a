package ext4

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// entry is one tar entry of a test tree.
type entry struct {
	hdr  tar.Header
	body []byte
	// bodyFn streams a large body instead of holding it.
	bodyFn func() io.Reader
}

var testTime = time.Unix(1600000000, 123456789)

func reg(name string, mode int64, data string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: testTime}, body: []byte(data)}
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

var testOpts = Options{
	UUID:     [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88},
	HashSeed: [16]byte{0xa1, 0xa2, 0xa3, 0xa4, 0xb1, 0xb2, 0xc1, 0xc2, 0xd1, 0xd2, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6},
	Time:     1700000000,
	Label:    "imgfab-test",
}

// build writes entries to a new sparse image file and returns its path and the writer.
func build(t testing.TB, opts Options, entries []entry) (string, *Writer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fs.img")
	w, err := buildTo(path, opts, entries)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return path, w
}

func buildTo(path string, opts Options, entries []entry) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w, err := NewWriter(f, opts)
	if err != nil {
		return nil, err
	}
	for i := range entries {
		e := &entries[i]
		var r io.Reader = bytes.NewReader(e.body)
		if e.bodyFn != nil {
			r = e.bodyFn()
		}
		if err := w.Add(&e.hdr, r); err != nil {
			return w, err
		}
	}
	if err := w.Close(); err != nil {
		return w, err
	}
	if err := f.Truncate(w.Size()); err != nil {
		return w, err
	}
	return w, nil
}

// fsckClean runs e2fsck -fn (plus extra args) and requires exit 0 and only the Pass lines and the summary
// (EXT4.md §13.1).
func fsckClean(t testing.TB, img string, extra ...string) {
	t.Helper()
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	args := append([]string{"-fn"}, extra...)
	args = append(args, img)
	out, err := exec.Command(e2fsck, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck %v: %v\n%s", args, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var bad []string
	for i, l := range lines {
		if strings.HasPrefix(l, "Pass ") || strings.HasPrefix(l, "e2fsck ") && i == 0 {
			continue
		}
		if i == len(lines)-1 && strings.Contains(l, "files") && strings.Contains(l, "blocks") {
			continue
		}
		bad = append(bad, l)
	}
	if len(bad) > 0 || len(lines) < 6 {
		t.Fatalf("e2fsck %v not clean:\n%s", args, out)
	}
}

// fsckNoChange runs e2fsck -fy on a copy and requires that only the allowed superblock bytes changed
// (EXT4.md §13.2).
func fsckNoChange(t testing.TB, img string) {
	t.Helper()
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	cmpPath := testtool.Need(t, "cmp", "diffutils")
	cp := img + ".fy"
	if out, err := exec.Command("cp", "--sparse=always", img, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	defer os.Remove(cp)
	cmd := exec.Command(e2fsck, "-fy", cp)
	cmd.Env = append(os.Environ(), "E2FSCK_TIME=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fy: %v\n%s", err, out)
	}
	out, _ := exec.Command(cmpPath, "-l", img, cp).CombinedOutput()
	allowed := func(off int64) bool {
		o := off - 1 - 1024 // cmp offsets are 1-based; superblock at 1024
		return (o >= 0x30 && o < 0x34) || (o >= 0x40 && o < 0x44) || (o >= 0x178 && o < 0x180) || (o >= 0x3FC && o < 0x400)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		var off int64
		var a, b int
		if _, err := fmtSscanf(l, &off, &a, &b); err != nil || !allowed(off) {
			t.Fatalf("e2fsck -fy changed the image:\n%s", out)
		}
	}
}
