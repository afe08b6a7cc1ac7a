package diskfmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

var qcowCompressions = []struct {
	name    string
	c       compression
	qemuStr string // qemu-img info's compression-type
}{
	{"deflate", compressDeflate, "zlib"},
	{"zstd", compressZstd, "zstd"},
}

// noise returns n bytes that do not compress (ChaCha8 from seed).
func noise(n int, seed uint64) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	p := make([]byte, n)
	rand.NewChaCha8(s).Read(p)
	return p
}

// words returns n bytes of text from a small vocabulary: compresses to a few KiB per cluster.
func words(n int, seed uint64) []byte {
	vocab := []string{"boot ", "kernel ", "initrd ", "root=", "console ", "ttyS0 ", "efi ", "loader ",
		"entry ", "linux ", "options ", "quiet ", "splash ", "UUID ", "ext4 ", "vfat\n"}
	rng := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(vocab[rng.IntN(len(vocab))])
	}
	return b.Bytes()[:n]
}

// compCases are disks for the compressed writers: the plain qcow2 cases and some with compressible
// and incompressible clusters side by side.
func compCases() []diskCase {
	cs := diskCases()
	repeat := bytes.Repeat([]byte("0123456789abcdef"), int(4*mib/16)) // tiny blobs: many per host cluster
	cs = append(cs,
		diskCase{"tiny-blobs", 8 * mib, []piece{{0, repeat}}},
		diskCase{"mix", 16*mib + 512, []piece{
			{0, words(int(2*mib), 1)},
			{2 * mib, noise(int(mib), 2)},             // stored plain
			{3*mib + 100, words(int(mib), 3)},         // compressed, after plain ones
			{5 * mib, noise(qcowCluster, 4)},          // one plain cluster between compressed ones
			{5*mib + qcowCluster, repeat[:3*mib]},     //
			{9 * mib, pattern(int(2*mib), 5)},         // compresses a little
			{16 * mib, noise(512, 6)},                 // the last sector, in a partial cluster
			{12*mib + 77, noise(int(qcowCluster), 7)}, // unaligned: two part-random clusters
		}},
	)
	for i := range cs { // pieces in offset order, so later ones do not hide earlier ones by accident
		slices.SortStableFunc(cs[i].pieces, func(a, b piece) int { return int(a.off - b.off) })
	}
	return cs
}

func TestQcow2CompressedQemuImg(t *testing.T) {
	testtool.Need(t, "qemu-img", "qemu-utils")
	ctx := context.Background()
	for _, comp := range qcowCompressions {
		for _, tc := range compCases() {
			t.Run(comp.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				rawPath := makeSparse(t, dir, tc.size, tc.pieces)
				out := filepath.Join(dir, "out.qcow2")
				if err := WriteFile(ctx, out, qcow2{compress: comp.c}, openDisk(t, rawPath)); err != nil {
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
					VirtualSize    int64 `json:"virtual-size"`
					FormatSpecific struct {
						Data struct {
							CompressionType string `json:"compression-type"`
						}
					} `json:"format-specific"`
				}
				if err := json.Unmarshal(o, &info); err != nil {
					t.Fatal(err)
				}
				if info.VirtualSize != tc.size || info.FormatSpecific.Data.CompressionType != comp.qemuStr {
					t.Errorf("qemu-img info: virtual size %d, compression type %q; want %d, %q",
						info.VirtualSize, info.FormatSpecific.Data.CompressionType, tc.size, comp.qemuStr)
				}
				if got, want := qemuMapData(t, out), wantClusters(t, rawPath, tc.size, tc.pieces); !slices.Equal(got, want) {
					t.Errorf("qemu-img map data ranges:\n got %v\nwant %v", got, want)
				}
				checkQcow2Structure(t, out)
			})
		}
	}
}

// qcowImage is what checkQcow2Structure read from an image.
type qcowImage struct {
	plain, compressed int              // data clusters of each kind
	refs              map[int64]int    // host cluster -> refcount from the refcount blocks
	entries           map[int64]uint64 // guest cluster -> L2 entry (non-zero ones)
}

