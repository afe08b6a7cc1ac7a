package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testimage"
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
		{[]string{"build", "--offline", "oci:x", "-o", "a.raw"}, 2, "--offline goes with -f FILE"},
		{[]string{"build", "--cache", "/tmp/c", "oci:x", "-o", "a.raw"}, 2, "--cache goes with -f FILE"},
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

// The pipeline's own behaviour (the written tree, reproducibility, hostile layers, a --size too
// small, a missing kernel, the hostile corpus, registry faults) is tested in-process in the
// assemble package. The tests here are the CLI's: flags → Plan, --json, exit codes and messages,
// stdout, files on disk.

// TestBuildFlags: the flags reach assemble.Run as the Plan they name, the build's defaults are the
// CLI's, and --json prints the Result with its documented keys: the binary and assemble.Run given
// the same Plan make the same bytes and the same Result.
func TestBuildFlags(t *testing.T) {
	src := testimage.WriteLayout(t, "f", testimage.GzipTar(t, testimage.ContentTree()))
	overlay := t.TempDir()
	if err := os.WriteFile(filepath.Join(overlay, "overlay.txt"), []byte("from --layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cliDir, libDir := t.TempDir(), t.TempDir()
	r := runImgfab(t, []string{"SOURCE_DATE_EPOCH=1"}, "build", "--json", "oci:"+src+":f", "--cmdline", "console=ttyS0 quiet",
		"--size", "63.5MiB", "--esp-size", "8MiB", "--source-date-epoch", "1700000001", "--no-journal", "--layer", overlay,
		"--platform", "linux/amd64", "--boot", "uefi", "--table", "gpt",
		"-o", filepath.Join(cliDir, "d.raw"), "-o", filepath.Join(cliDir, "d.qcow2"))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var keys map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"image", "image_digest", "outputs", "virtual_size", "disk_guid", "partitions", "kernel", "initrd",
		"kernel_version", "cmdline", "loader", "boot", "source_date_epoch", "rootfs"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("--json lacks %q: %s", k, r.stdout)
		}
	}
	if outs, _ := keys["outputs"].([]any); len(outs) != 2 {
		t.Errorf("--json outputs: %v", keys["outputs"])
	} else if o, _ := outs[0].(map[string]any); o["output"] != filepath.Join(cliDir, "d.raw") || o["format"] != "raw" ||
		o["sha256"] == nil || o["bytes"] == nil {
		t.Errorf("--json outputs[0]: %v", o)
	}
	var cli assemble.Result
	if err := json.Unmarshal([]byte(r.stdout), &cli); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	e := int64(1700000001)
	lib, err := assemble.Run(t.Context(), assemble.Plan{
		Source: "oci:" + src + ":f", Platform: "linux/amd64", ExtraLayers: []string{overlay}, Cmdline: "console=ttyS0 quiet",
		Size: 64 << 20, ESPSize: 8 << 20, SourceDateEpoch: &e, NoJournal: true, Checksum: true, // --json
		Boot:    assemble.BootOptions{Mode: "uefi", Table: "gpt"},
		Outputs: []assemble.Output{{Path: filepath.Join(libDir, "d.raw")}, {Path: filepath.Join(libDir, "d.qcow2")}},
	})
	if err != nil {
		t.Fatalf("assemble.Run: %v", err)
	}
	for i := range lib.Outputs {
		lib.Outputs[i].Path = cli.Outputs[i].Path
	}
	if !reflect.DeepEqual(cli, lib) {
		t.Errorf("the CLI's result differs from assemble.Run's with the same Plan:\nCLI %+v\nlib %+v", cli, lib)
	}
	if cli.Epoch != 1700000001 || !strings.HasSuffix(cli.Cmdline, " rw console=ttyS0 quiet") || cli.VirtualSize != 64<<20 ||
		cli.Partitions[0].Size != 8<<20 || cli.Loader != "systemd-boot" {
		t.Errorf("flags not applied: epoch %d, cmdline %q, size %d, ESP %d, loader %q", cli.Epoch, cli.Cmdline, cli.VirtualSize,
			cli.Partitions[0].Size, cli.Loader)
	}
	// With no flag but -o, the CLI's defaults: the Plan cmd/imgfab/build.go documents.
	def := build(t, "oci:"+src+":f", "--source-date-epoch", "1700000001", "-o", filepath.Join(cliDir, "def.raw"))
	lib, err = assemble.Run(t.Context(), assemble.Plan{Source: "oci:" + src + ":f", Platform: "linux/amd64", ESPSize: 256 << 20,
		SourceDateEpoch: &e, Boot: assemble.BootOptions{Mode: "auto", Table: "gpt"}, Checksum: true,
		Outputs: []assemble.Output{{Path: filepath.Join(libDir, "def.raw")}}})
	if err != nil {
		t.Fatalf("assemble.Run: %v", err)
	}
	if def.Outputs[0].SHA256 != lib.Outputs[0].SHA256 {
		t.Errorf("default flags: sha256 %s, assemble.Run with the documented defaults %s", def.Outputs[0].SHA256, lib.Outputs[0].SHA256)
	}
}

