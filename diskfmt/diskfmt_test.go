package diskfmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// piece is data to put into a test disk at an offset.
type piece struct {
	off  int64
	data []byte
}

// pattern returns n non-zero bytes that depend on seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range p {
		x = x*1664525 + 1013904223
		p[i] = byte(x>>24) | 1
	}
	return p
}

// makeSparse creates a sparse file of the given size holding pieces; the rest are holes.
func makeSparse(t testing.TB, dir string, size int64, pieces []piece) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "disk-*.raw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range pieces {
		if _, err := f.WriteAt(p.data, p.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func openDisk(t testing.TB, path string) Disk {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d, err := OpenFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func run(t testing.TB, name string, args ...string) ([]byte, int) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out, 0
}

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

type diskCase struct {
	name   string
	size   int64
	pieces []piece
}

func diskCases() []diskCase {
	return []diskCase{
		{"empty", 1 * mib, nil},
		{"zero-size", 0, nil},
		{"mixed", 3*mib + 3*512, []piece{
			{0, pattern(4096, 1)},                      // data at the start
			{1 * mib, make([]byte, 128*kib)},           // zeros written as data: stays unallocated
			{1*mib + 512*kib + 100, pattern(70000, 2)}, // unaligned, crosses clusters
			{2 * mib, append(make([]byte, 65536), 7)},  // one zero cluster, then one byte
			{3*mib + 3*512 - 512, pattern(512, 3)},     // the last sector, in a partial cluster
		}},
		{"dense", 8 * mib, []piece{{0, pattern(int(8*mib), 4)}}},
		{"multi-L2", 3*gib/2 + 3*qcowCluster + 512, []piece{
			{0, pattern(100, 5)},
			{600 * mib, pattern(int(5*mib), 6)},           // in the second L2 range
			{512*mib - 4096, pattern(8192, 7)},            // across the first L2 boundary
			{1100*mib + 12345, pattern(3*qcowCluster, 8)}, // third L2 range
			{3*gib/2 + 3*qcowCluster, pattern(512, 9)},    // the last sector, partial cluster
		}},
		{"2TiB", 2 * tib, []piece{
			{0, pattern(512, 10)},
			{1 * tib, pattern(int(1*mib), 11)},
			{2*tib - 4096, pattern(4096, 12)},
		}},
	}
}

// wantClusters returns the guest ranges, in whole clusters clipped to size, that hold non-zero data.
func wantClusters(t *testing.T, rawPath string, size int64, pieces []piece) []Extent {
	f, err := os.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cs []int64
	for _, p := range pieces {
		for c := p.off / qcowCluster; c*qcowCluster < p.off+int64(len(p.data)); c++ {
			cs = append(cs, c)
		}
	}
	slices.Sort(cs)
	cs = slices.Compact(cs)
	var out []Extent
	buf := make([]byte, qcowCluster)
	for _, c := range cs {
		n, err := f.ReadAt(buf, c*qcowCluster)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if isZero(buf[:n]) {
			continue
		}
		e := Extent{c * qcowCluster, int64(n)}
		if k := len(out); k > 0 && out[k-1].End() == e.Off {
			out[k-1].Len += e.Len
		} else {
			out = append(out, e)
		}
	}
	return out
}

// qemuMapData returns the guest ranges that `qemu-img map` reports as holding data.
func qemuMapData(t *testing.T, path string) []Extent {
	out, code := run(t, "qemu-img", "map", "--output=json", "-f", "qcow2", path)
	if code != 0 {
		t.Fatalf("qemu-img map: exit %d: %s", code, out)
	}
	var m []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("qemu-img map output: %v: %s", err, out)
	}
	var exts []Extent
	for _, r := range m {
		if r.Length == 0 {
			continue
		}
		if !r.Data {
			if !r.Zero {
				t.Errorf("qemu-img map: range %d+%d neither data nor zero", r.Start, r.Length)
			}
			continue
		}
		if k := len(exts); k > 0 && exts[k-1].End() == r.Start {
			exts[k-1].Len += r.Length
		} else {
			exts = append(exts, Extent{r.Start, r.Length})
		}
	}
	return exts
}

