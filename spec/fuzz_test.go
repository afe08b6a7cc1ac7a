package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, an error is always an *Error with a position, and a file that
// parses prints back to one that parses to the same canonical forms.
func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte(readOnly))
	f.Add([]byte("classes:\n  a: {from: oci:./l}\n"))
	f.Add([]byte("classes:\n  a: &a {from: oci:./l}\n  b: *a\n"))
	f.Add([]byte("classes: [\n"))
	if files, _ := filepath.Glob("../examples/*.yaml"); files != nil {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T: %v", err, err)
			}
			if e.Pos.File != "f.yaml" || e.Pos.Line < 1 || e.Pos.Col < 1 || !strings.HasPrefix(err.Error(), "f.yaml:") {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		out := file.YAML()
		again, err := Parse("f.yaml", out)
		if err != nil {
			t.Fatalf("YAML() does not parse: %v\n%s", err, out)
		}
		for i, c := range file.Classes {
			if string(c.Canonical()) != string(again.Classes[i].Canonical()) {
				t.Fatalf("class %s changed in the round trip:\n%s", c.Name, out)
			}
		}
	})
}
