package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Commands:"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"build"}, 2, "want exactly one SOURCE"},
		{[]string{"build", "oci:x"}, 2, "no output"},
		{[]string{"build", "--bogus", "oci:x", "-o", "a.raw"}, 2, "unknown flag"},
		{[]string{"build", "--size", "lots", "oci:x", "-o", "a.raw"}, 2, "bad size"},
		{[]string{"build", "--help"}, 0, "Examples:"},
		{[]string{"version"}, 0, "imgfab "},
		{[]string{"build", "oci:/nonexistent", "-o", filepath.Join(t.TempDir(), "a.raw")}, 1, "nonexistent"},
		{[]string{"build", "oci:/nonexistent", "-o", filepath.Join(t.TempDir(), "a.vdi")}, 1, "a.vdi"},
	} {
		r := runImgfab(t, nil, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("imgfab %q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, r.code, c.code, c.want, r.stdout, r.stderr)
		}
	}
}

// contentTree exercises every kind of entry the ext4 writer must carry through the whole pipeline.
func contentTree() []ent {
	mt := time.Unix(1600000000, 123456789)
	e := bootEntries()
	e = append(e,
		dir("etc/", 0o755),
		reg("etc/os-release", "PRETTY_NAME=\"imgfab content test\"\n", 0o644),
		dir("bin/", 0o755),
		ent{tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755, Uid: 0, Gid: 0, Size: 3, ModTime: mt}, "su\n"},
		ent{tar.Header{Typeflag: tar.TypeReg, Name: "bin/ping", Mode: 0o755, Size: 5, ModTime: mt, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
				"SCHILY.xattr.user.note": "hello"}}, "ping\n"},
		hardlink("bin/su-again", "bin/su"),
		hardlink("bin/su-third", "bin/su"),
		symlink("bin/sh", "busybox"),
		symlink("bin/long", "/"+strings.Repeat("x", 100)),
		ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mt}},
		ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "srv/", Mode: 0o2775, Uid: 70000, Gid: 80000, ModTime: mt}},
		ent{tar.Header{Typeflag: tar.TypeReg, Name: "srv/data", Mode: 0o640, Uid: 70000, Gid: 80000, Size: 200000, ModTime: mt, Format: tar.FormatPAX},
			strings.Repeat("0123456789", 20000)},
		dir("dev/", 0o755),
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt}},
		ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/big", Mode: 0o600, Devmajor: 300, Devminor: 70000, ModTime: mt}},
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o644, ModTime: mt}},
	)
	return e
}

