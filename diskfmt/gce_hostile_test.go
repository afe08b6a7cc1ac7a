package diskfmt

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// ---- building tarballs by hand ----

// tarField writes v into a numeric header field: octal when it fits, else GNU base-256.
func tarField(b []byte, v int64) {
	if s := fmt.Sprintf("%0*o", len(b)-1, v); len(s) < len(b) {
		copy(b, s)
		b[len(b)-1] = 0
		return
	}
	clear(b)
	for i := len(b) - 1; i > 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	b[0] = 0x80
}

// tarBlock is a header block: name, typeflag, size field, GNU or POSIX magic; fix sets the
// checksum after any other change.
func tarBlock(name string, flag byte, size int64, gnu bool) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	tarField(b[124:136], size)
	copy(b[136:], "00000000000\x00")
	b[156] = flag
	if gnu {
		copy(b[257:], "ustar  \x00")
	} else {
		copy(b[257:], "ustar\x0000")
	}
	fixChecksum(b)
	return b
}

func fixChecksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
}

// oldGNUSparse is an old GNU 'S' header for disk.raw of realsize bytes storing stored bytes,
// with the given map: 4 entries in the header, 21 in each extension block.
func oldGNUSparse(realsize, stored int64, ents []Extent) []byte {
	hdr := tarBlock("disk.raw", 'S', stored, true)
	tarField(hdr[483:495], realsize)
	out := hdr
	area, ext := hdr[386:482], &hdr[482]
	for len(ents) > 0 {
		if len(area) < 24 {
			*ext = 1
			blk := make([]byte, 512)
			out = append(out, blk...)
			blk = out[len(out)-512:]
			area, ext = blk[:504], &blk[504]
		}
		tarField(area[:12], ents[0].Off)
		tarField(area[12:24], ents[0].Len)
		area, ents = area[24:], ents[1:]
	}
	fixChecksum(out[:512])
	return out
}

// paxHeader is a PAX 'x' header holding recs (key, value pairs, in order).
func paxHeader(recs ...string) []byte {
	var data []byte
	for i := 0; i+1 < len(recs); i += 2 {
		kv := " " + recs[i] + "=" + recs[i+1] + "\n"
		n := len(kv) + 1
		for len(fmt.Sprint(n))+len(kv) != n {
			n++
		}
		data = append(data, fmt.Sprintf("%d%s", n, kv)...)
	}
	out := tarBlock("PaxHeaders/disk.raw", 'x', int64(len(data)), false)
	return append(out, padBlock(data)...)
}

func padBlock(b []byte) []byte {
	return append(b, make([]byte, -len(b)&511)...)
}

