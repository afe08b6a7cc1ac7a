package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func exampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	return files
}

// TestExamples: every file in examples/ parses, and its local sources point where they
// should (the test fixtures, when they have been built).
func TestExamples(t *testing.T) {
	for _, p := range exampleFiles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range f.Classes {
				dir, ok := strings.CutPrefix(c.FromAbs, "oci:")
				if !ok {
					continue
				}
				if i := strings.LastIndexByte(dir, ':'); i > strings.LastIndexByte(dir, '/') {
					dir = dir[:i]
				}
				if !strings.HasPrefix(dir, filepath.Join(f.Dir, "..", "testdata")) {
					continue
				}
				if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
					t.Logf("class %s: fixture %s not built (testdata/mk*.sh): %v", c.Name, dir, err)
				}
			}
		})
	}
	for _, want := range []string{"demo.yaml", "debian-server.yaml", "multi-target.yaml"} {
		if _, err := os.Stat(filepath.Join("../examples", want)); err != nil {
			t.Errorf("examples/%s: %v", want, err)
		}
	}
}