// TestBuildContent builds a synthetic image through the whole pipeline and checks the written ext4
// against the source tar with debugfs, plus every structural oracle.
func TestBuildContent(t *testing.T) {
	debugfs := testtool.Need(t, "debugfs", "e2fsprogs")
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	src := writeLayout(t, "content", gz(tarBytes(t, contentTree())))
	out := t.TempDir()
	raw, qcow := filepath.Join(out, "disk.raw"), filepath.Join(out, "disk.qcow2")
	res := build(t, "oci:"+src+":content", "--cmdline", "console=ttyS0", "-o", raw, "-o", qcow)
	checkOracles(t, raw, res)
	if o, err := exec.Command(qemuImg, "check", qcow).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, o)
	}
	if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare: %v\n%s", err, o)
	}
	if !strings.HasPrefix(res.Cmdline, "root=PARTUUID="+strings.ToLower(res.Partitions[1].GUID)+" rw console=ttyS0") {
		t.Errorf("cmdline %q", res.Cmdline)
	}
	if res.Kernel != "/boot/vmlinuz-1.0" || res.Initrd != "/boot/initrd.img-1.0" {
		t.Errorf("kernel %q initrd %q", res.Kernel, res.Initrd)
	}
	root := res.Partitions[1]
	fsimg := extract(t, raw, root.Offset, root.Size)
	dfs := func(cmd string) string {
		o, err := exec.Command(debugfs, "-R", cmd, fsimg).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", cmd, err, o)
		}
		return string(o)
	}
	for _, c := range []struct{ cmd, want string }{
		{"stat /bin/su", "Mode:  04755"},
		{"stat /bin/su", "Links: 3"},
		{"stat /bin/su-third", "Links: 3"},
		{"stat /tmp", "Mode:  01777"},
		{"stat /srv", "Mode:  02775"},
		{"stat /srv/data", "User: 70000   Group: 80000"},
		{"stat /srv/data", "Size: 200000"},
		{"stat /srv/data", "mtime: 0x5f5e1000:1d6f3454"},
		{"stat /dev/null", "Device major/minor number: 01:03"},
		{"stat /dev/big", "Device major/minor number: 300:70000"},
		{"stat /dev/fifo", "Type: FIFO"},
		{"stat /bin/sh", `Fast link dest: "busybox"`},
		{"stat /bin/long", "Size: 101"},
		{"ea_list /bin/ping", "security.capability (20)"},
		{"ea_list /bin/ping", `user.note (5) = "hello"`},
		{"cat /bin/su-again", "su\n"},
		{"cat /etc/os-release", "imgfab content test"},
	} {
		if got := dfs(c.cmd); !strings.Contains(got, c.want) {
			t.Errorf("debugfs %s: want %q in\n%s", c.cmd, c.want, got)
		}
	}
	data := dfs("cat /srv/data")
	if !strings.Contains(data, strings.Repeat("0123456789", 20000)) {
		t.Errorf("/srv/data content differs (%d bytes)", len(data))
	}
}

// TestReproducible builds the same input twice in different directories: same bytes.
func TestReproducible(t *testing.T) {
	src := writeLayout(t, "r", gz(tarBytes(t, contentTree())))
	var sums [2][2]string
	for i := range sums {
		out := t.TempDir()
		res := build(t, "oci:"+src, "-o", filepath.Join(out, "d.raw"), "-o", filepath.Join(out, "d.qcow2"))
		sums[i] = [2]string{res.Outputs[0].SHA256, res.Outputs[1].SHA256}
		if got := fileSum(t, filepath.Join(out, "d.raw")); got != res.Outputs[0].SHA256 {
			t.Fatalf("--json sha256 %s, file has %s", res.Outputs[0].SHA256, got)
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %v vs %v", sums[0], sums[1])
	}
	// A different source date epoch changes the bytes (the epoch reaches the output).
	out := t.TempDir()
	res := build(t, "--source-date-epoch", "1700000001", "oci:"+src, "-o", filepath.Join(out, "d.raw"))
	if res.Outputs[0].SHA256 == sums[0][0] {
		t.Fatal("--source-date-epoch did not change the output")
	}
}

// TestHostileLayers: each hostile input ends with exit 1, a message naming the layer and entry,
// and nothing at the output path (nor any temporary file beside it).
func TestHostileLayers(t *testing.T) {
	good := gz(tarBytes(t, bootEntries()))
	full := gz(tarBytes(t, append(bootEntries(), reg("big", strings.Repeat("x", 1<<20), 0o644))))
	cases := []struct {
		name  string
		layer []byte
		mod   func(dir string) // damages the layout after writing
		want  []string
	}{
		{"dotdot", gz(tarBytes(t, []ent{reg("../../etc/evil", "x", 0o644)})), nil, []string{"../../etc/evil"}},
		{"absolute-symlink-write-through", gz(tarBytes(t, []ent{symlink("etc", "/etc"), reg("etc/passwd", "evil", 0o644)})), nil,
			[]string{"etc/passwd"}},
		{"hardlink-outside", gz(tarBytes(t, []ent{hardlink("shadow", "../../../etc/shadow")})), nil, []string{"shadow"}},
		{"truncated-gzip", full[:len(full)/2], nil, []string{"sha256:"}},
		{"digest-mismatch", good, func(dir string) { corruptBiggestBlob(t, dir) }, []string{"sha256:", "digest"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var src string
			if c.name == "truncated-gzip" {
				src = writeStaticLayout(t, c.layer)
			} else {
				src = writeLayout(t, "h", good, c.layer)
			}
			if c.mod != nil {
				c.mod(src)
			}
			out := t.TempDir()
			path := filepath.Join(out, "disk.qcow2")
			r := runImgfab(t, nil, "build", "oci:"+src, "-o", path)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("message lacks %q: %s", w, r.stderr)
				}
			}
			ents, _ := os.ReadDir(out)
			if len(ents) != 0 {
				t.Errorf("left files in the output directory: %v", ents)
			}
		})
	}
}

