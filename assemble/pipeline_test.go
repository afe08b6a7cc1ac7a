package assemble_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

// TestBuildContent builds a synthetic image through the whole pipeline and checks the written ext4
// against the source tar with debugfs, plus every structural oracle.
func TestBuildContent(t *testing.T) {
	debugfs := testtool.Need(t, "debugfs", "e2fsprogs")
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	src := testimage.WriteLayout(t, "content", testimage.GzipTar(t, testimage.ContentTree()))
	out := t.TempDir()
	raw, qcow := filepath.Join(out, "disk.raw"), filepath.Join(out, "disk.qcow2")
	p := plan("oci:"+src+":content", raw, qcow)
	p.Cmdline = "console=ttyS0"
	res := run(t, p)
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
	fsimg := testtool.Extract(t, raw, root.Offset, root.Size)
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

// TestQcow2InPlace (issue 17): a build whose first output is an uncompressed qcow2 writes the disk
// straight into it (diskfmt.Qcow2Sink) and makes the other outputs from that. The qcow2 passes
// qemu-img check and holds the same guest as the raw beside it, which passes every oracle; the
// Result's sums are the files'; a second build gives the same bytes.
func TestQcow2InPlace(t *testing.T) {
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	src := testimage.WriteLayout(t, "content", testimage.GzipTar(t, testimage.ContentTree()))
	var first []string
	for pass := range 2 {
		out := t.TempDir()
		qcow, raw := filepath.Join(out, "disk.qcow2"), filepath.Join(out, "disk.raw")
		p := plan("oci:"+src+":content", qcow, raw)
		res := run(t, p)
		checkOracles(t, raw, res)
		if o, err := exec.Command(qemuImg, "check", qcow).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check: %v\n%s", err, o)
		}
		if o, err := exec.Command(qemuImg, "compare", "-f", "qcow2", "-F", "raw", qcow, raw).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare: %v\n%s", err, o)
		}
		var sums []string
		for i, path := range []string{qcow, raw} {
			sum := testtool.FileSum(t, path)
			if res.Outputs[i].SHA256 != sum {
				t.Errorf("%s: result sha256 %s, file %s", path, res.Outputs[i].SHA256, sum)
			}
			sums = append(sums, sum)
		}
		if pass == 0 {
			first = sums
		} else if !slices.Equal(sums, first) {
			t.Errorf("second build: %v, first %v", sums, first)
		}
	}
}

