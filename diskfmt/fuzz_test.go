package diskfmt

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Fuzz targets for the readers:
//
//	go test -run '^$' -fuzz '^FuzzOpenQcow2$' -fuzztime 1m -fuzzminimizetime 200x ./diskfmt
//
// and FuzzOpenVMDK, FuzzOpenVHD. Without a short -fuzzminimizetime the engine spends most of its
// time minimizing each new interesting input. Seed corpora are in testdata/fuzz/NAME;
// IMGFAB_WRITE_SEEDS=1 go test -run TestFuzzSeeds ./diskfmt rewrites the generated ones (needs
// qemu-img).

// fuzzImage opens b as an image and reads it. Every failure must be a *FormatError; a success must
// honour the Disk contract and read zeros outside its extents.
func fuzzImage(t *testing.T, b []byte) {
	img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("Open: not a FormatError: %v", err)
		}
		return
	}
	defer img.Close()
	if err := checkDisk(img); err != nil {
		t.Fatalf("%s: %v", img.Format(), err)
	}
	budget := int64(4 << 20) // bytes read per input
	buf := make([]byte, 256<<10)
	var end int64
	for _, e := range img.Extents() {
		if end < e.Off && budget > 0 { // a hole reads as zeros
			n := min(e.Off-end, 4096)
			if _, err := img.ReadAt(buf[:n], end); err == nil && !isZero(buf[:n]) {
				t.Fatalf("%s: non-zero bytes in the hole at %d", img.Format(), end)
			}
		}
		end = e.End()
		for off := e.Off; off < e.End() && budget > 0; {
			n := min(e.End()-off, int64(len(buf)), budget)
			if _, err := img.ReadAt(buf[:n], off); err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("%s: ReadAt(%d, +%d): not a FormatError: %v", img.Format(), off, n, err)
				}
				return
			}
			off += n
			budget -= n
		}
	}
}

// withMagic keeps the fuzzer inside one reader by forcing the magic at 0.
func withMagic(b []byte, magic string) []byte {
	if len(b) < len(magic) {
		return b
	}
	b = bytes.Clone(b)
	copy(b, magic)
	return b
}

func FuzzOpenQcow2(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzImage(t, withMagic(b, "QFI\xfb")) })
}

func FuzzOpenVMDK(f *testing.F) {
	f.Add(tinyVMDK(false))
	f.Add(tinyVMDK(true))
	f.Fuzz(func(t *testing.T, b []byte) { fuzzImage(t, withMagic(b, "KDMV")) })
}

func FuzzOpenVHD(f *testing.F) {
	img, _ := tinyVHDDynamic()
	f.Add(img)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzImage(t, b) })
}

// ---- small hand-made images, also the fuzz seeds ----

// tinyGuest is the 32 KiB guest of tinyVMDK: data in grains 1 and 6 (4 KiB grains).
func tinyGuest() []byte {
	g := make([]byte, 32<<10)
	copy(g[4096:], pattern(4096, 31))
	copy(g[6*4096:], pattern(4096, 32))
	return g
}

