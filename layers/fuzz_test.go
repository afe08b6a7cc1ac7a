package layers

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FuzzFlatten feeds two arbitrary layer blobs to Flatten and checks the output's invariants:
// clean relative names, each at most once, no whiteouts, hardlinks to earlier names.
func FuzzFlatten(f *testing.F) {
	f.Add(tarOf(f, "a/", "a/b=1", "l=>a/b", "s->/etc"), tarOf(f, "a/.wh.b", "a/.wh..wh..opq", "c=2"))
	f.Add(tarOf(f, "./x=1", "y=>x"), tarOf(f, ".wh.x", "z=>y"))
	f.Add(gzipOf(f, tarOf(f, "d/", "d/e=3")), zstdOf(f, tarOf(f, "d=file")))
	// Numbers out of range: refused naming the layer.
	for _, h := range []tar.Header{
		{Typeflag: tar.TypeReg, Name: "u", Uid: 1 << 32, Mode: 0o4755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: "m", ModTime: time.Unix(-1<<33, 0), Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: "a", ModTime: time.Unix(0, 0), AccessTime: time.Unix(1<<40, 0), Format: tar.FormatPAX},
	} {
		var b strings.Builder
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&h)
		tw.Close()
		f.Add([]byte(b.String()), tarOf(f, ".wh.u", "l=>u"))
	}
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

// FuzzIndexWalk resolves an arbitrary index whose entries may name a second arbitrary index, an
// image manifest and its config (all in memory), for linux/amd64: no panic, each index fetched at
// most once, errors naming where they arose.
func FuzzIndexWalk(f *testing.F) {
	s := newMemSource()
	img := s.image("amd64")
	arm := s.image("arm64")
	ref := func(d v1.Descriptor) string { b, _ := json.Marshal(d); return string(b) }
	idx := func(ents ...string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(ents, ",") + `]}`)
	}
	child := idx(ref(arm), ref(img))
	cd := s.put(types.OCIImageIndex, child, nil)
	f.Add(idx(ref(cd), ref(cd), ref(cd)), child)
	f.Add(idx(ref(arm)), idx(ref(img)))
	f.Add(idx(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../x","size":1}`), child)
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"`+cd.Digest.String()+`","size":-1}]}`), child)
	f.Fuzz(func(t *testing.T, top, second []byte) {
		m := newMemSource()
		for h, b := range s.blobs {
			m.blobs[h] = b
		}
		m.put(types.OCIImageIndex, second, nil)
		td := m.put(types.OCIImageIndex, top, nil)
		got, err := walk(m, td)
		for h, n := range m.fetches {
			if n > 1 {
				t.Fatalf("%s fetched %d times", h, n)
			}
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "test") && !strings.HasPrefix(err.Error(), "index sha256:") {
				t.Fatalf("error does not say where: %v", err)
			}
			return
		}
		if d, _ := got.Digest(); d != img.Digest {
			t.Fatalf("picked %s, not the amd64 image", d)
		}
	})
}
