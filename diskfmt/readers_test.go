package diskfmt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// readerPieces is the guest content of the reader tests: data at the start, unaligned data across
// clusters and grains, a run of zeros written as data, and the last sector.
func readerPieces(size int64) []piece {
	return []piece{
		{0, pattern(4096, 21)},
		{300*kib + 77, pattern(200000, 22)},
		{1 * mib, make([]byte, 64*kib)},
		{2*mib + 512, pattern(3<<20, 23)},
		{size - 512, pattern(512, 24)},
	}
}

// readerRaw makes the patterned sparse raw disk of the reader tests: 6 MiB.
func readerRaw(t testing.TB, dir string) string {
	const size = 6 << 20
	return makeSparse(t, dir, size, readerPieces(size))
}

// sameGuest checks that img reads exactly the bytes of the raw file, and that the bytes outside
// img's extents are zeros.
func sameGuest(t *testing.T, img Image, rawPath string) {
	t.Helper()
	want, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if img.Size() != int64(len(want)) {
		t.Fatalf("%s: virtual size %d, want %d", img.Format(), img.Size(), len(want))
	}
	if err := checkDisk(img); err != nil {
		t.Fatalf("%s: %v", img.Format(), err)
	}
	got := make([]byte, len(want))
	// Read in odd-sized pieces so reads start and end inside clusters.
	for off := 0; off < len(got); {
		n := min(len(got)-off, 777777)
		m, err := img.ReadAt(got[off:off+n], int64(off))
		if m != n || err != nil {
			t.Fatalf("%s: ReadAt(%d, +%d) = %d, %v", img.Format(), off, n, m, err)
		}
		off += n
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("%s: guest byte %d is %#x, want %#x", img.Format(), i, got[i], want[i])
	}
	var end int64
	for _, e := range append(img.Extents(), Extent{img.Size(), 0}) {
		if !isZero(want[end:e.Off]) {
			t.Fatalf("%s: data in [%d, %d) outside the extents %v", img.Format(), end, e.Off, img.Extents())
		}
		end = e.End()
	}
	// Past the end: io.EOF, a partial read.
	var p [1024]byte
	if n, err := img.ReadAt(p[:], img.Size()-512); n != 512 || err == nil {
		t.Errorf("%s: ReadAt across the end = %d, %v; want 512, io.EOF", img.Format(), n, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// qemuImages makes images of raw with qemu-img convert and qemu-io, keyed by a name.
type qemuCase struct {
	name, format string // test name, the Format() wanted
	args         []string
	post         func([]byte) []byte // rewrites qemu's output, or nil
}

func qemuCases() []qemuCase {
	return []qemuCase{
		{"qcow2", "qcow2", []string{"-O", "qcow2"}, nil},
		{"qcow2-v2", "qcow2", []string{"-O", "qcow2", "-o", "compat=0.10"}, nil},
		{"qcow2-512", "qcow2", []string{"-O", "qcow2", "-o", "cluster_size=512"}, nil},
		{"qcow2-2M", "qcow2", []string{"-O", "qcow2", "-o", "cluster_size=2M"}, nil},
		{"qcow2-deflate", "qcow2", []string{"-O", "qcow2", "-c"}, nil},
		{"qcow2-deflate-4k", "qcow2", []string{"-O", "qcow2", "-c", "-o", "cluster_size=4096"}, nil},
		{"qcow2-zstd", "qcow2", []string{"-O", "qcow2", "-c", "-o", "compression_type=zstd"}, nil},
		{"vmdk-sparse", "vmdk", []string{"-O", "vmdk", "-o", "subformat=monolithicSparse"}, nil},
		{"vmdk-stream", "vmdk", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}, nil},
		{"vmdk-stream-footer", "vmdk", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}, vmdkAddFooter},
		{"vhd-fixed", "vhd", []string{"-O", "vpc", "-o", "subformat=fixed,force_size=on"}, nil},
		{"vhd-dynamic", "vhd-dynamic", []string{"-O", "vpc", "-o", "subformat=dynamic,force_size=on"}, nil},
	}
}

// vmdkAddFooter turns qemu's streamOptimized output (grain directory offset in the head) into the
// layout of VMDK 5.0 "Stream-Optimized Compressed Sparse Extents": gdOffset GD_AT_END in the head,
// then a footer marker, a footer (the header with the real gdOffset) and an end-of-stream marker.
func vmdkAddFooter(b []byte) []byte {
	head := bytes.Clone(b[:512])
	out := patch(b, 56, binary.LittleEndian.AppendUint64(nil, vmdkReadGDAtEnd))
	marker := make([]byte, 512)
	binary.LittleEndian.PutUint64(marker, 1)                         // val: the footer is one sector
	binary.LittleEndian.PutUint32(marker[12:], vmdkReadMarkerFooter) // type
	out = append(out, marker...)
	out = append(out, head...)
	return append(out, make([]byte, 512)...) // end-of-stream marker
}

func qemuConvert(t testing.TB, raw, out string, args ...string) {
	t.Helper()
	qimg := testtool.Need(t, "qemu-img", "qemu-utils")
	a := append([]string{"convert", "-f", "raw"}, args...)
	if o, code := run(t, qimg, append(a, raw, out)...); code != 0 {
		t.Fatalf("qemu-img %s: exit %d\n%s", strings.Join(a, " "), code, o)
	}
}

func mustOpen(t testing.TB, path string) Image {
	t.Helper()
	img, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

// TestReadQemuImages reads images made by qemu-img from a patterned raw and compares them with it.
func TestReadQemuImages(t *testing.T) {
	dir := t.TempDir()
	raw := readerRaw(t, dir)
	for _, tc := range qemuCases() {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".img")
			qemuConvert(t, raw, out, tc.args...)
			if tc.post != nil {
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(out, tc.post(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			img := mustOpen(t, out)
			if img.Format() != tc.format {
				t.Fatalf("Format() = %q, want %q", img.Format(), tc.format)
			}
			sameGuest(t, img, raw)
		})
	}
	t.Run("raw", func(t *testing.T) { sameGuest(t, mustOpen(t, raw), raw) })
}

// TestReadQemuIOPatterns reads qcow2 images written cluster by cluster with qemu-io: data, zero
// clusters (the v3 zero flag), discarded clusters, and compressed writes, over sizes that are not
// whole clusters.
func TestReadQemuIOPatterns(t *testing.T) {
	qimg := testtool.Need(t, "qemu-img", "qemu-utils")
	qio := testtool.Need(t, "qemu-io", "qemu-utils")
	dir := t.TempDir()
	for _, ct := range []string{"zlib", "zstd"} {
		t.Run(ct, func(t *testing.T) {
			q := filepath.Join(dir, ct+".qcow2")
			const size = 5*mib + 1536
			if o, code := run(t, qimg, "create", "-q", "-f", "qcow2", "-o", "compression_type="+ct, q, "5244416"); code != 0 {
				t.Fatalf("qemu-img create: %s", o)
			}
			cmds := []string{
				"write -P 0xab 0 1M",
				"write -z 64k 64k",         // zero flag inside data
				"write -P 0xcd 1536k 100k", // partial clusters
				"write -c -P 0x11 2M 64k",  // compressed
				"write -c -P 0x22 3M 128k", // two compressed clusters
				"write -P 0x33 5M 1536",    // the tail, a partial cluster
				"discard 512k 64k",
			}
			for _, c := range cmds {
				if o, code := run(t, qio, "-f", "qcow2", "-c", c, q); code != 0 {
					t.Fatalf("qemu-io %q: %s", c, o)
				}
			}
			// The same through qemu-img into a raw, as the reference.
			raw := filepath.Join(dir, ct+".raw")
			if o, code := run(t, qimg, "convert", "-f", "qcow2", "-O", "raw", q, raw); code != 0 {
				t.Fatalf("qemu-img convert: %s", o)
			}
			img := mustOpen(t, q)
			sameGuest(t, img, raw)
			want, _ := os.ReadFile(raw)
			if want[2*mib] != 0x11 || want[64*kib] != 0 || want[0] != 0xab || int64(len(want)) != size {
				t.Fatalf("qemu-io patterns did not land as expected")
			}
		})
	}
}

// readable maps the --format names whose output the readers read back to the Format() wanted.
var readable = map[string]string{"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vhd", "vhd-dynamic": "vhd-dynamic"}

// TestReadRoundTrip writes a patterned disk with each registered writer and reads it back.
func TestReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	raw := readerRaw(t, dir)
	src := openDisk(t, raw)
	type out struct{ name, compress string }
	var outs []out
	for _, name := range Names() {
		outs = append(outs, out{name, ""})
	}
	outs = append(outs, out{"qcow2", "deflate"}, out{"qcow2", "zstd"})
	for _, o := range outs {
		name := o.name
		t.Run(name+o.compress, func(t *testing.T) {
			want, ok := readable[name]
			if !ok {
				t.Skipf("format %q has no reader (an archive or compressed stream, not a disk image format)", name)
			}
			f, err := New(name, Options{Compress: o.compress})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "rt-"+name+o.compress)
			if err := WriteFile(context.Background(), out, f, src); err != nil {
				t.Fatal(err)
			}
			img := mustOpen(t, out)
			if img.Format() != want {
				t.Fatalf("Format() = %q, want %q", img.Format(), want)
			}
			sameGuest(t, img, raw)
		})
	}
}