func gzipBytes(t testing.TB, parts ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	for _, p := range parts {
		if _, err := zw.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostile64TiB is the hostile tarball of issue 10: disk.raw a 64 TiB old GNU sparse member
// whose only data is 512 bytes at its end; about 220 bytes of gzip.
func hostile64TiB(t testing.TB) []byte {
	data := pattern(512, 64)
	return gzipBytes(t, oldGNUSparse(gceMaxDisk, 512, []Extent{{gceMaxDisk - 512, 512}}), data, make([]byte, 1024))
}

// writeFile writes b to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// shmTemp points TMPDIR at a directory on tmpfs (/dev/shm), whose files may be 64 TiB sparse,
// or skips the test.
func shmTemp(t *testing.T) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != 0x01021994 { // TMPFS_MAGIC
		t.Skip("no tmpfs at /dev/shm for a 64 TiB sparse temporary file")
	}
	dir, err := os.MkdirTemp("/dev/shm", "imgfab-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("TMPDIR", dir)
}

// ---- tests ----

// TestGCEHostileSparse64TiB: the 220-byte tarball of a 64 TiB sparse disk.raw opens at once:
// the holes are never decompressed, written or walked. On tmpfs it opens; where the temporary
// directory cannot hold a 64 TiB sparse file (ext4) it fails at once, saying so.
func TestGCEHostileSparse64TiB(t *testing.T) {
	b := hostile64TiB(t)
	t.Logf("hostile tarball: %d bytes", len(b))
	path := writeFile(t, t.TempDir(), "hostile.tar.gz", b)
	check := func(t *testing.T) {
		start := time.Now()
		img, err := Open(context.Background(), path)
		took := time.Since(start)
		t.Logf("open: %v, %v", took, err)
		if took > 2*time.Second {
			t.Errorf("open took %v", took)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "cannot hold disk.raw's 70368744177664 bytes") {
				t.Errorf("error %v, want the temporary directory's limit named", err)
			}
			return
		}
		defer img.Close()
		exts := img.Extents()
		if img.Format() != "gce" || img.Size() != gceMaxDisk || len(exts) != 1 || exts[0].End() != gceMaxDisk || exts[0].Len > 1<<20 {
			t.Fatalf("format %s size %d extents %v", img.Format(), img.Size(), exts)
		}
		got := make([]byte, 1024)
		if _, err := img.ReadAt(got, gceMaxDisk-1024); err != nil {
			t.Fatal(err)
		}
		if !isZero(got[:512]) || !bytes.Equal(got[512:], pattern(512, 64)) {
			t.Error("the last 1 KiB read back differs")
		}
	}
	t.Run("tmpdir", check)
	t.Run("tmpfs", func(t *testing.T) { shmTemp(t); check(t) })
}

// gnuTarCases: GNU tar's formats for disk.raw, as `tar -czf` would make them.
var gnuTarCases = []struct{ name, args string }{
	{"oldgnu-sparse", "--format=oldgnu -S"}, // GCE's documented command
	{"gnu-sparse", "--format=gnu -S"},
	{"posix-sparse-1.0", "--format=posix -S"},
	{"posix-sparse-0.1", "--format=posix -S --sparse-version=0.1"},
	{"posix-sparse-0.0", "--format=posix -S --sparse-version=0.0"},
	{"oldgnu", "--format=oldgnu"},
	{"posix", "--format=posix"},
	{"ustar", "--format=ustar"},
}

// gnuTar makes dir/NAME.tar.gz of dir/disk.raw with GNU tar.
func gnuTar(t testing.TB, dir, name, args string) string {
	t.Helper()
	out := filepath.Join(dir, name+".tar.gz")
	cmd := exec.Command("tar", append(append([]string{"-C", dir}, strings.Fields(args)...), "-czf", out, "disk.raw")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar %s: %v: %s", args, err, b)
	}
	return out
}

// TestGCEGNUTar: tarballs made by GNU tar, sparse (old GNU, PAX 0.0, 0.1, 1.0) or not, read back
// as the disk they hold, with the holes as holes.
func TestGCEGNUTar(t *testing.T) {
	testtool.Need(t, "tar", "tar")
	dir := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())
	size := 64 * mib
	pieces := []piece{
		{0, pattern(1000, 1)},           // at 0, unaligned end
		{5*mib + 3, pattern(70000, 2)},  // unaligned, across 64 KiB blocks
		{20 * mib, make([]byte, 2*mib)}, // zeros written as data
		{30 * mib, pattern(3*int(mib), 3)},
		{size - 4096, pattern(4096, 4)}, // the last block
	}
	raw := makeSparse(t, dir, size, pieces)
	if err := os.Rename(raw, filepath.Join(dir, "disk.raw")); err != nil {
		t.Fatal(err)
	}
	raw = filepath.Join(dir, "disk.raw")
	want := paddedSHA(t, raw, size)
	for _, c := range gnuTarCases {
		t.Run(c.name, func(t *testing.T) {
			tgz := gnuTar(t, dir, c.name, c.args)
			img, err := Open(context.Background(), tgz)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.Format() != "gce" || img.Size() != size {
				t.Fatalf("format %s size %d", img.Format(), img.Size())
			}
			var data int64
			for _, e := range img.Extents() {
				data += e.Len
			}
			if data > 6*mib {
				t.Errorf("%d bytes of extents for 4 MiB of data: holes were written", data)
			}
			h := sha256.New()
			if _, err := io.Copy(h, io.NewSectionReader(img, 0, size)); err != nil {
				t.Fatal(err)
			}
			if [32]byte(h.Sum(nil)) != want {
				t.Error("disk.raw read back differs")
			}
		})
	}
}