// checkQcow2Structure reads an image with our own small parser and checks what qemu-img check
// checks too (every cluster's refcount equals its references; compressed ranges counted once per
// touched host cluster) plus what it does not: plain clusters are aligned and marked COPIED,
// compressed ones are not.
func checkQcow2Structure(t *testing.T, path string) qcowImage {
	t.Helper()
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	if len(f)%qcowCluster != 0 || len(f) < qcowCluster || string(f[:4]) != "QFI\xfb" {
		t.Fatalf("file size %d or magic %q", len(f), f[:4])
	}
	img := qcowImage{refs: map[int64]int{}, entries: map[int64]uint64{}}
	want := map[int64]int{0: 1}
	refRange := func(off, n int64, what string) {
		if off < 0 || off+n > int64(len(f)) {
			t.Fatalf("%s [%d, +%d) beyond the end of the file (%d)", what, off, n, len(f))
		}
		for c := off / qcowCluster; c*qcowCluster < off+n; c++ {
			want[c]++
		}
	}
	l1Size, l1Off := int64(be.Uint32(f[36:])), int64(be.Uint64(f[40:]))
	rtOff, rtClusters := int64(be.Uint64(f[48:])), int64(be.Uint32(f[56:]))
	refRange(l1Off, max(ceilDiv(l1Size*8, qcowCluster), 0)*qcowCluster, "L1 table")
	refRange(rtOff, rtClusters*qcowCluster, "refcount table")
	for i := int64(0); i < rtClusters*qcowRTPerClus; i++ {
		rb := int64(be.Uint64(f[rtOff+i*8:]))
		if rb == 0 {
			continue
		}
		refRange(rb, qcowCluster, "refcount block")
		for k := int64(0); k < qcowRefsPerBlk; k++ {
			if r := be.Uint16(f[rb+k*2:]); r != 0 {
				img.refs[i*qcowRefsPerBlk+k] = int(r)
			}
		}
	}
	for i := int64(0); i < l1Size; i++ {
		e := be.Uint64(f[l1Off+i*8:])
		if e == 0 {
			continue
		}
		if e&qcowCopied == 0 {
			t.Errorf("L1 entry %d %#x: COPIED not set", i, e)
		}
		l2 := int64(e &^ qcowCopied)
		refRange(l2, qcowCluster, "L2 table")
		for k := int64(0); k < qcowL2Entries; k++ {
			e := be.Uint64(f[l2+k*8:])
			if e == 0 {
				continue
			}
			g := i*qcowL2Entries + k
			img.entries[g] = e
			if e&qcowCompressedBit != 0 {
				img.compressed++
				if e&qcowCopied != 0 {
					t.Errorf("guest cluster %d: compressed entry %#x has COPIED set", g, e)
				}
				off := int64(e & (1<<qcowCsizeShift - 1))
				sectors := int64(e>>qcowCsizeShift&qcowCsizeMask) + 1
				refRange(off, sectors*qcowSector-off%qcowSector, "compressed cluster")
				continue
			}
			img.plain++
			off := int64(e &^ qcowCopied)
			if e&qcowCopied == 0 || off%qcowCluster != 0 {
				t.Errorf("guest cluster %d: plain entry %#x not COPIED or not aligned", g, e)
			}
			refRange(off, qcowCluster, "data cluster")
		}
	}
	if !mapsEqual(img.refs, want) {
		for c := int64(0); c < int64(len(f))/qcowCluster; c++ {
			if img.refs[c] != want[c] {
				t.Errorf("host cluster %d: refcount %d, referenced %d times", c, img.refs[c], want[c])
			}
		}
	}
	if int64(len(want)) != int64(len(f))/qcowCluster {
		t.Errorf("%d of the %d clusters of the file are referenced", len(want), len(f)/qcowCluster)
	}
	return img
}