// writeStaticLayout writes a layout whose second layer is the given blob with a matching digest,
// so only its decompression can fail.
func writeStaticLayout(t *testing.T, blob []byte) string {
	good, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz(tarBytes(t, bootEntries())))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return writeLayoutLayers(t, "h", good, static.NewLayer(blob, types.OCILayer))
}

func corruptBiggestBlob(t *testing.T, dir string) {
	blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	var biggest string
	var size int64
	for _, b := range blobs {
		st, _ := os.Stat(b)
		if st.Size() > size {
			biggest, size = b, st.Size()
		}
	}
	data, _ := os.ReadFile(biggest)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(biggest, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSizeTooSmall: an image bigger than --size fails with the numbers and leaves nothing.
func TestSizeTooSmall(t *testing.T) {
	big := make([]byte, 0, 6<<20)
	for i := 0; len(big) < 6<<20; i++ {
		big = append(big, byte(i*7919>>3)) // not all zero: zero blocks would become holes
	}
	src := writeLayout(t, "s", gz(tarBytes(t, append(bootEntries(), reg("big", string(big), 0o644)))))
	out := t.TempDir()
	path := filepath.Join(out, "d.raw")
	r := runImgfab(t, nil, "build", "--size", "4MiB", "--esp-size", "1MiB", "oci:"+src, "-o", path)
	if r.code != 1 || !strings.Contains(r.stderr, "filesystem full") || !strings.Contains(r.stderr, "--size 4 MiB is too small") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// TestMissingKernel: an image without a kernel fails naming the places looked at.
func TestMissingKernel(t *testing.T) {
	src := writeLayout(t, "k", gz(tarBytes(t, []ent{reg("etc/hostname", "x\n", 0o644)})))
	out := t.TempDir()
	r := runImgfab(t, nil, "build", "oci:"+src, "-o", filepath.Join(out, "d.qcow2"))
	if r.code != 1 || !strings.Contains(r.stderr, "/boot/vmlinuz-*") || !strings.Contains(r.stderr, "/usr/lib/modules/*/vmlinuz") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// TestStdout: -o - streams the same bytes a file output holds; it needs --format.
func TestStdout(t *testing.T) {
	src := writeLayout(t, "o", gz(tarBytes(t, contentTree())))
	out := t.TempDir()
	res := build(t, "oci:"+src, "-o", filepath.Join(out, "d.raw"), "-o", filepath.Join(out, "d.qcow2"))
	for i, format := range []string{"raw", "qcow2"} {
		r := runImgfab(t, nil, "build", "--format", format, "oci:"+src, "-o", "-")
		if r.code != 0 {
			t.Fatalf("%s to stdout: exit %d\n%s", format, r.code, r.stderr)
		}
		sum := sha256.Sum256([]byte(r.stdout))
		if got := hex.EncodeToString(sum[:]); got != res.Outputs[i].SHA256 {
			t.Errorf("%s: stdout sha256 %s, file %s", format, got, res.Outputs[i].SHA256)
		}
		if !strings.Contains(r.stderr, hex.EncodeToString(sum[:])) {
			t.Errorf("%s: stderr does not report the stream's sha256: %s", format, r.stderr)
		}
	}
	if r := runImgfab(t, nil, "build", "oci:"+src, "-o", "-"); r.code != 2 || !strings.Contains(r.stderr, "needs --format") {
		t.Errorf("-o - without --format: exit %d %s", r.code, r.stderr)
	}
}