func TestQcow2QemuImg(t *testing.T) {
	testtool.Need(t, "qemu-img", "qemu-utils")
	ctx := context.Background()
	for _, tc := range diskCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rawPath := makeSparse(t, dir, tc.size, tc.pieces)
			d := openDisk(t, rawPath)
			out := filepath.Join(dir, "out.qcow2")
			if err := WriteFile(ctx, out, qcow2{}, d); err != nil {
				t.Fatal(err)
			}
			if o, code := run(t, "qemu-img", "check", "-f", "qcow2", out); code != 0 {
				t.Fatalf("qemu-img check: exit %d: %s", code, o)
			}
			if o, code := run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", rawPath, out); code != 0 {
				t.Fatalf("qemu-img compare: exit %d: %s", code, o)
			}
			o, code := run(t, "qemu-img", "info", "--output=json", "-f", "qcow2", out)
			if code != 0 {
				t.Fatalf("qemu-img info: exit %d: %s", code, o)
			}
			var info struct {
				VirtualSize int64  `json:"virtual-size"`
				ActualSize  int64  `json:"actual-size"`
				Format      string `json:"format"`
			}
			if err := json.Unmarshal(o, &info); err != nil {
				t.Fatal(err)
			}
			if info.VirtualSize != tc.size || info.Format != "qcow2" {
				t.Errorf("qemu-img info: virtual size %d format %q, want %d qcow2", info.VirtualSize, info.Format, tc.size)
			}
			got, want := qemuMapData(t, out), wantClusters(t, rawPath, tc.size, tc.pieces)
			if !slices.Equal(got, want) {
				t.Errorf("qemu-img map data ranges:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestQcow2Random checks qcow2 and raw on seeded random layouts against qemu-img.
func TestQcow2Random(t *testing.T) {
	testtool.Need(t, "qemu-img", "qemu-utils")
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 15 {
		dir := t.TempDir()
		size := 512 * (1 + rng.Int64N(16*mib/512))
		var pieces []piece
		for range rng.IntN(12) {
			off := rng.Int64N(size)
			n := 1 + rng.Int64N(min(size-off, 300*kib))
			p := pattern(int(n), byte(rng.IntN(256)))
			if rng.IntN(3) == 0 {
				clear(p) // zeros written as data
			}
			pieces = append(pieces, piece{off, p})
		}
		rawPath := makeSparse(t, dir, size, pieces)
		out := filepath.Join(dir, "out.qcow2")
		if err := WriteFile(ctx, out, qcow2{}, openDisk(t, rawPath)); err != nil {
			t.Fatal(err)
		}
		if o, code := run(t, "qemu-img", "check", "-f", "qcow2", out); code != 0 {
			t.Fatalf("case %d: qemu-img check: exit %d: %s", i, code, o)
		}
		if o, code := run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", rawPath, out); code != 0 {
			t.Fatalf("case %d: qemu-img compare: exit %d: %s", i, code, o)
		}
		if got, want := qemuMapData(t, out), wantClusters(t, rawPath, size, pieces); !slices.Equal(got, want) {
			t.Errorf("case %d: qemu-img map data ranges:\n got %v\nwant %v", i, got, want)
		}
		rawOut := filepath.Join(dir, "out.raw")
		if err := WriteFile(ctx, rawOut, raw{}, openDisk(t, rawPath)); err != nil {
			t.Fatal(err)
		}
		if testtool.FileSHA256(t, rawOut) != testtool.FileSHA256(t, rawPath) {
			t.Errorf("case %d: raw output differs", i)
		}
	}
}

// TestQcow2Reproducible writes twice, and from a file with zeros written as data where the other
// has holes: all three outputs must be the same bytes.
func TestQcow2Reproducible(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	size := 700 * mib
	pieces := []piece{{5 * mib, pattern(int(mib), 1)}, {600 * mib, pattern(1000, 2)}}
	a := makeSparse(t, dir, size, pieces)
	b := makeSparse(t, dir, size, append([]piece{{0, make([]byte, 4*mib)}, {598 * mib, make([]byte, 3*mib)}},
		pieces...)) // zeros first: the pieces overwrite them
	var sums [][32]byte
	for i, in := range []string{a, a, b} {
		var buf bytes.Buffer
		h := sha256.New()
		if err := (qcow2{}).Write(ctx, io.MultiWriter(h, &buf), openDisk(t, in)); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, [32]byte(h.Sum(nil)))
		if i == 0 { // the pipe output equals the file output
			out := filepath.Join(dir, "a.qcow2")
			if err := WriteFile(ctx, out, qcow2{}, openDisk(t, in)); err != nil {
				t.Fatal(err)
			}
			if testtool.FileSHA256(t, out) != sums[0] {
				t.Errorf("qcow2 to a file differs from qcow2 to a buffer")
			}
		}
	}
	if sums[0] != sums[1] || sums[0] != sums[2] {
		t.Errorf("qcow2 outputs differ: %x %x %x", sums[0], sums[1], sums[2])
	}
}