func mapsEqual(a, b map[int64]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestQcow2CompressedKinds checks which clusters are stored how: zeros unallocated, noise plain,
// text compressed, and tiny compressed clusters sharing host clusters.
func TestQcow2CompressedKinds(t *testing.T) {
	ctx := context.Background()
	for _, comp := range qcowCompressions {
		t.Run(comp.name, func(t *testing.T) {
			dir := t.TempDir()
			rawPath := makeSparse(t, dir, 8*mib, []piece{
				{0, noise(int(mib), 1)},                                     // 16 plain
				{mib, words(int(mib), 2)},                                   // 16 compressed
				{2 * mib, make([]byte, mib)},                                // zeros: unallocated
				{3 * mib, bytes.Repeat([]byte("imgfab\n"), int(2*mib/7+1))}, // 32 compressed, tiny
				{5*mib + qcowCluster, noise(int(qcowCluster), 3)},           // 1 plain
			})
			out := filepath.Join(dir, "out.qcow2")
			if err := WriteFile(ctx, out, qcow2{compress: comp.c}, openDisk(t, rawPath)); err != nil {
				t.Fatal(err)
			}
			img := checkQcow2Structure(t, out)
			if img.plain != 17 || img.compressed != 16+33 {
				t.Errorf("%d plain and %d compressed clusters, want 17 and 49", img.plain, img.compressed)
			}
			for g := int64(0); g < 16; g++ {
				if img.entries[g]&qcowCompressedBit != 0 {
					t.Errorf("noise cluster %d compressed: %#x", g, img.entries[g])
				}
			}
			shared := 0
			for _, r := range img.refs {
				if r > 1 {
					shared = max(shared, r)
				}
			}
			if shared < 10 {
				t.Errorf("most compressed ranges sharing a host cluster: %d, want >= 10", shared)
			}
			fi, _ := os.Stat(out)
			if fi.Size() > 19*qcowCluster+4*mib/3 {
				t.Errorf("image is %d bytes", fi.Size())
			}
		})
	}
}

// TestQcow2CompressedDeterministic: two writes, GOMAXPROCS 1 and 7 and the default, a file and a
// non-seekable writer (which goes through a temporary file) give the same bytes.
func TestQcow2CompressedDeterministic(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cs := compCases()
	var tc diskCase
	for _, c := range cs {
		if c.name == "mix" {
			tc = c
		}
	}
	rawPath := makeSparse(t, dir, tc.size, tc.pieces)
	for _, comp := range qcowCompressions {
		f := qcow2{compress: comp.c}
		var sums [][32]byte
		for i, procs := range []int{0, 1, 7, 0} {
			old := runtime.GOMAXPROCS(procs)
			out := filepath.Join(dir, "out.qcow2")
			err := WriteFile(ctx, out, f, openDisk(t, rawPath))
			runtime.GOMAXPROCS(old)
			if err != nil {
				t.Fatal(err)
			}
			sums = append(sums, testtool.FileSHA256(t, out))
			if i == 0 {
				h := sha256.New()
				if err := f.Write(ctx, struct{ io.Writer }{h}, openDisk(t, rawPath)); err != nil {
					t.Fatal(err)
				}
				sums = append(sums, [32]byte(h.Sum(nil)))
			}
		}
		for i := range sums {
			if sums[i] != sums[0] {
				t.Errorf("%s: output %d differs: %x vs %x", comp.name, i, sums[i], sums[0])
			}
		}
	}
}

// TestQcow2CompressedAfterData writes into a file at a non-zero offset over old content: the image
// starts at the offset and the old tail is dropped.
func TestQcow2CompressedAfterData(t *testing.T) {
	dir := t.TempDir()
	d := openDisk(t, makeSparse(t, dir, 4*mib, []piece{{0, words(int(mib), 1)}}))
	ref := filepath.Join(dir, "ref.qcow2")
	if err := WriteFile(context.Background(), ref, qcow2{compress: compressZstd}, d); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(ref)
	f, err := os.Create(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(bytes.Repeat([]byte{1}, 10*int(mib)))
	f.Seek(100, io.SeekStart)
	if err := (qcow2{compress: compressZstd}).Write(context.Background(), f, d); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got[100:], want) || !bytes.Equal(got[:100], bytes.Repeat([]byte{1}, 100)) {
		t.Errorf("image written at offset 100 differs (%d bytes, want %d)", len(got)-100, len(want))
	}
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != int64(len(got)) {
		t.Errorf("file offset %d after Write, want %d", pos, len(got))
	}
}

// genDisk is a synthetic disk, all one extent, whose clusters come from gen.
type genDisk struct {
	size int64
	gen  func(c int64) []byte // the 64 KiB of guest cluster c
}

func (g genDisk) ReadAt(p []byte, off int64) (int, error) {
	for n := 0; n < len(p); {
		o := off + int64(n)
		c := g.gen(o / qcowCluster)
		n += copy(p[n:], c[o%qcowCluster:])
	}
	return len(p), nil
}
func (g genDisk) Size() int64       { return g.size }
func (g genDisk) Extents() []Extent { return []Extent{{0, g.size}} }

// TestQcow2CompressedBig writes an image of more than 2 GiB, so that a refcount block is written
// in the middle of the data, while compressed clusters cross the 2 GiB host boundary.
func TestQcow2CompressedBig(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 2 GiB file")
	}
	testtool.Need(t, "qemu-img", "qemu-utils")
	rnd := noise(int(mib)+qcowCluster, 1)
	text := make([][]byte, 64)
	for i := range text {
		text[i] = words(qcowCluster, uint64(i))
	}
	const textFrom, textTo = 2*gib - mib, 2*gib + 47*mib
	d := genDisk{size: 2*gib + 64*mib, gen: func(c int64) []byte {
		if off := c * qcowCluster; off >= textFrom && off < textTo {
			return text[c%64]
		}
		i := c % 16
		return rnd[i*4096 : i*4096+qcowCluster] // differs from the neighbours: no repeats in a cluster
	}}
	out := filepath.Join(t.TempDir(), "big.qcow2")
	if err := WriteFile(context.Background(), out, qcow2{compress: compressZstd}, d); err != nil {
		t.Fatal(err)
	}
	if o, code := run(t, "qemu-img", "check", "-f", "qcow2", out); code != 0 {
		t.Fatalf("qemu-img check: exit %d: %s", code, o)
	}
	o, code := run(t, "qemu-img", "check", "--output=json", "-f", "qcow2", out)
	if code != 0 || !strings.Contains(string(o), `"compressed-clusters": 768`) {
		t.Errorf("qemu-img check --output=json: exit %d: %s", code, o)
	}
	img := checkQcow2Structure(t, out)
	// The text clusters are compressed on both sides of 2 GiB of host, so the first refcount
	// block was finished, and written, in the middle of a run of compressed clusters.
	below, above := false, false
	for g := int64(textFrom / qcowCluster); g < textTo/qcowCluster; g++ {
		e := img.entries[g]
		if e&qcowCompressedBit == 0 {
			t.Fatalf("text cluster %d not compressed: %#x", g, e)
		}
		off := int64(e & (1<<qcowCsizeShift - 1))
		below = below || off < 2*gib
		above = above || off > 2*gib
	}
	if !below || !above {
		t.Errorf("compressed text clusters below 2 GiB of host: %v, above: %v; want both", below, above)
	}
	var firstBlock2 bool
	for c := range img.refs {
		if c >= qcowRefsPerBlk {
			firstBlock2 = true
		}
	}
	if !firstBlock2 {
		t.Errorf("the image has no second refcount block")
	}
	// Spot-check data at both ends of the text run.
	for _, off := range []int64{0, textFrom, 2 * gib, textTo - qcowCluster, d.size - qcowCluster} {
		want := d.gen(off / qcowCluster)
		o, code := run(t, "qemu-img", "convert", "-O", "raw", "--image-opts", fmt.Sprintf(
			"driver=raw,offset=%d,size=%d,file.driver=qcow2,file.file.driver=file,file.file.filename=%s",
			off, qcowCluster, out), out+".piece")
		if code != 0 {
			t.Fatalf("qemu-img convert of guest cluster at %d: exit %d: %s", off, code, o)
		}
		got, _ := os.ReadFile(out + ".piece")
		if !bytes.Equal(got, want) {
			t.Errorf("guest cluster at %d differs", off)
		}
	}
}