// TestBuildPipelineError: a build that fails in the pipeline exits 1 with one "imgfab build: "
// prefix and the pipeline's message, and leaves nothing: no output, no temporary file, nothing in
// the working directory, TMPDIR or HOME.
func TestBuildPipelineError(t *testing.T) {
	good := testimage.GzipTar(t, testimage.BootEntries())
	big := make([]byte, 0, 6<<20)
	for i := 0; len(big) < 6<<20; i++ {
		big = append(big, byte(i*7919>>3)) // not all zero: zero blocks would become holes
	}
	for _, c := range []struct {
		name  string
		src   string
		flags []string
		want  []string
	}{
		{"hostile-entry", testimage.WriteLayout(t, "h", good, testimage.GzipTar(t, []testimage.Entry{testimage.Reg("../../etc/evil", "x", 0o644)})), nil,
			[]string{"../../etc/evil"}},
		{"size-too-small", testimage.WriteLayout(t, "s", testimage.GzipTar(t, append(testimage.BootEntries(), testimage.Reg("big", string(big), 0o644)))),
			[]string{"--size", "4MiB", "--esp-size", "1MiB"}, []string{"filesystem full", "--size 4 MiB is too small"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			out := filepath.Join(base, "out")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"build"}, c.flags...), "oci:"+c.src, "-o", filepath.Join(out, "disk.qcow2"))
			r, checkEmpty := runSandboxed(t, base, args...)
			checkEmpty()
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "imgfab build: ") || strings.HasPrefix(r.stderr, "imgfab build: build: ") {
				t.Errorf("stderr does not start with one \"imgfab build: \": %s", r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("message lacks %q: %s", w, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout: %q, want nothing", r.stdout)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("left files in the output directory: %v", ents)
			}
		})
	}
}

// TestStdout: -o - streams the same bytes a file output holds; it needs --format; with
// --checksum the stream's sha256 goes to stderr.
func TestStdout(t *testing.T) {
	src := testimage.WriteLayout(t, "o", testimage.GzipTar(t, testimage.ContentTree()))
	out := t.TempDir()
	res := build(t, "oci:"+src, "-o", filepath.Join(out, "d.raw"), "-o", filepath.Join(out, "d.qcow2"))
	for i, format := range []string{"raw", "qcow2"} {
		r := runImgfab(t, nil, "build", "--checksum", "--format", format, "oci:"+src, "-o", "-")
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

// TestBuildChecksum: a plain build prints each output without a sha256 (issue 17: the sha256 of a
// disk written in place is a read-back after the build); --checksum prints the one sha256sum
// gives, for an output written in place (raw) and one written from the disk (vhd); the bytes are
// the same either way.
func TestBuildChecksum(t *testing.T) {
	src := "oci:" + testimage.WriteLayout(t, "f", testimage.GzipTar(t, testimage.ContentTree())) + ":f"
	plainDir, sumDir := t.TempDir(), t.TempDir()
	args := func(dir string) []string {
		return []string{"build", src, "--source-date-epoch", "1700000001", "--esp-size", "8MiB", "--size", "64MiB",
			"-o", filepath.Join(dir, "d.raw"), "-o", filepath.Join(dir, "d.vhd")}
	}
	plain := runImgfab(t, nil, args(plainDir)...)
	withSum := runImgfab(t, nil, append(args(sumDir), "--checksum")...)
	if plain.code != 0 || withSum.code != 0 {
		t.Fatalf("exit %d / %d\n%s%s", plain.code, withSum.code, plain.stderr, withSum.stderr)
	}
	if strings.Contains(plain.stdout, "sha256") || strings.Count(plain.stdout, " MiB virtual\n") != 2 {
		t.Errorf("plain build printed:\n%s", plain.stdout)
	}
	for _, name := range []string{"d.raw", "d.vhd"} {
		b, err := os.ReadFile(filepath.Join(sumDir, name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		want := filepath.Join(sumDir, name) + ": " + strings.TrimPrefix(filepath.Ext(name), ".") + ", 64 MiB virtual, sha256 " + hex.EncodeToString(sum[:]) + "\n"
		if !strings.Contains(withSum.stdout, want) {
			t.Errorf("--checksum printed:\n%s\nwant the line %q", withSum.stdout, want)
		}
		p, err := os.ReadFile(filepath.Join(plainDir, name))
		if err != nil || !reflect.DeepEqual(p, b) {
			t.Errorf("%s: the bytes differ with and without --checksum (%v)", name, err)
		}
	}
}