func TestQcow2Layout(t *testing.T) {
	for _, tc := range []struct{ size, l2, data int64 }{
		{0, 0, 0}, {1 * mib, 0, 0}, {2 * tib, 3, 20}, {1 * tib, 2048, 1 << 24}, {64 * tib, 1 << 17, 1 << 30},
	} {
		l := newQcow2Layout(tc.size, tc.l2, tc.data)
		if l.rbClusters*qcowRefsPerBlk < l.total || (l.rbClusters-1)*qcowRefsPerBlk >= l.total {
			t.Errorf("size %d: %d refcount blocks for %d clusters", tc.size, l.rbClusters, l.total)
		}
		if l.rtClusters*qcowRTPerClus < l.rbClusters || (l.rtClusters-1)*qcowRTPerClus >= l.rbClusters {
			t.Errorf("size %d: %d refcount table clusters for %d blocks", tc.size, l.rtClusters, l.rbClusters)
		}
		if l.dataStart+l.dataClusters != l.total {
			t.Errorf("size %d: layout %+v does not add up", tc.size, l)
		}
	}
	// Around the point where the refcount blocks themselves need one more block.
	for data := int64(qcowRefsPerBlk - 20); data < qcowRefsPerBlk+20; data++ {
		l := newQcow2Layout(4*gib, 8, data)
		if l.rbClusters*qcowRefsPerBlk < l.total || (l.rbClusters-1)*qcowRefsPerBlk >= l.total {
			t.Errorf("%d data clusters: %d refcount blocks for %d clusters", data, l.rbClusters, l.total)
		}
	}
}

// constDisk is a synthetic disk: bytes inside its extents are 0xab, the rest zeros.
type constDisk struct {
	size int64
	exts []Extent
}

var abab = bytes.Repeat([]byte{0xab}, 1<<20)

func (c constDisk) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for _, e := range c.exts {
		for lo, hi := max(e.Off, off), min(e.End(), off+int64(len(p))); lo < hi; {
			lo += int64(copy(p[lo-off:hi-off], abab))
		}
	}
	return len(p), nil
}
func (c constDisk) Size() int64       { return c.size }
func (c constDisk) Extents() []Extent { return c.exts }

