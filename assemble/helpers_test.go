package assemble_test

// Helpers of the pipeline tests: synthetic OCI layouts, the cached fixtures, assemble.Run with the
// options `imgfab build` gives by default, and the structural oracles (sgdisk, fsck.vfat, e2fsck).
// The image helpers are the same as cmd/imgfab's (image_test.go), so both packages' tests build the
// same inputs.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
)

// plan is the Plan `imgfab build SOURCE -o OUT…` gives assemble.Run when no other flag is set
// (cmd/imgfab/build.go: --platform linux/amd64, --esp-size 256MiB, --boot auto, --table gpt).
// The options shape the seed of every identifier, so the defaults are the CLI's, not Plan's zero.
func plan(source string, outputs ...string) assemble.Plan {
	p := assemble.Plan{
		Source:   source,
		Platform: "linux/amd64",
		ESPSize:  256 << 20,
		Boot:     assemble.BootOptions{Mode: "auto", Table: "gpt"},
	}
	for _, o := range outputs {
		p.Outputs = append(p.Outputs, assemble.Output{Path: o})
	}
	return p
}

// epoch is a SourceDateEpoch value.
func epoch(e int64) *int64 { return &e }

// run is assemble.Run that must succeed.
func run(t testing.TB, p assemble.Plan) assemble.Result {
	t.Helper()
	res, err := assemble.Run(t.Context(), p)
	if err != nil {
		t.Fatalf("assemble.Run %s: %v", p.Source, err)
	}
	return res
}

// runErr is assemble.Run that must fail; it returns the error's text.
func runErr(t testing.TB, p assemble.Plan) string {
	t.Helper()
	_, err := assemble.Run(t.Context(), p)
	if err == nil {
		t.Fatalf("assemble.Run %s: no error", p.Source)
	}
	return err.Error()
}

// applyArgs sets on p the build flags a hostile case gives (hostile.Case.Args), as
// cmd/imgfab/build.go maps them. Only the flags the corpus uses are known: a new one fails here.
func applyArgs(t testing.TB, p *assemble.Plan, args []string) {
	t.Helper()
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			t.Fatalf("flag %s without a value", args[i])
		}
		switch flag, v := args[i], args[i+1]; flag {
		case "--size":
			p.Size = parseSize(t, v)
		case "--esp-size":
			p.ESPSize = parseSize(t, v)
		default:
			t.Fatalf("applyArgs: flag %s unknown here: map it to the Plan field cmd/imgfab/build.go sets", flag)
		}
	}
}

// parseSize reads N, NKiB, NMiB, NGiB or NTiB.
func parseSize(t testing.TB, s string) int64 {
	t.Helper()
	mult := int64(1)
	for i, suf := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if strings.HasSuffix(s, suf) {
			s, mult = strings.TrimSuffix(s, suf), 1<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return n * mult
}

// fixture is testtool.Fixture: the cached fixture's path; a missing one fails under CI and is
// skipped elsewhere, naming the script that makes it.
func fixture(t *testing.T, rel, script string) string {
	t.Helper()
	return testtool.Fixture(t, rel, script)
}

// sandbox makes the working directory, TMPDIR, HOME and XDG_CACHE_HOME fresh empty directories
// under base for the rest of the test, and returns a check that they are still empty.
func sandbox(t *testing.T, base string) func() {
	t.Helper()
	cwd, tmp, home := filepath.Join(base, "cwd"), filepath.Join(base, "tmp"), filepath.Join(base, "home")
	for _, d := range []string{cwd, tmp, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(cwd)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	return func() {
		t.Helper()
		for _, d := range []string{cwd, tmp, home} {
			if ents, _ := os.ReadDir(d); len(ents) != 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("the build created %v in %s", names, d)
			}
		}
	}
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extract copies [off, off+size) of a file into a new sparse file, for oracles that take a
// whole-file filesystem (e2fsck, fsck.vfat).
func extract(t testing.TB, path string, off, size int64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.img", off))
	cmd := exec.Command("dd", "if="+path, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes",
		fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", size), "conv=sparse", "status=none")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, o)
	}
	if err := os.Truncate(out, size); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOracles runs every structural oracle on a raw disk built by assemble.Run.
func checkOracles(t *testing.T, raw string, res assemble.Result) {
	t.Helper()
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	fsck := testtool.Need(t, "fsck.vfat", "dosfstools")
	sgdisk := testtool.Need(t, "sgdisk", "gdisk")
	if out, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	// ESP and root, plus the BIOS boot partition of a hybrid or BIOS image (no filesystem).
	if len(res.Partitions) < 2 || len(res.Partitions) > 3 || res.Partitions[0].Name != "esp" || res.Partitions[1].Name != "root-x86-64" ||
		len(res.Partitions) == 3 && res.Partitions[2].Name != "bios" {
		t.Fatalf("want esp, root-x86-64 [, bios], got %+v", res.Partitions)
	}
	esp, root := res.Partitions[0], res.Partitions[1]
	if out, err := exec.Command(fsck, "-n", extract(t, raw, esp.Offset, esp.Size)).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	out, err := exec.Command(e2fsck, "-fn", extract(t, raw, root.Offset, root.Size)).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	// EXT4.md §13.1: nothing but the pass lines and the summary.
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "e2fsck ") || strings.HasPrefix(line, "Pass ") || strings.Contains(line, " files (") && strings.HasSuffix(line, " blocks") {
			continue
		}
		t.Errorf("e2fsck -fn printed %q", line)
	}
}

// emptyDir fails when dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left files in the output directory: %v", ents)
	}
}

// ent is one tar entry of a synthetic layer.
type ent struct {
	hdr  tar.Header
	body string
}

func reg(name, body string, mode int64) ent {
	return ent{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(1600000000, 0)}, body}
}
func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: time.Unix(1600000000, 0)}}
}
func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(1600000000, 0)}}
}
func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: time.Unix(1600000000, 0)}}
}

// bootEntries is the minimum a tree needs for a build to succeed (a fake kernel and loader:
// enough for the filesystem checks, not for a boot).
func bootEntries() []ent {
	return []ent{
		dir("boot/", 0o755),
		reg("boot/vmlinuz-1.0", "not really a kernel", 0o644),
		reg("boot/initrd.img-1.0", "not really an initrd", 0o644),
		dir("usr/", 0o755), dir("usr/lib/", 0o755), dir("usr/lib/systemd/", 0o755), dir("usr/lib/systemd/boot/", 0o755),
		dir("usr/lib/systemd/boot/efi/", 0o755),
		reg("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "MZ not really systemd-boot", 0o644),
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

func tarBytes(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.Format == 0 && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// writeLayout writes an OCI layout holding one image made of the given layer blobs (already
// compressed as wanted) and returns its directory. tag is the ref.name annotation.
func writeLayout(t testing.TB, tag string, blobs ...[]byte) string {
	t.Helper()
	var ls []v1.Layer
	for _, b := range blobs {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return writeLayoutLayers(t, tag, ls...)
}

// writeLayoutLayers is writeLayout for ready layers.
func writeLayoutLayers(t testing.TB, tag string, ls ...v1.Layer) string {
	t.Helper()
	return writeLayoutCreated(t, tag, time.Unix(1650000000, 0), ls...)
}

// writeLayoutCreated is writeLayoutLayers with the config's created time.
func writeLayoutCreated(t testing.TB, tag string, created time.Time, ls ...v1.Layer) string {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range ls {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer})
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: created}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
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