// TestOpenReaderAt reads a qcow2 through OpenReaderAt (no file: raw extents are the whole disk).
func TestOpenReaderAt(t *testing.T) {
	dir := t.TempDir()
	raw := readerRaw(t, dir)
	q := filepath.Join(dir, "x.qcow2")
	qemuConvert(t, raw, q, "-O", "qcow2", "-c")
	b, err := os.ReadFile(q)
	if err != nil {
		t.Fatal(err)
	}
	img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	sameGuest(t, img, raw)
	r, _ := os.ReadFile(raw)
	img, err = OpenReaderAt(bytes.NewReader(r), int64(len(r)))
	if err != nil || img.Format() != "raw" || len(img.Extents()) != 1 {
		t.Fatalf("raw through OpenReaderAt: %v, %v", img, err)
	}
	sameGuest(t, img, raw)
}

// TestOpenDescriptorVMDK refuses a descriptor-only (monolithicFlat) VMDK with a clear error.
func TestOpenDescriptorVMDK(t *testing.T) {
	dir := t.TempDir()
	raw := readerRaw(t, dir)
	out := filepath.Join(dir, "flat.vmdk")
	qemuConvert(t, raw, out, "-O", "vmdk", "-o", "subformat=monolithicFlat")
	_, err := Open(context.Background(), out)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Field != "descriptor" || !strings.Contains(err.Error(), "monolithicFlat") {
		t.Fatalf("Open(monolithicFlat) = %v, want a FormatError on the descriptor naming monolithicFlat", err)
	}
}