// TestQcow2TwoRefcountBlocks writes more clusters than one refcount block counts (32768), so the
// refcount blocks count themselves across a block boundary.
func TestQcow2TwoRefcountBlocks(t *testing.T) {
	testtool.Need(t, "qemu-img", "qemu-utils")
	testtool.Need(t, "qemu-io", "qemu-utils")
	const data = qcowRefsPerBlk * qcowCluster // 2 GiB of data clusters
	d := constDisk{size: 4 * gib, exts: []Extent{{0, 1 * mib}, {3 * gib, 1 * mib}, {gib, data - 2*mib}}}
	slices.SortFunc(d.exts, func(a, b Extent) int { return int(a.Off - b.Off) })
	out := filepath.Join(t.TempDir(), "big.qcow2")
	if err := WriteFile(context.Background(), out, qcow2{}, d); err != nil {
		t.Fatal(err)
	}
	if o, code := run(t, "qemu-img", "check", "-f", "qcow2", out); code != 0 {
		t.Fatalf("qemu-img check: exit %d: %s", code, o)
	}
	if got := qemuMapData(t, out); !slices.Equal(got, d.exts) {
		t.Errorf("qemu-img map data ranges %v, want %v", got, d.exts)
	}
	// Spot-check the data (reading all 2 GiB with qemu-io takes long): the ends of each range.
	for _, e := range d.exts {
		for _, e := range []Extent{{e.Off, mib}, {e.End() - mib, mib}} {
			o, code := run(t, "qemu-io", "-f", "qcow2", "-r", "-c",
				fmt.Sprintf("read -P 0xab %d %d", e.Off, e.Len), out)
			if code != 0 || !strings.Contains(string(o), "read ") || strings.Contains(string(o), "fail") {
				t.Errorf("qemu-io read -P 0xab of %v: exit %d: %s", e, code, o)
			}
		}
	}
	l := newQcow2Layout(d.size, 3, data/qcowCluster)
	if l.rbClusters != 2 {
		t.Errorf("%d refcount blocks, want 2", l.rbClusters)
	}
}

func TestQcow2RejectsOddSize(t *testing.T) {
	d := openDisk(t, makeSparse(t, t.TempDir(), 1000, nil))
	if err := (qcow2{}).Write(context.Background(), io.Discard, d); err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("qcow2 of a 1000-byte disk: err %v, want a multiple-of-512 error", err)
	}
}

func stBlocks(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks
}

func TestRaw(t *testing.T) {
	ctx := context.Background()
	for _, tc := range diskCases() {
		if tc.size > 2*gib {
			continue // the stream variant would write 2 TiB of zeros
		}
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := makeSparse(t, dir, tc.size, tc.pieces)
			want := testtool.FileSHA256(t, in)
			out := filepath.Join(dir, "out.img")
			if err := WriteFile(ctx, out, raw{}, openDisk(t, in)); err != nil {
				t.Fatal(err)
			}
			if got := testtool.FileSHA256(t, out); got != want {
				t.Errorf("raw file sha256 %x, want %x", got, want)
			}
			if bi, bo := dataBytes(t, in), dataBytes(t, out); bo > bi {
				t.Errorf("raw output has %d bytes of data extents, input %d: holes not kept", bo, bi)
			}
			if tc.size > 64*mib {
				return
			}
			// Not a file: every byte is written.
			h := sha256.New()
			if err := (raw{}).Write(ctx, struct{ io.Writer }{h}, openDisk(t, in)); err != nil {
				t.Fatal(err)
			}
			if got := [32]byte(h.Sum(nil)); got != want {
				t.Errorf("raw stream sha256 %x, want %x", got, want)
			}
		})
	}
}

// dataBytes sums the lengths of the data extents of a file.
func dataBytes(t *testing.T, path string) int64 {
	var n int64
	for _, e := range openDisk(t, path).Extents() {
		n += e.Len
	}
	return n
}

// TestRawZeroDataBecomesHoles: zeros written as data do not take blocks in the output.
func TestRawZeroDataBecomesHoles(t *testing.T) {
	dir := t.TempDir()
	in := makeSparse(t, dir, 64*mib, []piece{{0, make([]byte, 32*mib)}, {40 * mib, pattern(4096, 1)}})
	out := filepath.Join(dir, "out.raw")
	if err := WriteFile(context.Background(), out, raw{}, openDisk(t, in)); err != nil {
		t.Fatal(err)
	}
	if testtool.FileSHA256(t, out) != testtool.FileSHA256(t, in) {
		t.Fatal("raw output differs from input")
	}
	if b := stBlocks(t, out); b*512 > 1*mib {
		t.Errorf("raw output uses %d KiB, want at most 1 MiB", b/2)
	}
}

