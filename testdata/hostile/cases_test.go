package hostile

import (
	"strings"
	"testing"
)

// TestCasesMake makes every case's input (the outcomes are checked end to end by
// assemble's TestHostileCorpus): names are unique, every input can be made, and a case that
// must name a layer has it.
func TestCasesMake(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Cases() {
		if seen[c.Name] {
			t.Errorf("case %s twice", c.Name)
		}
		seen[c.Name] = true
		src, layers, err := c.Make(t.TempDir())
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if !strings.HasPrefix(src, "oci:") && !strings.HasPrefix(src, "docker-archive:") {
			t.Errorf("%s: source %q", c.Name, src)
		}
		if c.Layer >= len(layers) {
			t.Errorf("%s: layer %d of %d", c.Name, c.Layer, len(layers))
		}
	}
}
