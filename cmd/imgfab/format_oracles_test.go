package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// checkFormat applies to out, written from raw in format, the checks of the tools each platform's
// users trust (issue 3, "Done when" 1): qemu-img check where qemu has one (qcow2, VMDK); for the
// VMDK also vmdkinfo and its footer and end-of-stream marker; for the VHDs vhdiinfo, and the fixed
// VHD's size (whole MiB + the 512-byte footer, as Azure requires); for the GCE tarball GNU tar
// listing only disk.raw, a whole number of GiB, holding the raw padded with zeros; for compressed
// raw the zstd/xz/gzip CLIs giving back the raw. The qemu-img compare against raw is roundTrip's.
func checkFormat(t *testing.T, raw, out, format string) {
	t.Helper()
	fi, err := os.Stat(raw)
	if err != nil {
		t.Fatal(err)
	}
	rawSize := fi.Size()
	run := func(name, pkg string, args ...string) string {
		t.Helper()
		o, err := exec.Command(testtool.Need(t, name, pkg), args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, o)
		}
		return string(o)
	}
	switch format {
	case "qcow2":
		run("qemu-img", "qemu-utils", "check", "-q", "-f", "qcow2", out)
	case "vmdk":
		run("qemu-img", "qemu-utils", "check", "-q", "-f", "vmdk", out)
		run("vmdkinfo", "libvmdk-utils", out)
		checkVMDKTail(t, out)
	case "vhd", "vhd-dynamic":
		run("vhdiinfo", "libvhdi-utils", out)
		if format == "vhd" {
			ofi, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := (rawSize+(1<<20)-1)>>20<<20 + 512; ofi.Size() != want {
				t.Errorf("fixed VHD is %d bytes, want %d (the raw's %d rounded up to a MiB, + 512)", ofi.Size(), want, rawSize)
			}
		}
	case "gce":
		list := strings.Split(strings.TrimSpace(run("tar", "tar", "-tvzf", out)), "\n")
		f := strings.Fields(list[0])
		if len(list) != 1 || len(f) < 6 || f[len(f)-1] != "disk.raw" {
			t.Fatalf("GCE tarball lists %q, want only disk.raw", list)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size%(1<<30) != 0 || size < rawSize || size-rawSize >= 1<<30 {
			t.Errorf("disk.raw is %s bytes, want the raw's %d rounded up to a whole GiB", f[2], rawSize)
		}
		if got, want := pipeSum(t, "tar", "-xOzf", out), paddedSum(t, raw, size); got != want {
			t.Errorf("disk.raw differs from the raw padded with zeros (sha256 %s, want %s)", got, want)
		}
	case "raw.zst", "raw.xz", "raw.gz":
		tool := map[string]string{"raw.zst": "zstd", "raw.xz": "xz", "raw.gz": "gzip"}[format]
		testtool.Need(t, tool, map[string]string{"zstd": "zstd", "xz": "xz-utils", "gzip": "gzip"}[tool])
		if got, want := pipeSum(t, tool, "-dc", out), testtool.FileSum(t, raw); got != want {
			t.Errorf("%s -dc gives sha256 %s, want the raw's %s", tool, got, want)
		}
	case "raw":
		if got, want := testtool.FileSum(t, out), testtool.FileSum(t, raw); got != want {
			t.Errorf("raw output sha256 %s, want %s", got, want)
		}
	default:
		t.Fatalf("no checks for format %q: add them", format)
	}
}

// pipeSum runs a command and returns the hex sha256 of its standard output.
func pipeSum(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, stdout); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// paddedSum is the hex sha256 of the file at path followed by zeros up to size bytes.
func paddedSum(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(h, zeroReader{}, size-n); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// checkVMDKTail reads a stream-optimized VMDK's last three sectors (VMware "Virtual Disk Format
// 5.0", "Stream-Optimized Compressed Sparse Extents"): the footer marker (type 3), the footer (a
// header, magic "KDMV", with the real gdOffset), the end-of-stream marker (an all-zero sector).
func checkVMDKTail(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 4*512 || len(b)%512 != 0 {
		t.Fatalf("VMDK is %d bytes", len(b))
	}
	le := binary.LittleEndian
	marker, footer, eos := b[len(b)-1536:len(b)-1024], b[len(b)-1024:len(b)-512], b[len(b)-512:]
	if le.Uint64(marker) != 1 || le.Uint32(marker[12:]) != 3 {
		t.Errorf("footer marker: % x", marker[:16])
	}
	if string(footer[:4]) != "KDMV" || le.Uint64(footer[56:]) == ^uint64(0) || int(le.Uint64(footer[56:]))*512 >= len(b) {
		t.Errorf("footer: magic %q gdOffset %#x", footer[:4], le.Uint64(footer[56:]))
	}
	if string(b[:4]) != "KDMV" || !bytes.Equal(b[4:56], footer[4:56]) {
		t.Errorf("footer differs from the head header before gdOffset")
	}
	if !bytes.Equal(eos, make([]byte, 512)) {
		t.Errorf("last sector is not the end-of-stream marker")
	}
}

// TestConvertDebianRoundTrip: the debootstrapped Debian 12 image, raw → each format → raw is
// byte-identical, each format passes qemu-img compare and its platform's checks (checkFormat).
// raw.xz is left out here: the xz encoder takes minutes on 660 MiB of data, and its writer is the
// same code as raw.zst's and raw.gz's, checked on the demo and the patterned disk.
func TestConvertDebianRoundTrip(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow (Debian fixture, every format of a 1 GiB disk): IMGFAB_SLOW=1 or make test")
	}
	src := fixture(t, "debian/oci", "mkdebian.sh")
	raw := filepath.Join(t.TempDir(), "debian.raw")
	build(t, "oci:"+src+":debian", "--cmdline", "console=ttyS0", "-o", raw)
	roundTrip(t, raw, "raw.xz")
}

// TestConvertReproducible (issue 3, "Done when" 3): the formats only convert makes from a built
// raw (vhd-dynamic, compressed qcow2) have the same sha256 in three runs — in two directories, and
// once with GOMAXPROCS=1. The demo built into every format, three times, the same way:
// assemble TestReproducibleEveryFormat.
func TestConvertReproducible(t *testing.T) {
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	raw := filepath.Join(t.TempDir(), "d.raw")
	build(t, src, "--cmdline", "console=ttyS0", "-o", raw)
	conv := [][]string{{"--format", "vhd-dynamic"}, {"--compress", "deflate"}, {"--compress", "zstd"}}
	var first []string
	for i, env := range [][]string{nil, {"GOMAXPROCS=1"}, nil} {
		dir := t.TempDir()
		var sums []string
		for j, c := range conv {
			out := filepath.Join(dir, "c"+strconv.Itoa(j)+".img")
			if c[0] == "--compress" {
				out = filepath.Join(dir, "c"+strconv.Itoa(j)+".qcow2")
			}
			if r := runImgfab(t, env, append([]string{"convert", raw, out}, c...)...); r.code != 0 {
				t.Fatalf("convert %v %v: exit %d\n%s", c, env, r.code, r.stderr)
			}
			sums = append(sums, testtool.FileSum(t, out))
		}
		if i == 0 {
			first = sums
			continue
		}
		for k, s := range sums {
			if s != first[k] {
				t.Errorf("run %d (env %v): %s has sha256 %s, first run %s", i, env, strings.Join(conv[k], " "), s, first[k])
			}
		}
	}
}