// tinyVMDK builds a 32 KiB hosted sparse extent (VMDK 5.0 "Hosted Sparse Extent Header") with
// 8-sector grains and 4 entries per grain table, holding tinyGuest: grains 1 and 6 allocated,
// grain 3 a zero grain (GTE 1). stream makes it streamOptimized: compressed grains with markers,
// grain directory at the end found through the footer.
func tinyVMDK(stream bool) []byte {
	le := binary.LittleEndian
	guest := tinyGuest()
	var out []byte
	sector := func() int64 { return int64(len(out)) / 512 }
	pad := func() {
		for len(out)%512 != 0 {
			out = append(out, 0)
		}
	}
	header := func(gdOffset uint64) []byte {
		h := make([]byte, 512)
		copy(h, "KDMV")           // magicNumber
		le.PutUint32(h[4:], 1)    // version
		flags := uint32(1 | 1<<2) // newline test, zeroed-grain GTEs
		if stream {
			le.PutUint32(h[4:], 3)
			flags |= 1<<16 | 1<<17 // compressed grains, markers
		}
		le.PutUint32(h[8:], flags)     // flags
		le.PutUint64(h[12:], 64)       // capacity, sectors
		le.PutUint64(h[20:], 8)        // grainSize, sectors
		le.PutUint64(h[28:], 1)        // descriptorOffset
		le.PutUint64(h[36:], 1)        // descriptorSize
		le.PutUint32(h[44:], 4)        // numGTEsPerGT
		le.PutUint64(h[56:], gdOffset) // gdOffset
		le.PutUint64(h[64:], 5)        // overHead
		copy(h[73:], "\n \r\n")        // newline check characters
		if stream {
			le.PutUint16(h[77:], 1) // compressAlgorithm: deflate
		}
		return h
	}
	createType := "monolithicSparse"
	if stream {
		createType = "streamOptimized"
	}
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=%q\nRW 64 SPARSE \"tiny.vmdk\"\n", createType)
	gt := [2][4]uint32{}
	if !stream {
		out = append(out, header(2)...)
		out = append(out, desc...)
		pad()
		out = append(out, le.AppendUint32(le.AppendUint32(nil, 3), 4)...) // grain directory at sector 2
		pad()
		gt[0] = [4]uint32{0, 5, 0, 1}
		gt[1] = [4]uint32{0, 0, 13, 0}
		for _, t := range gt {
			for _, e := range t {
				out = le.AppendUint32(out, e)
			}
			pad()
		}
		out = append(out, guest[4096:8192]...)
		out = append(out, guest[6*4096:7*4096]...)
		return out
	}
	out = append(out, header(vmdkReadGDAtEnd)...)
	out = append(out, desc...)
	pad()
	for _, g := range []int64{1, 6} {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(guest[g*4096 : (g+1)*4096])
		zw.Close()
		gt[g/4][g%4] = uint32(sector())
		out = le.AppendUint64(out, uint64(g*8))     // lba
		out = le.AppendUint32(out, uint32(z.Len())) // size
		out = append(out, z.Bytes()...)
		pad()
	}
	gt[0][3] = 1
	marker := func(val uint64, typ uint32) {
		m := make([]byte, 512)
		le.PutUint64(m, val)
		le.PutUint32(m[12:], typ)
		out = append(out, m...)
	}
	var gd [2]uint32
	for i, t := range gt {
		marker(1, 1) // grain table marker
		gd[i] = uint32(sector())
		for _, e := range t {
			out = le.AppendUint32(out, e)
		}
		pad()
	}
	marker(1, 2) // grain directory marker
	gdSec := sector()
	out = le.AppendUint32(le.AppendUint32(out, gd[0]), gd[1])
	pad()
	marker(1, 3) // footer marker
	out = append(out, header(uint64(gdSec))...)
	marker(0, 0) // end of stream
	return out
}

// tinyVHDDynamic builds a dynamic VHD (VHD spec "Dynamic Disk Header Format") of a 16 KiB guest in
// 4 KiB blocks: block 1 allocated with a bitmap marking sectors 0-3 and 6 only (sectors 4, 5 and 7
// hold bytes that must read as zeros), block 3 allocated and full. It returns the image and the
// guest it must read as.
func tinyVHDDynamic() ([]byte, []byte) {
	be := binary.BigEndian
	guest := make([]byte, 16<<10)
	blk1 := pattern(4096, 41)
	blk3 := pattern(4096, 42)
	copy(guest[4096:], blk1[:4*512])
	copy(guest[4096+6*512:], blk1[6*512:7*512])
	copy(guest[3*4096:], blk3)

	footer := make([]byte, 512)
	copy(footer, "conectix")              // Cookie
	be.PutUint32(footer[8:], 2)           // Features
	be.PutUint32(footer[12:], 0x00010000) // File Format Version
	be.PutUint64(footer[16:], 512)        // Data Offset: the dynamic header
	copy(footer[28:], "imgf")             // Creator Application
	copy(footer[36:], "Wi2k")             // Creator Host OS
	be.PutUint64(footer[40:], 16<<10)     // Original Size
	be.PutUint64(footer[48:], 16<<10)     // Current Size
	be.PutUint32(footer[56:], 1<<16|4<<8|17)
	be.PutUint32(footer[60:], 3) // Disk Type: dynamic
	be.PutUint32(footer[64:], vhdReadChecksum(footer, 64))

	hdr := make([]byte, 1024)
	copy(hdr, "cxsparse")              // Cookie
	be.PutUint64(hdr[8:], ^uint64(0))  // Data Offset: unused
	be.PutUint64(hdr[16:], 1536)       // Table Offset
	be.PutUint32(hdr[24:], 0x00010000) // Header Version
	be.PutUint32(hdr[28:], 4)          // Max Table Entries
	be.PutUint32(hdr[32:], 4096)       // Block Size
	be.PutUint32(hdr[36:], vhdReadChecksum(hdr, 36))

	out := append(bytes.Clone(footer), hdr...)
	bat := make([]byte, 512)
	for i, s := range []uint32{vhdReadUnused, 4, vhdReadUnused, 13} {
		be.PutUint32(bat[i*4:], s)
	}
	out = append(out, bat...) // sectors 3; block 1 at sector 4
	bm := make([]byte, 512)
	bm[0] = 0xf2 // sectors 0-3 and 6
	out = append(out, bm...)
	out = append(out, blk1...)
	bm = make([]byte, 512)
	bm[0] = 0xff
	out = append(out, bm...) // block 3 at sector 13
	out = append(out, blk3...)
	return append(out, footer...), guest
}

