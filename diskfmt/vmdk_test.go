package diskfmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// vmdkWalk is what walking a stream-optimized file finds.
type vmdkWalk struct {
	grains    []int64 // guest grain numbers of the grain records, in file order
	gtMarkers int
	gdMarkers int
	footer    int64 // sector of the footer marker, -1 if none
	eos       int64 // sector of the end-of-stream marker, -1 if none
}

// walkVMDK reads a stream-optimized VMDK the way a streaming importer does: header, then records
// from overHead on, until the end-of-stream marker. It fails the test on any inconsistency.
func walkVMDK(t *testing.T, path string) (hdr []byte, w vmdkWalk) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size()%512 != 0 {
		t.Fatalf("file size %d is not a whole number of sectors", fi.Size())
	}
	hdr = make([]byte, 512)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if string(hdr[:4]) != "KDMV" || le.Uint32(hdr[4:]) != 3 || le.Uint32(hdr[8:]) != 0x30001 ||
		le.Uint64(hdr[20:]) != 128 || le.Uint32(hdr[44:]) != 512 || le.Uint64(hdr[56:]) != ^uint64(0) ||
		string(hdr[73:77]) != "\n \r\n" || le.Uint16(hdr[77:]) != 1 {
		t.Fatalf("head header fields wrong: % x", hdr[:80])
	}
	w.footer, w.eos = -1, -1
	sec := make([]byte, 512)
	s := int64(le.Uint64(hdr[64:])) // overHead
	for {
		if _, err := f.ReadAt(sec, s*512); err != nil {
			t.Fatalf("reading record at sector %d: %v", s, err)
		}
		val, size, typ := le.Uint64(sec), le.Uint32(sec[8:]), le.Uint32(sec[12:])
		if size != 0 { // a grain record
			if val%128 != 0 {
				t.Fatalf("grain record at sector %d: LBA %d not grain aligned", s, val)
			}
			w.grains = append(w.grains, int64(val/128))
			s += ceilDiv(12+int64(size), 512)
			continue
		}
		switch typ {
		case 0:
			w.eos = s
		case 1:
			w.gtMarkers++
			if val != 4 {
				t.Fatalf("GT marker at sector %d: %d sectors, want 4", s, val)
			}
		case 2:
			w.gdMarkers++
		case 3:
			w.footer = s
			if val != 1 {
				t.Fatalf("footer marker at sector %d: %d sectors, want 1", s, val)
			}
		default:
			t.Fatalf("unknown marker type %d at sector %d", typ, s)
		}
		if typ == 0 {
			break
		}
		s += 1 + int64(val)
	}
	if (w.eos+1)*512 != fi.Size() {
		t.Fatalf("end-of-stream marker at sector %d, file has %d sectors", w.eos, fi.Size()/512)
	}
	return hdr, w
}

// nonZeroGrains lists the 64 KiB grains of a raw file that hold a non-zero byte.
func nonZeroGrains(t *testing.T, path string) []int64 {
	t.Helper()
	d := openDisk(t, path)
	var out []int64
	buf := make([]byte, vmdkGrain)
	for _, e := range vmdkGrainRanges(d.Extents()) {
		for off := e.Off; off < e.End(); off += vmdkGrain {
			if err := readFull(d, buf, off); err != nil {
				t.Fatal(err)
			}
			if !isZero(buf) {
				out = append(out, off/vmdkGrain)
			}
		}
	}
	return out
}