// benchTextDisk returns a 256 MiB disk: a quarter text, a quarter noise, half holes.
func benchTextDisk(b *testing.B) Disk {
	dir := b.TempDir()
	var pieces []piece
	for off := int64(0); off < 256*mib; off += 16 * mib {
		pieces = append(pieces, piece{off, words(int(4*mib), uint64(off))}, piece{off + 4*mib, noise(int(4*mib), uint64(off))})
	}
	return openDisk(b, makeSparse(b, dir, 256*mib, pieces))
}

func benchCompressed(b *testing.B, f Format) {
	d := benchTextDisk(b)
	out := filepath.Join(b.TempDir(), "out")
	b.SetBytes(d.Size())
	b.ResetTimer()
	for b.Loop() {
		if err := WriteFile(context.Background(), out, f, d); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if fi, err := os.Stat(out); err == nil {
		b.ReportMetric(float64(fi.Size())/float64(d.Size()), "out/guest")
	}
}

// BenchmarkQcow2Deflate: MB/s are guest bytes (256 MiB: a quarter text, a quarter noise, half
// holes) per second, written to a file.
func BenchmarkQcow2Deflate(b *testing.B) { benchCompressed(b, qcow2{compress: compressDeflate}) }

// BenchmarkQcow2Zstd: as BenchmarkQcow2Deflate, with zstd.
func BenchmarkQcow2Zstd(b *testing.B) { benchCompressed(b, qcow2{compress: compressZstd}) }

// TestQcow2CompressedErrors: a failing read and a cancelled context end the write with that error
// and leave no output file.
func TestQcow2CompressedErrors(t *testing.T) {
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	text := words(qcowCluster, 1)
	good := genDisk{size: 64 * mib, gen: func(int64) []byte { return text }}
	for _, comp := range qcowCompressions {
		f := qcow2{compress: comp.c}
		for _, tc := range []struct {
			ctx  context.Context
			d    Disk
			want error
		}{
			{context.Background(), badDisk{size: 64 * mib, exts: []Extent{{0, 64 * mib}}, err: boom}, boom},
			{cancelled, good, context.Canceled},
		} {
			dir := t.TempDir()
			out := filepath.Join(dir, "x.qcow2")
			if err := WriteFile(tc.ctx, out, f, tc.d); !errors.Is(err, tc.want) {
				t.Errorf("%s: error %v, want %v", comp.name, err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%s: %d files left behind", comp.name, len(ents))
			}
			// And through the temporary-file path.
			if err := f.Write(tc.ctx, io.Discard, tc.d); !errors.Is(err, tc.want) {
				t.Errorf("%s to a non-file: error %v, want %v", comp.name, err, tc.want)
			}
		}
	}
}