// TestGCEGNUTarHuge: GNU tar's sparse tarball of a 15 TiB disk (within ext4's 16 TiB) opens in
// about the time its data takes.
func TestGCEGNUTarHuge(t *testing.T) {
	testtool.Need(t, "tar", "tar")
	dir := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())
	size := int64(15) << 40
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(pattern(1<<20, 5), 7<<40)
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Skipf("no 15 TiB sparse file here: %v", err)
	}
	for _, c := range gnuTarCases[:3] {
		t.Run(c.name, func(t *testing.T) {
			tgz := gnuTar(t, dir, c.name, c.args)
			fi, _ := os.Stat(tgz)
			start := time.Now()
			img, err := Open(context.Background(), tgz)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			t.Logf("%d-byte tarball of a 15 TiB disk opened in %v", fi.Size(), time.Since(start))
			exts := img.Extents()
			if img.Size() != size || len(exts) != 1 || exts[0] != (Extent{7 << 40, 1 << 20}) {
				t.Errorf("size %d extents %v", img.Size(), exts)
			}
		})
	}
}

// TestGCEHostileHeaders: sparse maps and sizes that lie are refused at once, naming the field.
// (Through readGCE: Open would call a tarball whose first header is damaged not GCE at all.)
func TestGCEHostileHeaders(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	const tib = int64(1) << 40
	data := pattern(4096, 9)
	trailer := make([]byte, 1024)
	sp := func(realsize, stored int64, ents ...Extent) []byte {
		return gzipBytes(t, oldGNUSparse(realsize, stored, ents), padBlock(bytes.Clone(data[:min(stored, 4096)])), trailer)
	}
	manyZeroBlocks := func() []byte { // extension blocks that only say "another follows"
		h := oldGNUSparse(1<<20, 0, nil)
		h[482] = 1
		fixChecksum(h)
		ext := make([]byte, 512)
		ext[504] = 1
		parts := [][]byte{h}
		for range 60000 {
			parts = append(parts, ext)
		}
		return gzipBytes(t, parts...)
	}
	pax := func(recs ...string) []byte {
		return gzipBytes(t, paxHeader(recs...), tarBlock("disk.raw", '0', 512, false), data[:512], trailer)
	}
	pax10 := func(mapText string, stored int64) []byte {
		m := padBlock([]byte(mapText))
		return gzipBytes(t, paxHeader("GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "disk.raw", "GNU.sparse.realsize", fmt.Sprint(64*tib)),
			tarBlock("GNUSparseFile.1/disk.raw", '0', int64(len(m))+stored, false), m, padBlock(bytes.Clone(data[:stored])), trailer)
	}
	// A 1.0 map of 200 entries in a member of one block: 254 numbers fill it exactly.
	pax10Short := gzipBytes(t, paxHeader("GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "disk.raw", "GNU.sparse.realsize", "1048576"),
		tarBlock("GNUSparseFile.1/disk.raw", '0', 512, false), []byte("200\n"+strings.Repeat("0\n", 400)), trailer)
	cases := []struct {
		name, want string
		tgz        []byte
	}{
		{"size past 64 TiB", "disk.raw size", sp(64*tib+512, 512, Extent{0, 512})},
		{"size not whole sectors", "disk.raw size", sp(1<<20+1, 512, Extent{0, 512})},
		{"fragment past the end", "runs past disk.raw's", sp(1<<20, 512, Extent{1 << 20, 512})},
		{"fragment overflows", "runs past disk.raw's", sp(1<<20, 512, Extent{1<<62 + 1<<61, 1 << 62})},
		{"unsorted", "not sorted", sp(1<<20, 1024, Extent{4096, 512}, Extent{0, 512})},
		{"overlapping", "not sorted", sp(1<<20, 1024, Extent{0, 1024}, Extent{512, 0})},
		{"more data than stored", "more than the 512 bytes stored", sp(1<<20, 512, Extent{0, 4096})},
		{"less data than stored", "the fragments hold 512 bytes, the archive stores 1024", sp(1<<20, 1024, Extent{0, 512})},
		// 8 TiB: a temporary file on ext4 can be that large; a larger one fails at once with EFBIG.
		{"stored claims 8 TiB", "the archive ends", sp(8*tib, 8*tib, Extent{0, 8 * tib})},
		{"plain claims 8 TiB", "the archive ends", gzipBytes(t, tarBlock("disk.raw", '0', 8*tib, true), data)},
		{"endless extension blocks", "extension blocks", manyZeroBlocks()},
		{"negative base-256", "tar header size", gzipBytes(t, func() []byte {
			b := tarBlock("disk.raw", '0', 512, true)
			b[124] = 0xff
			fixChecksum(b)
			return b
		}())},
		{"bad checksum", "tar header checksum", gzipBytes(t, func() []byte {
			b := tarBlock("disk.raw", '0', 512, true)
			b[0] = 'D'
			return b
		}())},
		{"PAX size huge", "the archive ends", pax("size", "8796093022208")},
		{"PAX size overflow", "PAX size", pax("size", "99999999999999999999")},
		{"PAX bad record", "PAX record", gzipBytes(t, tarBlock("x", 'x', 10, false), padBlock([]byte("99 a=b\nxx")))},
		{"PAX sparse version", "GNU.sparse.major/minor", pax("GNU.sparse.major", "2", "GNU.sparse.minor", "0")},
		{"PAX 0.1 count", "numblocks", pax("GNU.sparse.size", "1048576", "GNU.sparse.numblocks", "3", "GNU.sparse.map", "0,512")},
		{"PAX 0.0 order", "out of order", pax("GNU.sparse.size", "1048576", "GNU.sparse.numbytes", "512")},
		{"PAX 1.0 count", "GNU sparse 1.0 map", pax10("99999999999\n", 0)},
		{"PAX 1.0 map past member", "runs past the member", pax10Short},
		{"PAX 1.0 map ends early", "number 3", pax10("2\n0\n512\n", 0)},
		{"PAX 1.0 unsorted", "not sorted", pax10("2\n4096\n512\n0\n512\n", 1024)},
		{"PAX 1.0 long line", "number 0: not 1 to 19 digits", pax10(strings.Repeat("1", 600), 0)},
		{"empty archive", "end-of-archive block", gzipBytes(t, trailer)},
		{"long name chain", "extension headers", gzipBytes(t, bytes.Repeat(append(tarBlock("././@LongLink", 'L', 9, true), padBlock([]byte("disk.raw\x00"))...), 10))},
		{"symlink", "want the regular file", gzipBytes(t, tarBlock("disk.raw", '2', 0, true), trailer)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			img, err := readGCE(context.Background(), bytes.NewReader(c.tgz))
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			if err == nil {
				img.Close()
				t.Fatal("opened")
			}
			var fe *FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want a FormatError with %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

// TestGCEManySparseEntries: a map of 100,000 fragments (extension blocks) is read and holds.
func TestGCEManySparseEntries(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	const n = 100000
	ents := make([]Extent, n)
	for i := range ents {
		ents[i] = Extent{int64(i) * 8192, 1}
	}
	data := bytes.Repeat([]byte{7}, n)
	tgz := gzipBytes(t, oldGNUSparse(n*8192, n, ents), padBlock(data), make([]byte, 1024))
	img, err := Open(context.Background(), writeFile(t, t.TempDir(), "many.tar.gz", tgz))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, 1)
	for _, off := range []int64{0, 8192 * 500, 8192*(n-1) + 1, 8192 * (n - 1)} {
		img.ReadAt(b, off)
		if want := byte(7 * (1 - off%8192)); b[0] != want {
			t.Errorf("byte at %d is %d, want %d", off, b[0], want)
		}
	}
}

// TestGCETrailer: what may follow disk.raw: nothing, the end-of-archive blocks and GNU tar's
// record padding, bytes after the gzip member that are not gzip; not a second entry, not more
// than gceMaxTail bytes; the gzip CRC is checked; disk.raw may span two gzip members.
func TestGCETrailer(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir := t.TempDir()
	hdr, data := tarBlock("disk.raw", '0', 1024, true), pattern(1024, 3)
	open := func(b []byte) error {
		img, err := Open(context.Background(), writeFile(t, dir, "t.tar.gz", b))
		if err == nil {
			img.Close()
		}
		return err
	}
	if err := open(gzipBytes(t, hdr, data)); err != nil {
		t.Errorf("no trailer: %v", err)
	}
	if err := open(gzipBytes(t, hdr, data, make([]byte, 10240-1536))); err != nil {
		t.Errorf("GNU tar's record padding: %v", err)
	}
	if err := open(gzipBytes(t, hdr, data, make([]byte, gceMaxTail+1024))); err == nil || !strings.Contains(err.Error(), "follow the end of the archive") {
		t.Errorf("%d bytes after the archive: %v", gceMaxTail, err)
	}
	if err := open(gzipBytes(t, hdr, data, tarBlock("extra", '0', 0, true))); err == nil || !strings.Contains(err.Error(), `second entry "extra"`) {
		t.Errorf("second entry: %v", err)
	}
	for _, tail := range [][]byte{make([]byte, 100), []byte("garbage\n")} {
		if err := open(append(gzipBytes(t, hdr, data, make([]byte, 1024)), tail...)); err != nil {
			t.Errorf("%q after the gzip member: %v", tail[:4], err)
		}
		if err := open(append(gzipBytes(t, hdr, data), tail...)); err != nil {
			t.Errorf("%q after the gzip member, no tar trailer: %v", tail[:4], err)
		}
	}
	if err := open(append(gzipBytes(t, hdr, data[:512]), gzipBytes(t, data[512:], make([]byte, 1024))...)); err != nil {
		t.Errorf("two gzip members: %v", err)
	}
	bad := gzipBytes(t, hdr, data, make([]byte, 1024))
	bad[len(bad)-8] ^= 1 // the CRC
	if err := open(bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("bad CRC: %v", err)
	}
}

// TestGCEReadCancel: decompressing a large plain disk.raw (8 GiB of zeros, 8 MiB of gzip) stops
// soon after the context is cancelled.
func TestGCEReadCancel(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	path := filepath.Join(t.TempDir(), "zeros.tar.gz")
	if err := WriteFile(context.Background(), path, gce{}, constDisk{size: 8 * gib}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	img, err := Open(ctx, path)
	took := time.Since(start)
	if err == nil {
		img.Close()
		t.Skipf("opened in %v, before the cancel", took)
	}
	if !errors.Is(err, context.Canceled) || took > time.Second {
		t.Errorf("%v after %v, want context.Canceled within 1 s", err, took)
	}
	t.Logf("cancelled after %v", took)
}

// TestGCEWriteLimits: a disk past 64 TiB is refused before a byte is written; writing the
// largest one stops soon after the context is cancelled.
func TestGCEWriteLimits(t *testing.T) {
	var n gceByteCounter
	err := (gce{}).Write(context.Background(), &n, constDisk{size: gceMaxDisk + 512})
	if err == nil || n != 0 || !strings.Contains(err.Error(), "70368744178176 bytes") || !strings.Contains(err.Error(), "70368744177664") {
		t.Errorf("64 TiB + 512: %v after %d bytes written, want a refusal naming both sizes, nothing written", err, n)
	}
	for _, f := range []Format{gce{}, rawGz} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := f.Write(ctx, io.Discard, constDisk{size: gceMaxDisk, exts: []Extent{{gceMaxDisk - mib, mib}}})
		if took := time.Since(start); !errors.Is(err, context.Canceled) || took > time.Second {
			t.Errorf("%s of 64 TiB: %v after %v, want context.Canceled within 1 s", f.Name(), err, took)
		}
		cancel()
	}
}

type gceByteCounter int64

func (c *gceByteCounter) Write(p []byte) (int, error) {
	*c += gceByteCounter(len(p))
	return len(p), nil
}

// TestIsGCETarballAt: detection on an open file or any ReaderAt, the name in a PAX record too.
func TestIsGCETarballAt(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"sparse", hostile64TiB(t), true},
		{"pax 1.0 name", gzipBytes(t, paxHeader("GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "disk.raw"), tarBlock("GNUSparseFile.1/disk.raw", '0', 0, false)), true},
		{"other name", gzipBytes(t, tarBlock("image.raw", '0', 0, true)), false},
		{"not gzip", make([]byte, 1024), false},
		{"gzip, not tar", gzipBytes(t, []byte("hello")), false},
	} {
		ok, err := IsGCETarballAt(bytes.NewReader(c.b))
		if ok != c.want || err != nil {
			t.Errorf("%s: %v, %v; want %v", c.name, ok, err, c.want)
		}
	}
	// The path form refuses a FIFO at once instead of blocking on it.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() { _, err := IsGCETarball(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO: no error")
		}
	case <-time.After(2 * time.Second):
		t.Error("IsGCETarball blocks on a FIFO")
	}
}

// TestGCEArchiveTarCompat: what archive/tar writes (GNU and PAX, names and sizes in PAX records)
// reads back.
func TestGCEArchiveTarCompat(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	data := pattern(4096, 11)
	for _, h := range []tar.Header{
		{Name: "disk.raw", Size: 4096, Format: tar.FormatGNU, Mode: 0o644},
		{Name: "disk.raw", Size: 4096, Format: tar.FormatPAX, Mode: 0o644, PAXRecords: map[string]string{"comment": "x"}},
		{Name: "disk.raw", Size: 4096, Format: tar.FormatUSTAR, Mode: 0o644},
	} {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
		tw.Close()
		zw.Close()
		img, err := readGCE(context.Background(), &buf)
		if err != nil {
			t.Errorf("%v: %v", h.Format, err)
			continue
		}
		got := make([]byte, 4096)
		img.ReadAt(got, 0)
		if !bytes.Equal(got, data) || img.Size() != 4096 {
			t.Errorf("%v: read back differs", h.Format)
		}
		img.Close()
	}
}

// TestGzipZeroCRC: advancing the CRC over a zero segment by the precomputed map gives what
// crc32.Update over the zeros gives.
func TestGzipZeroCRC(t *testing.T) {
	for i, c := range []uint32{0, 1, 0xffffffff, 0xdeadbeef, 0x80000000, 0x12345678} {
		gw := &gzWriter{w: bufio.NewWriter(io.Discard), crc: c}
		if err := gw.zeroSegment(nil); err != nil {
			t.Fatal(err)
		}
		if want := crc32.Update(c, crc32.IEEETable, zeros[:gzSegment]); gw.crc != want || gw.n != gzSegment {
			t.Errorf("case %d: crc %08x n %d, want %08x and %d", i, gw.crc, gw.n, want, gzSegment)
		}
	}
}
