package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ent is one tar entry of a synthetic layer.
type ent struct {
	hdr  tar.Header
	body string
}

func reg(name, body string, mode int64) ent {
	return ent{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(1600000000, 0)}, body}
}
func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: time.Unix(1600000000, 0)}}
}
func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(1600000000, 0)}}
}
func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: time.Unix(1600000000, 0)}}
}

// bootEntries is the minimum a tree needs for imgfab build to succeed (a fake kernel and loader:
// enough for the filesystem checks, not for a boot).
func bootEntries() []ent {
	return []ent{
		dir("boot/", 0o755),
		reg("boot/vmlinuz-1.0", "not really a kernel", 0o644),
		reg("boot/initrd.img-1.0", "not really an initrd", 0o644),
		dir("usr/", 0o755), dir("usr/lib/", 0o755), dir("usr/lib/systemd/", 0o755), dir("usr/lib/systemd/boot/", 0o755),
		dir("usr/lib/systemd/boot/efi/", 0o755),
		reg("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "MZ not really systemd-boot", 0o644),
	}
}

func tarBytes(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.Format == 0 && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// writeLayout writes an OCI layout holding one image made of the given layer blobs (already
// compressed as wanted) and returns its directory. tag is the ref.name annotation.
func writeLayout(t testing.TB, tag string, blobs ...[]byte) string {
	t.Helper()
	var ls []v1.Layer
	for _, b := range blobs {
		b := b
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return writeLayoutLayers(t, tag, ls...)
}

// writeLayoutLayers is writeLayout for ready layers.
func writeLayoutLayers(t testing.TB, tag string, ls ...v1.Layer) string {
	t.Helper()
	return writeLayoutCreated(t, tag, time.Unix(1650000000, 0), ls...)
}

// writeLayoutCreated is writeLayoutLayers with the config's created time.
func writeLayoutCreated(t testing.TB, tag string, created time.Time, ls ...v1.Layer) string {
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
