package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/diskfmt"
)

// convertReadable maps the output formats that convert also reads back to qemu-img's name for
// them; the others (compressed raw streams, the GCE tarball) are archives, not disk images.
var convertReadable = map[string]string{"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhd-dynamic": "vpc"}

// patternedRaw writes a sparse raw disk of size bytes with non-zero data at a few unaligned places.
func patternedRaw(t *testing.T, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "in.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x := uint32(12345)
	fill := func(off int64, n int) {
		b := make([]byte, n)
		for i := range b {
			x = x*1664525 + 1013904223
			b[i] = byte(x>>24) | 1
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	fill(0, 4096)
	fill(300<<10+77, 200000)
	fill(3<<20+512, 5<<20)
	fill(size-512, 512)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

type convertOut struct {
	format, compress string
}

// convertOutputs lists every output convert can write: each format, and qcow2 with each compression.
func convertOutputs() []convertOut {
	var outs []convertOut
	for _, n := range diskfmt.Names() {
		outs = append(outs, convertOut{n, ""})
	}
	return append(outs, convertOut{"qcow2", "deflate"}, convertOut{"qcow2", "zstd"})
}

// roundTrip converts raw to every format and back, and checks the result is byte-identical; each
// intermediate image is also compared with the raw by qemu-img compare and passes checkFormat.
// Formats convert writes but does not read (compressed raw, the GCE tarball) get checkFormat only.
func roundTrip(t *testing.T, raw string, skip ...string) {
	qimg := testtool.Need(t, "qemu-img", "qemu-utils")
	want := testtool.FileSum(t, raw)
	for _, o := range convertOutputs() {
		t.Run(o.format+o.compress, func(t *testing.T) {
			if slices.Contains(skip, o.format+o.compress) {
				t.Skipf("%s: left out for this disk by the caller", o.format+o.compress)
			}
			dir := t.TempDir() // removed after each format: a Debian disk in every format is GBs
			mid := filepath.Join(dir, "mid-"+o.format+o.compress+"."+o.format)
			args := []string{"convert", raw, mid, "--format", o.format}
			if o.compress != "" {
				args = append(args, "--compress", o.compress)
			}
			if r := runImgfab(t, nil, args...); r.code != 0 {
				t.Fatalf("imgfab %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			checkFormat(t, raw, mid, o.format)
			qfmt, ok := convertReadable[o.format]
			if !ok {
				return // a compressed stream or an archive, not a disk image: not read back
			}
			if out, err := exec.Command(qimg, "compare", "-q", "-f", "raw", "-F", qfmt, raw, mid).CombinedOutput(); err != nil {
				t.Errorf("qemu-img compare -F %s: %v\n%s", qfmt, err, out)
			}
			back := filepath.Join(dir, "back-"+o.format+o.compress+".raw")
			if r := runImgfab(t, nil, "convert", mid, back); r.code != 0 {
				t.Fatalf("imgfab convert %s %s: exit %d\n%s", mid, back, r.code, r.stderr)
			}
			if got := testtool.FileSum(t, back); got != want {
				t.Fatalf("raw → %s → raw: sha256 %s, want %s", o.format, got, want)
			}
		})
	}
}

// TestConvertRoundTrip: raw → each format → raw is byte-identical, for a patterned sparse disk.
func TestConvertRoundTrip(t *testing.T) {
	roundTrip(t, patternedRaw(t, t.TempDir(), 12<<20))
}

// TestConvertDemoRoundTrip: the same for the demo image built by imgfab.
func TestConvertDemoRoundTrip(t *testing.T) {
	layout := fixture(t, "demo/oci", "mkdemo.sh")
	raw := filepath.Join(t.TempDir(), "demo.raw")
	build(t, "oci:"+layout+":demo", "--cmdline", "console=ttyS0 imgfab.test", "-o", raw)
	roundTrip(t, raw)
}

// TestConvertStdout: OUT "-" gives the same bytes as a file, for a sequential format.
func TestConvertStdout(t *testing.T) {
	dir := t.TempDir()
	raw := patternedRaw(t, dir, 9<<20)
	file := filepath.Join(dir, "a.qcow2")
	if r := runImgfab(t, nil, "convert", raw, file); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	r := runImgfab(t, nil, "convert", raw, "-", "--format", "qcow2")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte(r.stdout)) {
		t.Fatalf("stdout: %d bytes differ from the file's %d", len(r.stdout), len(b))
	}
}

// TestConvertUsage: usage errors exit 2, failures 1, help 0.
func TestConvertUsage(t *testing.T) {
	dir := t.TempDir()
	raw := patternedRaw(t, dir, 1<<20)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"convert"}, 2, "want IN and OUT"},
		{[]string{"convert", raw}, 2, "want IN and OUT"},
		{[]string{"convert", raw, "a.b", "c"}, 2, "want IN and OUT"},
		{[]string{"convert", raw, filepath.Join(dir, "x.unknown")}, 2, "no format for the extension"},
		{[]string{"convert", raw, "-"}, 2, "give --format"},
		{[]string{"convert", raw, filepath.Join(dir, "x"), "--format", "nope"}, 2, "unknown format"},
		{[]string{"convert", raw, filepath.Join(dir, "x.vmdk"), "--compress", "zstd"}, 2, "compress"},
		{[]string{"convert", "--bogus", raw, "x.raw"}, 2, "unknown flag"},
		{[]string{"convert", filepath.Join(dir, "missing.qcow2"), filepath.Join(dir, "x.raw")}, 1, "no such file"},
		{[]string{"convert", "--help"}, 0, ""},
	} {
		r := runImgfab(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("imgfab %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.msg)
		}
	}
	if r := runImgfab(t, nil, "convert", "--help"); !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("--help has no examples:\n%s", r.stdout)
	}
}

// TestConvertBadInput: corrupt inputs exit 1 with a message naming the field and its offset, and
// leave no output behind.
func TestConvertBadInput(t *testing.T) {
	qimg := testtool.Need(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	raw := patternedRaw(t, dir, 4<<20)
	mk := func(name string, args ...string) []byte {
		p := filepath.Join(dir, name)
		if out, err := exec.Command(qimg, append(append([]string{"convert", "-f", "raw"}, args...), raw, p)...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert %v: %v\n%s", args, err, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	q := mk("src.qcow2", "-O", "qcow2")
	vhd := mk("src.vhd", "-O", "vpc", "-o", "subformat=fixed,force_size=on")
	dyn := mk("src-dyn.vhd", "-O", "vpc", "-o", "subformat=dynamic,force_size=on")
	vmdk := mk("src.vmdk", "-O", "vmdk", "-o", "subformat=monolithicSparse")
	raw0, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	with := func(b []byte, off int64, p []byte) []byte {
		c := bytes.Clone(b)
		copy(c[off:], p)
		return c
	}
	// The first L2 entry in use (qcow2.rst "Cluster mapping").
	l1 := int64(be.Uint64(q[40:]))
	l2 := int64(be.Uint64(q[l1:]) & 0x00fffffffffffe00)
	hdr := int64(be.Uint64(dyn[16:])) // dynamic header offset (VHD footer copy at 0)
	gd := int64(binary.LittleEndian.Uint64(vmdk[56:])) * 512
	for _, tc := range []struct {
		name  string
		data  []byte
		field string
	}{
		{"truncated.qcow2", q[:len(q)/2], "L2 entry"},
		{"wrong-magic.qcow2", raw0, "magic"},
		{"wrong-version.qcow2", with(q, 4, be.AppendUint32(nil, 7)), "version"},
		{"l2-past-end.qcow2", with(q, l2, be.AppendUint64(nil, 0x7ffff0000|1<<63)), "L2 entry"},
		{"l1-past-end.qcow2", with(q, 40, be.AppendUint64(nil, 0x7fff0000)), "l1_table_offset"},
		{"huge-l1.qcow2", with(q, 36, be.AppendUint32(nil, 0xfffffff0)), "l1_size"},
		{"checksum.vhd", with(vhd, int64(len(vhd))-512+48, be.AppendUint64(nil, 3<<30)), "footer checksum"},
		{"bat.vhd", with(dyn, hdr+16, be.AppendUint64(nil, 1<<40)), "dynamic header checksum"},
		{"cookie.vhd", with(dyn, hdr, []byte("xxsparse")), "dynamic header cookie"},
		{"truncated.vhd", dyn[:len(dyn)/2], "BAT entry"},
		{"gt-past-end.vmdk", with(vmdk, gd, binary.LittleEndian.AppendUint32(nil, 0x7ffffff)), "grain directory entry"},
		{"truncated.vmdk", vmdk[:1000], "descriptor"},
	} {
		in := filepath.Join(dir, tc.name)
		if err := os.WriteFile(in, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out-"+tc.name+".raw")
		r := runImgfab(t, nil, "convert", in, out)
		if r.code != 1 || !strings.Contains(r.stderr, tc.field+" at offset 0x") || strings.Contains(r.stderr, "panic") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 naming %q and its offset", tc.name, r.code, r.stderr, tc.field)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: output %s left behind", tc.name, out)
		}
	}
}