// TestRawOverwritesOldContent: writing into a file with old data leaves only the disk's bytes.
func TestRawOverwritesOldContent(t *testing.T) {
	dir := t.TempDir()
	in := makeSparse(t, dir, 4*mib, []piece{{mib, pattern(100, 1)}})
	outPath := filepath.Join(dir, "old.img")
	if err := os.WriteFile(outPath, pattern(int(8*mib), 2), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(outPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := (raw{}).Write(context.Background(), f, openDisk(t, in)); err != nil {
		t.Fatal(err)
	}
	if testtool.FileSHA256(t, outPath) != testtool.FileSHA256(t, in) {
		t.Error("raw over an old file: output differs from input")
	}
}

// TestRawAppend: an O_APPEND file cannot take seeks, so it gets every byte after its old content.
func TestRawAppend(t *testing.T) {
	dir := t.TempDir()
	in := makeSparse(t, dir, 2*mib, []piece{{mib, pattern(100, 1)}})
	outPath := filepath.Join(dir, "append.img")
	if err := os.WriteFile(outPath, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(outPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := (raw{}).Write(context.Background(), f, openDisk(t, in)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(outPath)
	want, _ := os.ReadFile(in)
	if !bytes.Equal(got, append([]byte("hello"), want...)) {
		t.Errorf("raw to an O_APPEND file: %d bytes, want hello + %d", len(got), len(want))
	}
}

func TestOpenFileExtents(t *testing.T) {
	dir := t.TempDir()
	pieces := []piece{{0, pattern(100, 1)}, {10 * mib, pattern(int(mib), 2)}, {30*mib - 10, pattern(10, 3)}}
	d := openDisk(t, makeSparse(t, dir, 30*mib, pieces))
	if err := checkDisk(d); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range d.Extents() {
		total += e.Len
	}
	if total > 2*mib {
		t.Errorf("extents %v cover %d bytes; holes not found", d.Extents(), total)
	}
	for _, p := range pieces {
		covered := slices.ContainsFunc(d.Extents(), func(e Extent) bool {
			return e.Off <= p.off && p.off+int64(len(p.data)) <= e.End()
		})
		if !covered {
			t.Errorf("data at %d+%d not inside extents %v", p.off, len(p.data), d.Extents())
		}
	}
	if d.Size() != 30*mib {
		t.Errorf("size %d", d.Size())
	}
}

// badDisk has extents and a ReadAt that fails or lies, for error paths.
type badDisk struct {
	size int64
	exts []Extent
	err  error
}

func (b badDisk) ReadAt(p []byte, off int64) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	clear(p)
	return len(p), nil
}
func (b badDisk) Size() int64       { return b.size }
func (b badDisk) Extents() []Extent { return b.exts }

func TestBadDisk(t *testing.T) {
	ctx := context.Background()
	for _, name := range Names() {
		f, _ := Lookup(name)
		for _, d := range []badDisk{
			{size: mib, exts: []Extent{{0, 4096}, {100, 4096}}}, // overlapping
			{size: mib, exts: []Extent{{mib - 512, 4096}}},      // beyond the size
			{size: mib, exts: []Extent{{0, -1}}},                // negative
			{size: mib, exts: []Extent{{4096, 512}, {0, 512}}},  // unsorted
		} {
			if err := f.Write(ctx, io.Discard, d); err == nil {
				t.Errorf("%s: extents %v accepted", name, d.exts)
			}
		}
	}
}

func TestWriteFileErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	for _, name := range Names() {
		f, _ := Lookup(name)
		out := filepath.Join(dir, "out."+name)
		err := WriteFile(context.Background(), out, f, badDisk{size: mib, exts: []Extent{{0, 4096}}, err: boom})
		if !errors.Is(err, boom) {
			t.Errorf("%s: err %v, want boom", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := WriteFile(ctx, out, f, badDisk{size: mib, exts: []Extent{{0, 4096}}}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: cancelled: err %v", name, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %v", ents)
	}
}

func TestOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.img")
	temps := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".disk.img.imgfab-tmp-*"))
		return m
	}

	// Commit renames into place, replacing an old file.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := CreateOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(o.Name()) != dir || !strings.HasPrefix(filepath.Base(o.Name()), ".disk.img.imgfab-tmp-") {
		t.Errorf("temporary file %s not beside %s", o.Name(), path)
	}
	if _, err := o.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("before Commit: %q", b)
	}
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("after Commit: %q", b)
	}
	if err := o.Abort(); err != nil || len(temps()) != 0 {
		t.Errorf("Abort after Commit: %v, temps %v", err, temps())
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("Abort after Commit changed the output: %q", b)
	}

	// Abort leaves nothing and keeps the old file.
	o, err = CreateOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	o.WriteString("junk")
	if err := o.Abort(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" || len(temps()) != 0 {
		t.Errorf("after Abort: output %q, temps %v", b, temps())
	}
	if err := o.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	// A file that only looks like a temporary file is never removed: imgfab removes only what it
	// created. Two live outputs of the same path do not disturb each other.
	lookalike := filepath.Join(dir, ".disk.img.imgfab-tmp-0123456789abcdef")
	if err := os.WriteFile(lookalike, []byte("user data"), 0o644); err != nil {
		t.Fatal(err)
	}
	live, err := CreateOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := CreateOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	live.WriteString("live")
	if err := second.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := live.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "live" {
		t.Errorf("after two outputs: %q", b)
	}
	if b, err := os.ReadFile(lookalike); err != nil || string(b) != "user data" {
		t.Errorf("a user's file named like a temporary file was touched: %q, %v", b, err)
	}
	if got := temps(); len(got) != 1 || got[0] != lookalike {
		t.Errorf("temporary files left: %v (want only the user's %s)", got, lookalike)
	}
}

