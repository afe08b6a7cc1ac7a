package inspect

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgfab/imgfab/rootfs/erofs"
)

// smallEROFS writes a small EROFS image with rootfs/erofs: os-release, a kernel and initrd, a
// symlink, a file of several blocks and a directory of several blocks (300 entries).
func smallEROFS(t testing.TB) []byte {
	t.Helper()
	var buf writerAt
	w, err := erofs.NewWriter(&buf, erofs.Options{UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Time: 1700000000, Label: "small"})
	if err != nil {
		t.Fatal(err)
	}
	add := func(h *tar.Header, body string) {
		t.Helper()
		h.ModTime = time.Unix(1700000000, 0)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := w.Add(h, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "etc", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644}, "PRETTY_NAME=\"Small\"\nID=small\n")
	add(&tar.Header{Name: "boot", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "boot/vmlinuz-1.0", Typeflag: tar.TypeReg, Mode: 0o644}, strings.Repeat("kernel", 3000))
	add(&tar.Header{Name: "boot/initrd.img-1.0", Typeflag: tar.TypeReg, Mode: 0o644}, "initrd")
	add(&tar.Header{Name: "vmlinuz", Typeflag: tar.TypeSymlink, Linkname: "boot/vmlinuz-1.0"}, "")
	add(&tar.Header{Name: "many", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	for i := range 300 {
		add(&tar.Header{Name: fmt.Sprintf("many/file-with-a-longish-name-%03d", i), Typeflag: tar.TypeReg, Mode: 0o644}, fmt.Sprint(i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.b[:w.Size()]
}

// writerAt is an in-memory io.WriterAt.
type writerAt struct{ b []byte }

func (w *writerAt) WriteAt(p []byte, off int64) (int, error) {
	if n := off + int64(len(p)); n > int64(len(w.b)) {
		w.b = append(w.b, make([]byte, n-int64(len(w.b)))...)
	}
	return copy(w.b[off:], p), nil
}

// walkAll reads everything in fsys: every directory, every file whole, every symlink; it
// returns the first error and how many entries were seen.
func walkAll(fsys fs.FS) (int, error) {
	n := 0
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	note(fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			note(err)
			return nil
		}
		n++
		if n > 10000 {
			return errors.New("too many entries")
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			_, err := fs.ReadLink(fsys, p)
			note(err)
		case d.Type().IsRegular():
			_, err := fs.ReadFile(fsys, p)
			note(err)
		}
		_, err = d.Info()
		note(err)
		return nil
	}))
	return n, first
}

// TestEROFSReader: the small image probes as erofs, opens and passes fstest.TestFS through the
// fenced go-erofs reader; Inspect's own reads (os-release, the kernel) find what is there.
func TestEROFSReader(t *testing.T) {
	img := smallEROFS(t)
	r := bytes.NewReader(img)
	size := int64(len(img))
	if f := probe(r, size); f.Type != "erofs" || f.UUID != "01020304-0506-0708-090a-0b0c0d0e0f10" || f.Label != "small" || f.Size != size {
		t.Errorf("probe %+v (image of %d bytes)", f, size)
	}
	fsys, err := openEROFS(r, size, 1<<30) // fstest.TestFS reads every file and directory many times
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "etc/os-release", "boot/vmlinuz-1.0", "boot/initrd.img-1.0", "vmlinuz", "many/file-with-a-longish-name-299"); err != nil {
		t.Error(err)
	}
	if osr, err := readOSRelease(fsys); err != nil || osr.PrettyName != "Small" {
		t.Errorf("os-release %+v %v", osr, err)
	}
	if _, err := fsys.Open("/etc/os-release"); err == nil {
		t.Error("an absolute path opened")
	}
	if es, err := fs.ReadDir(fsys, "many"); err != nil || len(es) != 300 {
		t.Errorf("many/: %d entries, %v", len(es), err)
	}
}

// reseal recomputes the superblock checksum of an EROFS image after a test changed a field.
func reseal(b []byte) {
	sb := b[erofsSBOffset:4096]
	clear(sb[4:8])
	le.PutUint32(sb[4:], ^crc32.Checksum(sb, crc32.MakeTable(crc32.Castagnoli)))
}

// TestEROFSHostileSuperblock: superblock fields out of range are errors before go-erofs reads
// anything, or errors from it, never a panic; a checksum that does not match is an error.
func TestEROFSHostileSuperblock(t *testing.T) {
	good := smallEROFS(t)
	const o = erofsSBOffset
	for _, c := range []struct {
		name string
		set  func(b []byte) // changes fields of the superblock at o
		want string         // in the error; "" any error or none
	}{
		{"checksum", func(b []byte) { b[o+4] ^= 1 }, "checksum"},
		{"blocks past the partition", func(b []byte) { le.PutUint32(b[o+36:], 1<<30); reseal(b) }, "more than the"},
		{"block size 2^30", func(b []byte) { b[o+12] = 30; reseal(b) }, "no valid superblock"},
		{"root nid far away", func(b []byte) { le.PutUint16(b[o+14:], 0xFFFF); reseal(b) }, ""},
		{"meta_blkaddr far away", func(b []byte) { le.PutUint32(b[o+40:], 1<<31); reseal(b) }, ""},
		{"meta_blkaddr past the end", func(b []byte) { le.PutUint32(b[o+40:], uint32(len(b)/4096)); reseal(b) }, ""},
		{"unknown incompat features", func(b []byte) { le.PutUint32(b[o+80:], 0xFFFFFFFF); reseal(b) }, ""},
		{"extra devices", func(b []byte) { le.PutUint32(b[o+80:], 0x8); le.PutUint16(b[o+84:], 0xFFFF); reseal(b) }, ""},
	} {
		b := bytes.Clone(good)
		c.set(b)
		fsys, err := openEROFS(bytes.NewReader(b), int64(len(b)), 64<<20)
		if err == nil {
			_, err = walkAll(fsys)
		}
		if err == nil && c.want != "" || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// TestEROFSMutations flips random bytes of the small image's metadata (the superblock resealed,
// so the changes reach go-erofs) and reads everything through the fenced reader: each case ends
// in data or errors, in bounded time and memory. Panics inside go-erofs become errors (counted).
func TestEROFSMutations(t *testing.T) {
	good := smallEROFS(t)
	meta := int64(le.Uint32(good[erofsSBOffset+40:])) * 4096
	rng := rand.New(rand.NewPCG(1, 2))
	n := 400 // about 1 s; IMGFAB_SLOW=1: 5000
	if os.Getenv("IMGFAB_SLOW") != "" {
		n = 5000
	}
	panics, opened := 0, 0
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	for i := range n {
		b := bytes.Clone(good)
		for range 1 + rng.IntN(8) {
			var off int64
			if rng.IntN(8) == 0 {
				off = erofsSBOffset + 8 + rng.Int64N(120) // superblock fields after the checksum
			} else {
				off = meta + rng.Int64N(int64(len(b))-meta)
			}
			b[off] ^= byte(1 + rng.IntN(255))
		}
		reseal(b)
		fsys, err := openEROFS(bytes.NewReader(b), int64(len(b)), 8<<20)
		if err == nil {
			opened++
			_, err = walkAll(fsys)
		}
		if err != nil && strings.Contains(err.Error(), "panicked") {
			panics++
			if panics == 1 {
				t.Logf("case %d: %v", i, err)
			}
		}
	}
	runtime.ReadMemStats(&ms1)
	took, alloc := time.Since(start), ms1.TotalAlloc-ms0.TotalAlloc
	t.Logf("%d mutations: %d opened, %d go-erofs panics recovered; %v, %d MiB allocated", n, opened, panics, took, alloc>>20)
	if took > time.Duration(n)*10*time.Millisecond {
		t.Errorf("%d cases took %v", n, took)
	}
}

// TestEROFSBudget: a reader whose budget is spent fails with errEROFSBudget, and a directory
// claiming more than maxEROFSDir is not listed.
func TestEROFSBudget(t *testing.T) {
	img := smallEROFS(t)
	fsys, err := openEROFS(bytes.NewReader(img), int64(len(img)), 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := walkAll(fsys); !errors.Is(err, errEROFSBudget) {
		t.Errorf("walk within 32 KiB: %v, want the budget spent", err)
	}
	// The root directory's inode is nid 0 here (rootfs/erofs puts the root first): an extended
	// inode's i_size is the u64 at byte 8.
	b := bytes.Clone(img)
	meta := int64(le.Uint32(b[erofsSBOffset+40:])) * 4096
	root := meta + int64(le.Uint16(b[erofsSBOffset+14:]))*32
	le.PutUint64(b[root+8:], maxEROFSDir+4096)
	fsys, err = openEROFS(bytes.NewReader(b), int64(len(b)), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadDir(fsys, "."); err == nil || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("a directory of %d bytes: %v", maxEROFSDir+4096, err)
	}
}

// FuzzEROFS reads an EROFS image through the fenced reader: any input ends in data or errors.
// Seeds: the small image, and the image with its metadata block cut short.
func FuzzEROFS(f *testing.F) {
	img := smallEROFS(f)
	f.Add(img)
	f.Add(img[:len(img)-4096])
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4096 && le.Uint32(b[erofsSBOffset:]) == erofsMagic {
			reseal(b) // reach go-erofs rather than the checksum
		}
		fsys, err := openEROFS(bytes.NewReader(b), int64(len(b)), 4<<20)
		if err != nil {
			return
		}
		_, _ = walkAll(fsys)
	})
}