// ---- hostile input ----

// patch returns a copy of b with p written at off.
func patch(b []byte, off int64, p []byte) []byte {
	c := bytes.Clone(b)
	copy(c[off:], p)
	return c
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// badCase is a corrupted image and the error it must give.
type badCase struct {
	name  string
	ext   string // file name extension
	data  []byte
	field string // the FormatError's Field
	off   int64  // its Offset, -1 to not check
}

// qcow2FirstL2 returns the file offsets of the first L1 entry in use, its L2 table and that
// table's first data entry.
func qcow2FirstL2(t testing.TB, b []byte) (l1e, l2, l2e int64) {
	l1 := int64(binary.BigEndian.Uint64(b[40:]))
	for i := l1; ; i += 8 {
		if e := binary.BigEndian.Uint64(b[i:]) & qcowOffMask; e != 0 {
			l1e, l2 = i, int64(e)
			break
		}
	}
	for j := l2; j < l2+qcowCluster; j += 8 {
		if binary.BigEndian.Uint64(b[j:]) != 0 {
			return l1e, l2, j
		}
	}
	t.Fatal("no data entry in the first L2 table")
	return
}

// vhdFix recomputes a VHD checksum after a patch (footer: field at 64; dynamic header: 36).
func vhdFix(b []byte, at, ck int64, n int) []byte {
	binary.BigEndian.PutUint32(b[at+ck:], vhdReadChecksum(b[at:at+int64(n)], int(ck)))
	return b
}

// badCases makes each corruption the readers must report, from images made by qemu-img.
func badCases(t testing.TB) []badCase {
	dir := t.TempDir()
	raw := readerRaw(t, dir)
	read := func(args ...string) []byte {
		out := filepath.Join(dir, "bad-src")
		os.Remove(out)
		qemuConvert(t, raw, out, args...)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	q := read("-O", "qcow2")
	qc := read("-O", "qcow2", "-c")
	vs := read("-O", "vmdk", "-o", "subformat=monolithicSparse")
	vo := vmdkAddFooter(read("-O", "vmdk", "-o", "subformat=streamOptimized"))
	hf := read("-O", "vpc", "-o", "subformat=fixed,force_size=on")
	hd := read("-O", "vpc", "-o", "subformat=dynamic,force_size=on")
	le := binary.LittleEndian
	be := binary.BigEndian

	_, _, l2e := qcow2FirstL2(t, q)
	_, _, cl2e := qcow2FirstL2(t, qc)
	l1off := int64(be.Uint64(q[40:]))
	gd := int64(le.Uint64(vs[56:])) * 512                // monolithicSparse: gdOffset in the header
	vogd := int64(le.Uint64(vo[len(vo)-1024+56:])) * 512 // streamOptimized: in the footer
	vogt := int64(le.Uint32(vo[vogd:])) * 512
	grain0 := int64(le.Uint32(vo[vogt:])) * 512 // the first grain's marker
	hdr := int64(be.Uint64(hd[16:]))            // dynamic header offset, from the footer copy
	bat := int64(be.Uint64(hd[hdr+16:]))

	cases := []badCase{
		{"qcow2 truncated header", ".qcow2", q[:50], "header", 0},
		{"qcow2 truncated", ".qcow2", q[:len(q)/2], "L2 entry", -1},
		{"qcow2 wrong version", ".qcow2", patch(q, 4, be32(4)), "version", 4},
		{"qcow2 raw content", ".qcow2", raw0(t, raw), "magic", 0},
		{"qcow2 cluster_bits", ".qcow2", patch(q, 20, be32(30)), "cluster_bits", 20},
		{"qcow2 L2 past the end", ".qcow2", patch(q, l2e, be64(0x7ffff0000|qcowCopied)), "L2 entry", l2e},
		{"qcow2 L2 unaligned", ".qcow2", patch(q, l2e, be64(0x30200|qcowCopied)), "L2 entry", l2e},
		{"qcow2 compressed past the end", ".qcow2", patch(qc, cl2e, be64(qcowCompressed|0x3fff0000)), "L2 entry", cl2e},
		{"qcow2 L1 past the end", ".qcow2", patch(q, 40, be64(0x7ff0000)), "l1_table_offset", 40},
		{"qcow2 L1 entry past the end", ".qcow2", patch(q, l1off, be64(0x7ff0000|qcowCopied)), "L1 entry", l1off},
		{"qcow2 huge l1_size", ".qcow2", patch(q, 36, be32(0xffffffff)), "l1_size", 36},
		{"qcow2 small l1_size", ".qcow2", patch(q, 24, be64(1<<40)), "l1_size", 36},
		{"qcow2 backing file", ".qcow2", patch(q, 8, be64(0x200)), "backing_file_offset", 8},
		{"qcow2 unknown feature", ".qcow2", patch(q, 72, be64(1<<40)), "incompatible_features", 72},
		{"qcow2 refcount table past the end", ".qcow2", patch(q, 48, be64(1<<40)), "refcount_table_offset", 48},
		{"vhd bad footer checksum", ".vhd", patch(hf, int64(len(hf))-512+48, be64(1<<20)), "footer checksum", int64(len(hf)) - 512 + 64},
		{"vhd dynamic bad footer checksum", ".vhd", patch(patch(hd, 20, []byte{1}), int64(len(hd))-512+20, []byte{1}), "footer checksum", int64(len(hd)) - 512 + 64},
		{"vhd fixed truncated", ".vhd", hf[:len(hf)-100], "magic", 0},
		{"vhd dynamic truncated", ".vhd", hd[:len(hd)/2], "BAT entry", -1},
		{"vhd dynamic wrong cookie", ".vhd", patch(hd, hdr, []byte("cxspars!")), "dynamic header cookie", hdr},
		{"vhd dynamic header checksum", ".vhd", patch(hd, hdr+32, be32(1<<22)), "dynamic header checksum", hdr + 36},
		{"vhd dynamic BAT past the end", ".vhd", vhdFix(patch(hd, hdr+16, be64(1<<40)), hdr, 36, 1024), "dynamic header table offset", hdr + 16},
		{"vhd dynamic BAT entry past the end", ".vhd", patch(hd, bat, be32(0x7fffff)), "BAT entry", bat},
		{"vhd dynamic block size", ".vhd", vhdFix(patch(hd, hdr+32, be32(3000)), hdr, 36, 1024), "dynamic header block size", hdr + 32},
		{"vhd differencing", ".vhd", vhdFix(vhdFix(patch(patch(hd, 60, be32(4)), int64(len(hd))-512+60, be32(4)), 0, 64, 512), int64(len(hd))-512, 64, 512), "footer disk type", int64(len(hd)) - 512 + 60},
		{"vmdk truncated header", ".vmdk", vs[:300], "header", 0},
		{"vmdk wrong version", ".vmdk", patch(vs, 4, le32(9)), "version", 4},
		{"vmdk grain table past the end", ".vmdk", patch(vs, gd, le32(0x7ffffff)), "grain directory entry", gd},
		{"vmdk grain past the end", ".vmdk", patch(vs, int64(le.Uint32(vs[gd:]))*512, le32(0x7ffffff)), "grain table entry", int64(le.Uint32(vs[gd:])) * 512},
		{"vmdk gd past the end", ".vmdk", patch(vs, 56, binary.LittleEndian.AppendUint64(nil, 1<<40)), "gdOffset", 56},
		{"vmdk grain size", ".vmdk", patch(vs, 20, binary.LittleEndian.AppendUint64(nil, 3)), "grainSize", 20},
		{"vmdk stream truncated", ".vmdk", vo[:len(vo)/2], "footer marker", -1},
		{"vmdk stream no end-of-stream", ".vmdk", vo[:len(vo)-512], "footer marker", -1},
		{"vmdk stream footer magic", ".vmdk", patch(vo, int64(len(vo))-1024, []byte("XDMV")), "footer magic", int64(len(vo)) - 1024},
		{"vmdk stream gt past the end", ".vmdk", patch(vo, vogd, le32(0x7ffffff)), "grain directory entry", vogd},
		// A lying compressed size is found when the grain is read.
		{"vmdk stream grain size too large", ".vmdk", patch(vo, grain0+8, le32(0x7fffffff)), "grain marker size", grain0 + 8},
		{"vmdk stream grain size too small", ".vmdk", patch(vo, grain0+8, le32(20)), "compressed grain", grain0},
		{"vmdk stream grain lba", ".vmdk", patch(vo, grain0, binary.LittleEndian.AppendUint64(nil, 999)), "grain marker lba", grain0},
		{"vmdk descriptor parent", ".vmdk", patch(vs, 512, []byte("# Disk DescriptorFile\nversion=1\nparentCID=12345678\n")), "descriptor parentCID", 512},
	}
	return cases
}

// raw0 is the raw test disk's content.
func raw0(t testing.TB, raw string) []byte {
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readImage reads every extent of img, returning the first error.
func readImage(img Image) error {
	buf := make([]byte, 1<<20)
	for _, e := range img.Extents() {
		for off := e.Off; off < e.End(); off += int64(len(buf)) {
			n := min(int64(len(buf)), e.End()-off)
			if _, err := img.ReadAt(buf[:n], off); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestBadInput opens and reads corrupted images: each must give a FormatError naming the field and
// offset, never a panic.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range badCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+tc.ext)
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := Open(context.Background(), p)
			if err == nil {
				err = readImage(img)
				img.Close()
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *FormatError on %s", err, tc.field)
			}
			if fe.Field != tc.field || tc.off >= 0 && fe.Offset != tc.off {
				t.Fatalf("got %v (field %q, offset %#x), want field %q at %#x", err, fe.Field, fe.Offset, tc.field, tc.off)
			}
			if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "offset 0x") {
				t.Fatalf("message %q does not name the field and the offset", err)
			}
		})
	}
}

// BenchmarkRead reads a 64 MiB disk of compressible data through each reader, in 4 MiB pieces
// (as the writers do). The images are made by qemu-img.
func BenchmarkRead(b *testing.B) {
	dir := b.TempDir()
	const size = 64 << 20
	var pieces []piece
	for off := int64(0); off < size; off += 1 << 20 {
		p := pattern(256<<10, byte(off>>20))
		for i := range p {
			p[i] &= 0x0f // compressible
		}
		pieces = append(pieces, piece{off, p})
	}
	raw := makeSparse(b, dir, size, pieces)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"raw", nil},
		{"qcow2", []string{"-O", "qcow2"}},
		{"qcow2-deflate", []string{"-O", "qcow2", "-c"}},
		{"qcow2-zstd", []string{"-O", "qcow2", "-c", "-o", "compression_type=zstd"}},
		{"vmdk-stream", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}},
		{"vhd-dynamic", []string{"-O", "vpc", "-o", "subformat=dynamic,force_size=on"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			path := raw
			if tc.args != nil {
				path = filepath.Join(dir, tc.name+".img")
				qemuConvert(b, raw, path, tc.args...)
			}
			img := mustOpen(b, path)
			buf := make([]byte, 4<<20)
			b.SetBytes(size)
			for b.Loop() {
				for off := int64(0); off < size; off += int64(len(buf)) {
					if _, err := img.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
