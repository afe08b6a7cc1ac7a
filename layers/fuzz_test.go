package layers

import (
	"archive/tar"
	"context"
	"io"
	"path"
	"strings"
	"testing"
)

// FuzzFlatten feeds two arbitrary layer blobs to Flatten and checks the output's invariants:
// clean relative names, each at most once, no whiteouts, hardlinks to earlier names.
func FuzzFlatten(f *testing.F) {
	f.Add(tarOf(f, "a/", "a/b=1", "l=>a/b", "s->/etc"), tarOf(f, "a/.wh.b", "a/.wh..wh..opq", "c=2"))
	f.Add(tarOf(f, "./x=1", "y=>x"), tarOf(f, ".wh.x", "z=>y"))
	f.Add(gzipOf(f, tarOf(f, "d/", "d/e=3")), zstdOf(f, tarOf(f, "d=file")))
	f.Fuzz(func(t *testing.T, lo, hi []byte) {
		rc := Flatten(context.Background(), []Layer{blobLayer("lo", lo, ""), blobLayer("hi", hi, "")})
		defer rc.Close()
		tr := tar.NewReader(rc)
		seen := map[string]bool{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !strings.Contains(err.Error(), "layer ") && !strings.HasPrefix(err.Error(), "archive/tar") {
					t.Fatalf("error does not name a layer: %v", err)
				}
				return
			}
			check := func(n string) {
				if n == "" || path.Clean(n) != n || strings.HasPrefix(n, "/") || n == ".." || strings.HasPrefix(n, "../") {
					t.Fatalf("unclean name %q", n)
				}
			}
			check(h.Name)
			if seen[h.Name] {
				t.Fatalf("%q twice", h.Name)
			}
			if strings.HasPrefix(path.Base(h.Name), whPrefix) {
				t.Fatalf("whiteout %q in output", h.Name)
			}
			if h.Typeflag == tar.TypeLink {
				check(h.Linkname)
				if !seen[h.Linkname] {
					t.Fatalf("hardlink %q to %q, not earlier in the output", h.Name, h.Linkname)
				}
			}
			seen[h.Name] = true
			// A GNU sparse entry of a few bytes can stand for terabytes of holes, which Flatten
			// expands to zeros (correct, but about 100 s per TiB): read at most 1 MiB of each.
			if _, err := io.CopyN(io.Discard, tr, 1<<20); err != nil && err != io.EOF {
				return
			}
			if h.Size > 1<<20 {
				return
			}
		}
	})
}
