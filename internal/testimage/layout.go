package testimage

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer is an OCI layer whose blob is b, already compressed as wanted.
func Layer(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// WriteLayout writes an OCI layout holding one image made of the given layer blobs (already
// compressed as wanted) and returns its directory. tag is the ref.name annotation.
func WriteLayout(t testing.TB, tag string, blobs ...[]byte) string {
	t.Helper()
	var ls []v1.Layer
	for _, b := range blobs {
		ls = append(ls, Layer(t, b))
	}
	return WriteLayoutLayers(t, tag, ls...)
}

// WriteLayoutLayers is WriteLayout for ready layers. The image's config says created at Unix
// time 1650000000, as WriteLayout's.
func WriteLayoutLayers(t testing.TB, tag string, ls ...v1.Layer) string {
	t.Helper()
	return WriteLayoutCreated(t, tag, time.Unix(1650000000, 0), ls...)
}

// WriteLayoutCreated is WriteLayoutLayers with the config's created time. The image is
// linux/amd64, an OCI manifest and config.
func WriteLayoutCreated(t testing.TB, tag string, created time.Time, ls ...v1.Layer) string {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range ls {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer})
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: created}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// PushLayout pushes the first image of the OCI layout dir to ref (plain HTTP allowed) and returns
// the image.
func PushLayout(t testing.TB, dir, ref string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return img
}