// TestOutputUnnamedUntilCommit: while an output is written, nothing of it is visible in its
// directory, so a killed run leaves nothing.
func TestOutputUnnamedUntilCommit(t *testing.T) {
	dir := t.TempDir()
	o, err := CreateOutput(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Abort()
	if _, err := o.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("while writing, the directory holds %v (want nothing: an unnamed O_TMPFILE)", ents)
	}
}

func TestLookup(t *testing.T) {
	want := []string{"gce", "qcow2", "raw", "raw.gz", "raw.xz", "raw.zst", "vhd", "vhd-dynamic", "vmdk"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v", got)
	}
	for _, name := range Names() {
		f, err := Lookup(name)
		if err != nil || f.Name() != name {
			t.Errorf("Lookup(%q) = %v, %v", name, f, err)
		}
	}
	if _, err := Lookup("vmdk2"); err == nil || !strings.Contains(err.Error(), "qcow2, raw") {
		t.Errorf("Lookup of an unknown name: %v", err)
	}
	for path, want := range map[string]string{
		"a.raw": "raw", "out/disk.IMG": "raw", "x.qcow2": "qcow2", "dir.qcow2/d.img": "raw",
	} {
		f, err := FromPath(path)
		if err != nil || f.Name() != want {
			t.Errorf("FromPath(%q) = %v, %v; want %s", path, f, err, want)
		}
	}
	for _, path := range []string{"disk", "disk.qcow", "disk.tar"} {
		if _, err := FromPath(path); err == nil {
			t.Errorf("FromPath(%q) succeeded", path)
		}
	}
}

func TestProgress(t *testing.T) {
	dir := t.TempDir()
	d := openDisk(t, makeSparse(t, dir, 64*mib, []piece{{0, pattern(int(20*mib), 1)}, {50 * mib, pattern(10, 2)}}))
	for _, name := range Names() {
		f, _ := Lookup(name)
		var calls [][2]int64
		ctx := WithProgress(context.Background(), func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
		if err := f.Write(ctx, io.Discard, d); err != nil {
			t.Fatal(err)
		}
		if len(calls) < 2 {
			t.Fatalf("%s: progress calls %v", name, calls)
		}
		last := calls[len(calls)-1]
		if last[0] != last[1] || last[1] < d.Size() {
			t.Errorf("%s: last progress %v", name, last)
		}
		for i := 1; i < len(calls); i++ {
			if calls[i][0] <= calls[i-1][0] || calls[i][1] != last[1] {
				t.Errorf("%s: progress not increasing: %v", name, calls)
				break
			}
		}
	}
}