func TestVMDKQemuImg(t *testing.T) {
	testtool.Need(t, "qemu-img", "qemu-utils")
	testtool.Need(t, "vmdkinfo", "libvmdk-utils")
	ctx := context.Background()
	for _, tc := range diskCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rawPath := makeSparse(t, dir, tc.size, tc.pieces)
			out := filepath.Join(dir, "out.vmdk")
			err := WriteFile(ctx, out, vmdk{}, openDisk(t, rawPath))
			if tc.size == 0 {
				if err == nil || !strings.Contains(err.Error(), "empty") {
					t.Fatalf("empty disk: error %v, want one saying the disk is empty", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// qemu-img compare walks a VMDK grain by grain: about 50 s for 2 TiB.
			if tc.size < tib || !testing.Short() {
				if o, code := run(t, "qemu-img", "compare", "-f", "raw", "-F", "vmdk", rawPath, out); code != 0 {
					t.Fatalf("qemu-img compare: exit %d: %s", code, o)
				}
			}
			o, code := run(t, "qemu-img", "info", "--output=json", "-f", "vmdk", out)
			if code != 0 {
				t.Fatalf("qemu-img info: exit %d: %s", code, o)
			}
			var info struct {
				VirtualSize int64  `json:"virtual-size"`
				Format      string `json:"format"`
				Specific    struct {
					Data struct {
						CreateType string `json:"create-type"`
					} `json:"data"`
				} `json:"format-specific"`
			}
			if err := json.Unmarshal(o, &info); err != nil {
				t.Fatal(err)
			}
			if info.VirtualSize != tc.size || info.Format != "vmdk" || info.Specific.Data.CreateType != "streamOptimized" {
				t.Errorf("qemu-img info: %d bytes, format %q, create type %q; want %d, vmdk, streamOptimized",
					info.VirtualSize, info.Format, info.Specific.Data.CreateType, tc.size)
			}
			if o, code := run(t, "vmdkinfo", out); code != 0 {
				t.Errorf("vmdkinfo: exit %d: %s", code, o)
			}

			// The stream: grain records for exactly the non-zero grains, in guest order, one GT per
			// 32 MiB range with data, one GD, then the footer and EOS as the last sectors.
			hdr, w := walkVMDK(t, out)
			want := nonZeroGrains(t, rawPath)
			if !slices.Equal(w.grains, want) {
				t.Errorf("grain records for grains %v, want the non-zero grains %v", w.grains, want)
			}
			tables := map[int64]bool{}
			for _, g := range want {
				tables[g/vmdkGTEs] = true
			}
			if w.gtMarkers != len(tables) || w.gdMarkers != 1 {
				t.Errorf("%d GT and %d GD markers, want %d and 1", w.gtMarkers, w.gdMarkers, len(tables))
			}
			checkVMDKFooter(t, out, hdr)
		})
	}
}

// checkVMDKFooter reads the last three sectors: footer marker, footer (the head header with the
// real gdOffset), end-of-stream marker. It also checks the grain directory the footer points to.
func checkVMDKFooter(t *testing.T, path string, head []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	last := make([]byte, 3*512)
	if _, err := f.ReadAt(last, fi.Size()-3*512); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	marker, footer, eos := last[:512], last[512:1024], last[1024:]
	if le.Uint64(marker) != 1 || le.Uint32(marker[8:]) != 0 || le.Uint32(marker[12:]) != 3 || !isZero(marker[16:]) {
		t.Errorf("footer marker: % x", marker[:16])
	}
	if !isZero(eos) {
		t.Errorf("end-of-stream marker is not an all-zero sector")
	}
	gdOff := le.Uint64(footer[56:])
	if gdOff == ^uint64(0) || gdOff == 0 || int64(gdOff)*512 >= fi.Size() {
		t.Fatalf("footer gdOffset %#x", gdOff)
	}
	// The footer is the header with gdOffset filled in.
	h := bytes.Clone(head)
	le.PutUint64(h[56:], gdOff)
	if !bytes.Equal(h, footer) {
		t.Errorf("footer differs from the head header beyond gdOffset")
	}
	// The GD marker sits just before the GD.
	gdm := make([]byte, 512)
	if _, err := f.ReadAt(gdm, int64(gdOff-1)*512); err != nil {
		t.Fatal(err)
	}
	if le.Uint32(gdm[12:]) != 2 || le.Uint32(gdm[8:]) != 0 {
		t.Errorf("no GD marker before gdOffset %d: % x", gdOff, gdm[:16])
	}
	capacity := int64(le.Uint64(head[12:]))
	entries := ceilDiv(ceilDiv(capacity, 128), 512)
	if got := int64(le.Uint64(gdm)); got != ceilDiv(entries*4, 512) {
		t.Errorf("GD marker: %d sectors, want %d for %d entries", got, ceilDiv(entries*4, 512), entries)
	}
}

