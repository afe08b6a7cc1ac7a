package assemble_test

// Helpers of the pipeline tests: synthetic OCI layouts, the cached fixtures, assemble.Run with the
// options `imgfab build` gives by default, and the structural oracles (sgdisk, fsck.vfat, e2fsck).
// The images are internal/testimage's, as cmd/imgfab's tests build them, so both packages' tests
// build the same inputs; the oracles are internal/testtool's.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/internal/testtool"
)

// plan is the Plan `imgfab build --json SOURCE -o OUT…` gives assemble.Run when no other flag is
// set (cmd/imgfab/build.go: --platform linux/amd64, --esp-size 256MiB, --boot auto, --table gpt;
// --json computes the outputs' sha256).
// The options shape the seed of every identifier, so the defaults are the CLI's, not Plan's zero.
func plan(source string, outputs ...string) assemble.Plan {
	p := assemble.Plan{
		Source:   source,
		Platform: "linux/amd64",
		ESPSize:  256 << 20,
		Boot:     assemble.BootOptions{Mode: "auto", Table: "gpt"},
		Checksum: true,
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

// checkOracles is testtool.CheckDisk on a raw disk built by assemble.Run.
func checkOracles(t *testing.T, raw string, res assemble.Result) {
	t.Helper()
	parts := make([]testtool.Part, len(res.Partitions))
	for i, p := range res.Partitions {
		parts[i] = testtool.Part{Name: p.Name, Offset: p.Offset, Size: p.Size}
	}
	testtool.CheckDisk(t, raw, parts)
}

// emptyDir fails when dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left files in the output directory: %v", ents)
	}
}

// writeStaticLayout writes a layout whose second layer is the given blob with a matching digest,
// so only its decompression can fail.
func writeStaticLayout(t *testing.T, blob []byte) string {
	good := testimage.Layer(t, testimage.GzipTar(t, testimage.BootEntries()))
	return testimage.WriteLayoutLayers(t, "h", good, static.NewLayer(blob, types.OCILayer))
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
