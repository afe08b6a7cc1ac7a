package inflate

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestOtherCompressors: streams made by the compressors layers are made with in the field — GNU
// gzip at each end of its range, pigz (independent 128 KiB blocks joined by empty stored blocks,
// --rsyncable, -i, and its zopfli mode -11) and zopfli itself — decode to the bytes
// klauspost's gzip gives, from real content: this test's own binary and the repository's Go
// sources.
func TestOtherCompressors(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	var src []byte
	files, _ := filepath.Glob("../../*/*.go")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	if len(bin) < 1<<20 || len(src) < 1<<20 {
		t.Fatalf("content: %d bytes of binary, %d of sources", len(bin), len(src))
	}
	mixed := append(append([]byte{}, bin[:min(len(bin), 3<<20)]...), src...)
	small := append(append([]byte{}, bin[:256<<10]...), src[:256<<10]...) // zopfli is slow
	gzip := testtool.Need(t, "gzip", "gzip")
	pigz := testtool.Need(t, "pigz", "pigz")
	zopfli := testtool.Need(t, "zopfli", "zopfli")
	for _, c := range []struct {
		name string
		in   []byte
		cmd  []string
	}{
		{"gzip-1", mixed, []string{gzip, "-1", "-c"}},
		{"gzip-9", mixed, []string{gzip, "-9", "-c"}},
		{"pigz", mixed, []string{pigz, "-p", "2", "-c"}},
		{"pigz-1-small-blocks", mixed, []string{pigz, "-1", "-b", "32", "-c"}},
		{"pigz-rsyncable", mixed, []string{pigz, "--rsyncable", "-c"}},
		{"pigz-independent", mixed, []string{pigz, "-i", "-c"}},
		{"pigz-11", small, []string{pigz, "-11", "-c"}},
		{"zopfli", small, []string{zopfli, "-c"}}, // reads a file, not stdin
	} {
		t.Run(c.name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "in")
			if err := os.WriteFile(in, c.in, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(c.cmd[0], append(c.cmd[1:], in)...)
			z, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %v", c.cmd, err)
			}
			if got := sameAsKlauspost(t, c.name, z, 0, 4093); !bytes.Equal(got, c.in) {
				t.Fatalf("%s: decodes to %d bytes, not the %d compressed", c.name, len(got), len(c.in))
			}
		})
	}
}