// TestTinyImages reads the hand-made images: zero grains, compressed grains with markers, a
// partial VHD sector bitmap.
func TestTinyImages(t *testing.T) {
	for _, stream := range []bool{false, true} {
		b := tinyVMDK(stream)
		img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("vmdk stream=%v: %v", stream, err)
		}
		got := make([]byte, img.Size())
		if _, err := img.ReadAt(got, 0); err != nil {
			t.Fatalf("vmdk stream=%v: %v", stream, err)
		}
		if i := firstDiff(got, tinyGuest()); i >= 0 {
			t.Fatalf("vmdk stream=%v: byte %d differs", stream, i)
		}
		if want := []Extent{{4096, 4096}, {6 * 4096, 4096}}; fmt.Sprint(img.Extents()) != fmt.Sprint(want) {
			t.Errorf("vmdk stream=%v: extents %v, want %v", stream, img.Extents(), want)
		}
	}
	b, guest := tinyVHDDynamic()
	img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil || img.Format() != "vhd-dynamic" {
		t.Fatalf("vhd: %v, %s", err, img.Format())
	}
	if i := firstDiff(got, guest); i >= 0 {
		t.Fatalf("vhd: byte %d is %#x, want %#x (sector bitmap not honoured?)", i, got[i], guest[i])
	}
}

// fuzzSeeds are the generated seed files: target → name → image.
func fuzzSeeds(t *testing.T) map[string]map[string][]byte {
	dir := t.TempDir()
	raw := filepath.Join(dir, "s.raw")
	g := make([]byte, 64<<10)
	copy(g, "abc")
	copy(g[40000:], pattern(3000, 51))
	if err := os.WriteFile(raw, g, 0o644); err != nil {
		t.Fatal(err)
	}
	q := func(args ...string) []byte {
		out := filepath.Join(dir, "seed")
		os.Remove(out)
		qemuConvert(t, raw, out, args...)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	vhdDyn, _ := tinyVHDDynamic()
	seeds := map[string]map[string][]byte{
		"FuzzOpenQcow2": {
			"qemu-512":         q("-O", "qcow2", "-o", "cluster_size=512"),
			"qemu-512-v2":      q("-O", "qcow2", "-o", "cluster_size=512,compat=0.10"),
			"qemu-512-deflate": q("-O", "qcow2", "-c", "-o", "cluster_size=512"),
			"qemu-512-zstd":    q("-O", "qcow2", "-c", "-o", "cluster_size=512,compression_type=zstd"),
		},
		"FuzzOpenVMDK": {
			"tiny-sparse": tinyVMDK(false),
			"tiny-stream": tinyVMDK(true),
		},
		"FuzzOpenVHD": {
			"tiny-dynamic": vhdDyn,
		},
	}
	if err := os.WriteFile(raw, g[:4096], 0o644); err != nil {
		t.Fatal(err)
	}
	seeds["FuzzOpenVHD"]["qemu-fixed"] = q("-O", "vpc", "-o", "subformat=fixed,force_size=on")
	// Our own writers, where their output of this small disk is small.
	src := openDisk(t, raw)
	for name, target := range map[string]string{"vmdk": "FuzzOpenVMDK", "vhd": "FuzzOpenVHD"} {
		f, err := Lookup(name)
		if err != nil {
			continue // not registered yet
		}
		var buf bytes.Buffer
		if err := f.Write(context.Background(), &buf, src); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if buf.Len() <= 64<<10 {
			seeds[target]["imgfab-"+name] = buf.Bytes()
		}
	}
	return seeds
}

// TestFuzzSeeds checks that every committed seed is a valid image (so the fuzzers start from
// images that parse), and rewrites the generated ones with IMGFAB_WRITE_SEEDS=1.
func TestFuzzSeeds(t *testing.T) {
	if os.Getenv("IMGFAB_WRITE_SEEDS") == "1" {
		for target, m := range fuzzSeeds(t) {
			d := filepath.Join("testdata", "fuzz", target)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range m {
				body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
				if err := os.WriteFile(filepath.Join(d, "seed-"+name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpen*", "seed-*"))
	if len(files) < 8 {
		t.Fatalf("%d seed files in testdata/fuzz; regenerate with IMGFAB_WRITE_SEEDS=1", len(files))
	}
	for _, p := range files {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := bytes.CutPrefix(body, []byte("go test fuzz v1\n[]byte("))
		if !ok {
			t.Fatalf("%s: not a fuzz corpus file", p)
		}
		s, err := strconv.Unquote(string(bytes.TrimSuffix(bytes.TrimSpace(lit), []byte(")"))))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(s) > 64<<10 {
			t.Errorf("%s: %d bytes, keep seeds under 64 KiB", p, len(s))
		}
		img, err := OpenReaderAt(bytes.NewReader([]byte(s)), int64(len(s)))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if err := readImage(img); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
