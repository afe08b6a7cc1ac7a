package assemble_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/testdata/hostile"
)

// listing is every path under root with its type, size, mode and mtime.
func listing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, fmt.Sprintf("%s %v %d %d", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", root, err)
	}
	sort.Strings(out)
	return out
}

// TestHostileCorpus runs every case of testdata/hostile through assemble.Run: the outcome its table
// says (an error naming the layer and entry, or an image that passes every oracle and holds what
// the case is about), and nothing created anywhere but the output: the working directory, TMPDIR and
// HOME are fresh empty directories that must stay empty, and the source must not change. Each case
// runs again as a read-only root (--rootfs erofs --verity, issue 15): the same outcome, with the
// read-only disk's oracles (the debugfs checks are ext4's and are left out).
func TestHostileCorpus(t *testing.T) {
	for _, ro := range []bool{false, true} {
		name := "ext4"
		if ro {
			name = "erofs-verity"
		}
		t.Run(name, func(t *testing.T) { hostileCorpus(t, ro) })
	}
}

func hostileCorpus(t *testing.T, readOnly bool) {
	debugfs := testtool.Need(t, "debugfs", "e2fsprogs")
	cases := hostile.Cases()
	if len(cases) < 30 {
		t.Fatalf("corpus has %d cases, want at least 30", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.Name] {
			t.Fatalf("case %s twice", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			base := t.TempDir()
			src, out := filepath.Join(base, "src"), filepath.Join(base, "out")
			for _, d := range []string{src, out} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			source, layers, err := c.Make(src)
			if err != nil {
				t.Fatalf("making the input: %v", err)
			}
			before := listing(t, src)
			raw := filepath.Join(out, "disk.raw")
			p := plan(source, raw)
			applyArgs(t, &p, c.Args)
			if readOnly {
				p.RootFS, p.Verity = "erofs", true
			}
			checkEmpty := sandbox(t, base)
			res, err := assemble.Run(t.Context(), p)
			checkEmpty()
			if after := listing(t, src); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("the source changed:\nbefore %v\nafter  %v", before, after)
			}
			outFiles := listing(t, out)
			if len(c.Err) > 0 {
				if err == nil {
					t.Fatalf("%s: built, want an error", c.What)
				}
				msg := err.Error()
				for _, w := range c.Err {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: message lacks %q:\n%s", c.What, w, msg)
					}
				}
				// A read-only disk whose --size cannot hold even /var is refused before any layer
				// is read: no layer to name.
				planLevel := readOnly && strings.HasPrefix(msg, "build: --size ")
				if c.Layer >= 0 && !planLevel && !strings.Contains(msg, "layer "+layers[c.Layer]) {
					t.Errorf("%s: message does not name layer %d (%s):\n%s", c.What, c.Layer, layers[c.Layer], msg)
				}
				if len(outFiles) != 1 { // "." only
					t.Errorf("%s: left %v in the output directory", c.What, outFiles[1:])
				}
				t.Logf("%s → %s", c.What, msg)
				return
			}
			if err != nil {
				t.Fatalf("%s: %v, want a build", c.What, err)
			}
			if len(outFiles) != 2 || !strings.HasPrefix(outFiles[1], "disk.raw ") {
				t.Errorf("%s: output directory holds %v, want disk.raw only", c.What, outFiles)
			}
			if readOnly {
				if c.Name != "names-deep" {
					testtool.CheckReadOnlyDisk(t, raw, roParts(res), res.Verity.RootHash)
					return
				}
				// fsck.erofs overflows its stack on this tree: go-erofs walks it instead.
				testtool.CheckReadOnlyDiskDeep(t, raw, roParts(res), res.Verity.RootHash)
				rfs := openErofs(t, raw, res.Partitions[1])
				n := 0
				if err := fs.WalkDir(rfs, ".", func(p string, d fs.DirEntry, err error) error {
					if err == nil && d.Type().IsRegular() {
						n++
					}
					return err
				}); err != nil || n < 2000 {
					t.Errorf("go-erofs walked %d files: %v", n, err)
				}
				if _, err := fs.Stat(rfs, "y"+strings.Repeat("/a", 2040)+"/1999"); err != nil {
					t.Errorf("the deepest file: %v", err)
				}
				return
			}
			checkOracles(t, raw, res)
			root := res.Partitions[1]
			fsimg := testtool.Extract(t, raw, root.Offset, root.Size)
			for _, ck := range c.Checks {
				o, _ := exec.Command(debugfs, "-R", ck.Cmd, fsimg).CombinedOutput()
				if !strings.Contains(string(o), ck.Want) {
					t.Errorf("%s: debugfs %s: want %q in\n%s", c.What, ck.Cmd, ck.Want, o)
				}
			}
		})
	}
}

// TestRegistryFaultsBuild: a build from a loopback registry that breaks blob downloads off
// mid-stream and answers 503 gives the same disk as a fault-free build; one that always serves the
// wrong bytes for a layer fails naming the layer, and leaves nothing.
func TestRegistryFaultsBuild(t *testing.T) {
	fp := testimage.NewFaultyRegistry()
	srv := httptest.NewServer(fp)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	// A layer above 4 MiB is streamed, the small one is read whole: both retry paths run.
	big := []testimage.Entry{testimage.Reg("srv/noise", noiseString(5<<20), 0o644)}
	dir := testimage.WriteLayout(t, "f", testimage.GzipTar(t, testimage.BootEntries()), testimage.GzipTar(t, big))
	img := testimage.PushLayout(t, dir, host+"/imgfab/faults:1")
	ls, _ := img.Layers()
	bigDigest, _ := ls[1].Digest()
	out := t.TempDir()
	src := "docker://" + host + "/imgfab/faults:1"
	insecure := func(path string) (pl assemble.Plan) {
		pl = plan(src, path)
		pl.Insecure = true // --insecure
		return pl
	}
	clean := run(t, insecure(filepath.Join(out, "clean.raw")))

	fp.ResetHits()
	fp.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
		switch {
		case strings.Contains(r.URL.Path, "/blobs/") && hit == 1: // broken off half way
			testimage.DropAfterHalf(w, real)
		case hit == 2 || strings.Contains(r.URL.Path, "/manifests/") && hit == 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	faulty := run(t, insecure(filepath.Join(out, "faulty.raw")))
	if faulty.Outputs[0].SHA256 != clean.Outputs[0].SHA256 {
		t.Errorf("with faults sha256 %s, without %s", faulty.Outputs[0].SHA256, clean.Outputs[0].SHA256)
	}
	if n := fp.Hits()["GET /v2/imgfab/faults/blobs/"+bigDigest.String()]; n != 3 {
		t.Errorf("big layer blob fetched %d times, want 3 (broken, 503, good)", n)
	}

	fp.ResetHits()
	fp.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
		if !strings.HasSuffix(r.URL.Path, bigDigest.String()) {
			return false
		}
		b := bytes.Clone(real.Body.Bytes())
		b[5] ^= 0x55 // the gzip header's mtime: same length, decompresses the same, wrong digest
		w.WriteHeader(http.StatusOK)
		w.Write(b)
		return true
	})
	bad := t.TempDir()
	if msg := runErr(t, insecure(filepath.Join(bad, "d.raw"))); !strings.Contains(msg, "layer "+bigDigest.String()) || !strings.Contains(msg, "digest mismatch") {
		t.Errorf("wrong blob: %s", msg)
	}
	if ents, _ := os.ReadDir(bad); len(ents) != 0 {
		t.Errorf("wrong blob: left %v", ents)
	}
}

func noiseString(n int) string {
	b := make([]byte, n)
	x := uint32(3)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return string(b)
}