// TestReproducible builds the same input twice in different directories: same bytes.
func TestReproducible(t *testing.T) {
	src := testimage.WriteLayout(t, "r", testimage.GzipTar(t, testimage.ContentTree()))
	var sums [2][2]string
	for i := range sums {
		out := t.TempDir()
		res := run(t, plan("oci:"+src, filepath.Join(out, "d.raw"), filepath.Join(out, "d.qcow2")))
		sums[i] = [2]string{res.Outputs[0].SHA256, res.Outputs[1].SHA256}
		if got := testtool.FileSum(t, filepath.Join(out, "d.raw")); got != res.Outputs[0].SHA256 {
			t.Fatalf("Result sha256 %s, file has %s", res.Outputs[0].SHA256, got)
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %v vs %v", sums[0], sums[1])
	}
	// A different source date epoch changes the bytes (the epoch reaches the output).
	out := t.TempDir()
	p := plan("oci:"+src, filepath.Join(out, "d.raw"))
	p.SourceDateEpoch = epoch(1700000001)
	res := run(t, p)
	if res.Outputs[0].SHA256 == sums[0][0] {
		t.Fatal("SourceDateEpoch did not change the output")
	}
}

// TestHostileLayers: each hostile input ends with an error naming the layer and entry, and nothing
// at the output path (nor any temporary file beside it, in TMPDIR, HOME or the working directory).
func TestHostileLayers(t *testing.T) {
	good := testimage.GzipTar(t, testimage.BootEntries())
	full := testimage.GzipTar(t, append(testimage.BootEntries(), testimage.Reg("big", strings.Repeat("x", 1<<20), 0o644)))
	cases := []struct {
		name  string
		layer []byte
		mod   func(dir string) // damages the layout after writing
		want  []string
	}{
		{"dotdot", testimage.GzipTar(t, []testimage.Entry{testimage.Reg("../../etc/evil", "x", 0o644)}), nil, []string{"../../etc/evil"}},
		{"absolute-symlink-write-through", testimage.GzipTar(t, []testimage.Entry{testimage.Symlink("etc", "/etc"), testimage.Reg("etc/passwd", "evil", 0o644)}), nil,
			[]string{"etc/passwd"}},
		{"hardlink-outside", testimage.GzipTar(t, []testimage.Entry{testimage.Hardlink("shadow", "../../../etc/shadow")}), nil, []string{"shadow"}},
		{"truncated-gzip", full[:len(full)/2], nil, []string{"sha256:"}},
		{"digest-mismatch", good, func(dir string) { corruptBiggestBlob(t, dir) }, []string{"sha256:", "digest"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var src string
			if c.name == "truncated-gzip" {
				src = writeStaticLayout(t, c.layer)
			} else {
				src = testimage.WriteLayout(t, "h", good, c.layer)
			}
			if c.mod != nil {
				c.mod(src)
			}
			base := t.TempDir()
			out := filepath.Join(base, "out")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			checkEmpty := sandbox(t, base)
			msg := runErr(t, plan("oci:"+src, filepath.Join(out, "disk.qcow2")))
			if !strings.HasPrefix(msg, "build: ") {
				t.Errorf("message does not name the step (build: …): %s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
			emptyDir(t, out)
			checkEmpty()
		})
	}
}

// TestSizeTooSmall: an image bigger than Size fails with the numbers and leaves nothing.
func TestSizeTooSmall(t *testing.T) {
	big := make([]byte, 0, 6<<20)
	for i := 0; len(big) < 6<<20; i++ {
		big = append(big, byte(i*7919>>3)) // not all zero: zero blocks would become holes
	}
	src := testimage.WriteLayout(t, "s", testimage.GzipTar(t, append(testimage.BootEntries(), testimage.Reg("big", string(big), 0o644))))
	out := t.TempDir()
	p := plan("oci:"+src, filepath.Join(out, "d.raw"))
	p.Size, p.ESPSize = 4<<20, 1<<20 // --size 4MiB --esp-size 1MiB
	_, err := assemble.Run(t.Context(), p)
	if err == nil || !strings.Contains(err.Error(), "filesystem full") || !strings.Contains(err.Error(), "--size 4 MiB is too small") {
		t.Fatalf("error: %v", err)
	}
	if !errors.Is(err, ext4.ErrFull) {
		t.Errorf("error does not wrap ext4.ErrFull: %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// TestMissingKernel: an image without a kernel fails naming the places looked at.
func TestMissingKernel(t *testing.T) {
	src := testimage.WriteLayout(t, "k", testimage.GzipTar(t, []testimage.Entry{testimage.Reg("etc/hostname", "x\n", 0o644)}))
	out := t.TempDir()
	// The VHD and the second raw are written as the disk is (mirror.go): they go too.
	msg := runErr(t, plan("oci:"+src, filepath.Join(out, "d.qcow2"), filepath.Join(out, "d.vhd"), filepath.Join(out, "d.2.raw")))
	if !strings.Contains(msg, "/boot/vmlinuz-*") || !strings.Contains(msg, "/usr/lib/modules/*/vmlinuz") {
		t.Fatalf("error: %s", msg)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// TestSizeMoreThanFormatHolds: a Size the output format cannot hold fails before any work, naming
// the output.
func TestSizeMoreThanFormatHolds(t *testing.T) {
	src := testimage.WriteLayout(t, "n", testimage.GzipTar(t, testimage.BootEntries()))
	out := t.TempDir()
	p := plan("oci:"+src, filepath.Join(out, "d.vhd"))
	p.Size = 3 << 40 // --size 3TiB
	if msg := runErr(t, p); !strings.Contains(msg, "d.vhd: --size 3145728 MiB is more than vhd holds (2088960 MiB)") {
		t.Errorf("Size 3 TiB to a VHD: %s", msg)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// TestEarlyEpochClampedOnESP: an epoch before 1980 (SourceDateEpoch 0, or an image created at Go's
// zero time) dates the ESP's files 1980-01-01, the earliest FAT holds (was 2098, wrapped); the
// image's created time before 1970 is clamped to 0 with a warning in the Result.
func TestEarlyEpochClampedOnESP(t *testing.T) {
	mdir := testtool.Need(t, "mdir", "mtools")
	layer := testimage.Layer(t, testimage.GzipTar(t, testimage.BootEntries()))
	zero := testimage.WriteLayoutCreated(t, "z", time.Time{}.Add(time.Second), layer) // 0001-01-01T00:00:01Z
	epoch0 := testimage.WriteLayout(t, "e", testimage.GzipTar(t, testimage.BootEntries()))
	for _, c := range []struct {
		name, src string
		epoch     *int64
		warn      bool
	}{
		{"created-year-1", "oci:" + zero, nil, true},
		{"source-date-epoch-0", "oci:" + epoch0, epoch(0), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "d.raw")
			p := plan(c.src, disk)
			p.SourceDateEpoch = c.epoch
			res := run(t, p)
			got := false
			for _, w := range res.Warnings {
				got = got || strings.Contains(w, "image config: created 0001-01-01T00:00:01Z is before 1970")
			}
			if got != c.warn {
				t.Errorf("warning in the Result: %v, want %v: %q", got, c.warn, res.Warnings)
			}
			if res.Epoch != 0 {
				t.Errorf("Result epoch %d, want 0", res.Epoch)
			}
			out, err := exec.Command(mdir, "-i", disk+"@@1M", "::/").CombinedOutput()
			if err != nil {
				t.Fatalf("mdir: %v\n%s", err, out)
			}
			lines := 0
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "<DIR>") {
					lines++
					if !strings.Contains(l, "1980-01-01") {
						t.Errorf("ESP entry not dated 1980-01-01: %q", l)
					}
				}
			}
			if lines == 0 {
				t.Errorf("no directories listed on the ESP:\n%s", out)
			}
		})
	}
}

// TestFailedOutputLeavesNone (issue 17): outputs are written side by side and committed only once
// all of them are written, so one that fails (here the stream to a writer that breaks after
// 1 MiB) leaves none of the others behind, and the error names it.
func TestFailedOutputLeavesNone(t *testing.T) {
	src := testimage.WriteLayout(t, "f", testimage.GzipTar(t, testimage.BootEntries()))
	out := t.TempDir()
	p := plan("oci:"+src, filepath.Join(out, "d.raw"), filepath.Join(out, "d.qcow2"), "-", filepath.Join(out, "d.vhd"))
	p.Outputs[2].Format = "vhd"
	p.Stdout = &breakingWriter{left: 1 << 20}
	msg := runErr(t, p)
	if !strings.Contains(msg, "writing vhd to stdout") || !strings.Contains(msg, errBroken.Error()) {
		t.Errorf("error: %s", msg)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

var errBroken = errors.New("pipe broke after 1 MiB")

// breakingWriter takes left bytes, then fails.
type breakingWriter struct{ left int }

func (w *breakingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errBroken
	}
	w.left -= len(p)
	return len(p), nil
}