// TestVMDKReproducible: two writes, a file with zeros written as data where the other has holes,
// a buffer instead of a file, and GOMAXPROCS=1: all the same bytes.
func TestVMDKReproducible(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	size := 300 * mib
	pieces := []piece{{5 * mib, pattern(int(20*mib), 1)}, {200 * mib, pattern(1000, 2)}, {299 * mib, pattern(int(mib), 3)}}
	a := makeSparse(t, dir, size, pieces)
	b := makeSparse(t, dir, size, append([]piece{{0, make([]byte, 40*mib)}, {198 * mib, make([]byte, 3*mib)}},
		pieces...))
	sum := func(in string) [32]byte {
		h := sha256.New()
		if err := (vmdk{}).Write(ctx, h, openDisk(t, in)); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	s0 := sum(a)
	if s := sum(a); s != s0 {
		t.Errorf("second write differs")
	}
	if s := sum(b); s != s0 {
		t.Errorf("zeros written as data give different bytes than holes")
	}
	out := filepath.Join(dir, "a.vmdk")
	if err := WriteFile(ctx, out, vmdk{}, openDisk(t, a)); err != nil {
		t.Fatal(err)
	}
	if testtool.FileSHA256(t, out) != s0 {
		t.Errorf("vmdk to a file differs from vmdk to a hash")
	}
	old := runtime.GOMAXPROCS(1)
	s1 := sum(a)
	runtime.GOMAXPROCS(max(old, 4)) // more workers than cores, too
	s4 := sum(a)
	runtime.GOMAXPROCS(old)
	if s1 != s0 || s4 != s0 {
		t.Errorf("output depends on GOMAXPROCS: %x (1) %x (4+) %x (%d)", s1, s4, s0, old)
	}
}

// TestVMDKIdentity: the CID comes from the identity and never takes the reserved values.
func TestVMDKIdentity(t *testing.T) {
	d := constDisk{size: 10 * mib, exts: []Extent{{0, mib}}}
	cid := func(ctx context.Context) string {
		var buf bytes.Buffer
		if err := (vmdk{}).Write(ctx, &buf, d); err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^CID=([0-9a-f]{8})$`).FindSubmatch(buf.Bytes()[512:1024])
		if m == nil {
			t.Fatalf("no CID in the descriptor: %q", buf.Bytes()[512:1024])
		}
		return string(m[1])
	}
	ctx := context.Background()
	c0 := cid(ctx)
	c1 := cid(WithIdentity(ctx, Identity{Seed: []byte("build-1")}))
	c2 := cid(WithIdentity(ctx, Identity{Seed: []byte("build-2")}))
	if c0 == c1 || c1 == c2 {
		t.Errorf("CIDs do not follow the seed: %s %s %s", c0, c1, c2)
	}
	if c := cid(WithIdentity(ctx, Identity{Seed: []byte("build-1")})); c != c1 {
		t.Errorf("same seed, CID %s then %s", c1, c)
	}
	for _, c := range []string{c0, c1, c2} {
		if c == "ffffffff" || c == "fffffffe" {
			t.Errorf("reserved CID %s", c)
		}
	}
}

// TestVMDKPipe writes to a pipe: the format is strictly sequential.
func TestVMDKPipe(t *testing.T) {
	d := constDisk{size: 64 * mib, exts: []Extent{{mib, 3 * mib}, {40 * mib, 100}}}
	r, w := io.Pipe()
	go func() { w.CloseWithError((vmdk{}).Write(context.Background(), w, d)) }()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (vmdk{}).Write(context.Background(), &buf, d); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(buf.Bytes()) != [32]byte(h.Sum(nil)) {
		t.Errorf("pipe output differs")
	}
}

// BenchmarkVMDKWrite: MB/s are guest bytes (1 GiB, half holes, the data incompressible) per
// second, output discarded, on all cores.
func BenchmarkVMDKWrite(b *testing.B) { benchWrite(b, vmdk{}) }
