package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"golang.org/x/sys/unix"
)

const testEpoch = 1700000000

// makeTree builds a layer directory with one of each kind of entry mkoci handles.
func makeTree(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "layer")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "etc/skel"), 0o755))
	must(os.WriteFile(filepath.Join(d, "etc/file"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "etc/suid"), []byte("x"), 0o755))
	must(unix.Chmod(filepath.Join(d, "etc/suid"), 0o4755))
	must(os.Link(filepath.Join(d, "etc/file"), filepath.Join(d, "etc/zlink")))
	must(os.Symlink("file", filepath.Join(d, "etc/sym")))
	must(unix.Mkfifo(filepath.Join(d, "etc/fifo"), 0o600))
	must(os.WriteFile(filepath.Join(d, "etc/.wh.motd"), nil, 0o644))
	must(os.WriteFile(filepath.Join(d, "etc/skel/.wh..wh..opq"), nil, 0o644))
	must(unix.Setxattr(filepath.Join(d, "etc/file"), "user.test", []byte("v1"), 0))
	future := time.Unix(testEpoch+1000000, 0)
	past := time.Unix(1000, 0)
	must(os.Chtimes(filepath.Join(d, "etc/file"), future, future))
	must(os.Chtimes(filepath.Join(d, "etc/suid"), past, past))
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	return d
}

func blobs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	files, err := filepath.Glob(filepath.Join(dir, "blobs/sha256/*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = b
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	m["index.json"] = b
	return m
}

func readImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "t1" {
		t.Fatalf("index.json manifests = %+v, want one annotated ref.name=t1", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	checkDigests(t, img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if lmt := m.Layers[0].MediaType; lmt == types.OCILayer || lmt == types.DockerLayer {
		if err := validate.Image(img); err != nil { // knows only gzip layers
			t.Errorf("validate: %v", err)
		}
	}
	return img
}

// checkDigests recomputes every layer's digest, size and diff_id (validate.Image only knows gzip).
func checkDigests(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != len(m.Layers) || len(layers) != len(cf.RootFS.DiffIDs) {
		t.Fatalf("%d layers, %d in manifest, %d diff_ids", len(layers), len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || h != m.Layers[i].Digest || n != m.Layers[i].Size {
			t.Errorf("layer %d: blob sha256 %s size %d, manifest %s %d (%v)", i, h, n, m.Layers[i].Digest, m.Layers[i].Size, err)
		}
		rc, err = l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h, _, err = v1.SHA256(rc)
		rc.Close()
		if err != nil || h != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: uncompressed sha256 %s, diff_id %s (%v)", i, h, cf.RootFS.DiffIDs[i], err)
		}
	}
}

func headers(t *testing.T, l v1.Layer) map[string]*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	m := map[string]*tar.Header{}
	var prev string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name <= prev {
			t.Errorf("entry %q after %q: not sorted", h.Name, prev)
		}
		prev = h.Name
		m[h.Name] = h
	}
	return m
}

func TestPackOCI(t *testing.T) {
	ctx := context.Background()
	tree := makeTree(t)
	out1 := filepath.Join(t.TempDir(), "oci")
	out2 := filepath.Join(t.TempDir(), "oci")
	for _, out := range []string{out1, out2} {
		o := options{out: out, tag: "t1", epoch: testEpoch, comp: compGzip, layers: []string{tree, tree}}
		if err := run(ctx, o, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	b1, b2 := blobs(t, out1), blobs(t, out2)
	if len(b1) != len(b2) {
		t.Fatalf("runs differ: %d vs %d blobs", len(b1), len(b2))
	}
	for k, v := range b1 {
		if !bytes.Equal(v, b2[k]) {
			t.Errorf("blob %s differs between two runs", k)
		}
	}

	img := readImage(t, out1)
	mt, _ := img.MediaType()
	if mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "amd64" || cf.OS != "linux" || cf.Created.Unix() != testEpoch || len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("config: arch %s os %s created %v diff_ids %d", cf.Architecture, cf.OS, cf.Created, len(cf.RootFS.DiffIDs))
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if lmt, _ := layers[0].MediaType(); lmt != types.OCILayer {
		t.Errorf("layer media type %s", lmt)
	}
	hs := headers(t, layers[0])
	check := func(name string, typ byte, f func(h *tar.Header) bool) {
		t.Helper()
		h, ok := hs[name]
		if !ok {
			t.Errorf("no entry %q", name)
			return
		}
		if h.Typeflag != typ || !f(h) {
			t.Errorf("entry %q: type %c %+v", name, h.Typeflag, h)
		}
	}
	any := func(*tar.Header) bool { return true }
	check("etc/", tar.TypeDir, func(h *tar.Header) bool { return h.Mode == 0o755 })
	check("etc/file", tar.TypeReg, func(h *tar.Header) bool {
		return h.Size == 6 && h.ModTime.Unix() == testEpoch && h.PAXRecords["SCHILY.xattr.user.test"] == "v1"
	})
	check("etc/suid", tar.TypeReg, func(h *tar.Header) bool { return h.Mode == 0o4755 && h.ModTime.Unix() == 1000 })
	check("etc/zlink", tar.TypeLink, func(h *tar.Header) bool { return h.Linkname == "etc/file" })
	check("etc/sym", tar.TypeSymlink, func(h *tar.Header) bool { return h.Linkname == "file" })
	check("etc/fifo", tar.TypeFifo, func(h *tar.Header) bool { return h.Mode == 0o600 })
	check("etc/.wh.motd", tar.TypeReg, any)
	check("etc/skel/.wh..wh..opq", tar.TypeReg, any)
	if os.Geteuid() == 0 {
		check("null", tar.TypeChar, func(h *tar.Header) bool { return h.Devmajor == 1 && h.Devminor == 3 })
	} else {
		t.Log("not root: device node not tested")
	}
	for name := range hs {
		if name == "./" || name == "." || name[0] == '/' || (len(name) > 1 && name[:2] == "./") {
			t.Errorf("bad entry name %q", name)
		}
	}
}

func TestPackDockerZstdNoneArchive(t *testing.T) {
	ctx := context.Background()
	tree := makeTree(t)
	for _, c := range []struct {
		comp compression
		lmt  types.MediaType
	}{{compGzip, types.DockerLayer}, {compZstd, types.OCILayerZStd}, {compNone, types.DockerUncompressedLayer}} {
		dir := t.TempDir()
		out := filepath.Join(dir, "oci")
		archive := filepath.Join(dir, "img.tar")
		o := options{out: out, tag: "t1", docker: true, epoch: -1, comp: c.comp, layers: []string{tree}, dockerArchive: archive}
		if err := run(ctx, o, io.Discard); err != nil {
			t.Fatal(err)
		}
		img := readImage(t, out)
		if mt, _ := img.MediaType(); mt != types.DockerManifestSchema2 {
			t.Errorf("manifest media type %s", mt)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.MediaType != types.DockerConfigJSON || m.Layers[0].MediaType != c.lmt {
			t.Errorf("config %s layer %s, want %s %s", m.Config.MediaType, m.Layers[0].MediaType, types.DockerConfigJSON, c.lmt)
		}
		cf, _ := img.ConfigFile()
		if cf.Created.Unix() != 0 {
			t.Errorf("created %v without -epoch, want 1970", cf.Created)
		}
		layers, _ := img.Layers()
		if h := headers(t, layers[0])["etc/file"]; h == nil || h.ModTime.Unix() != testEpoch+1000000 {
			t.Errorf("without -epoch mtime must not be clamped: %+v", h)
		}
		ai, err := tarball.ImageFromPath(archive, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkDigests(t, ai)
	}
}

func TestRefusesNonEmptyOutput(t *testing.T) {
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), options{out: out, tag: "t", epoch: -1, layers: []string{makeTree(t)}}, io.Discard)
	if err == nil {
		t.Fatal("run into a non-empty directory succeeded")
	}
}

func TestParseArgs(t *testing.T) {
	if _, err := parseArgs([]string{"-o", "x", "-tag", "t", "-gzip", "-zstd", "d"}); err == nil {
		t.Error("-gzip -zstd accepted")
	}
	o, err := parseArgs([]string{"-o", "x", "-tag", "t", "-none", "-epoch", "5", "a", "b"})
	if err != nil || o.comp != compNone || o.epoch != 5 || len(o.layers) != 2 {
		t.Errorf("parse: %+v %v", o, err)
	}
	if _, err := parseArgs([]string{"-tag", "t", "d"}); err == nil {
		t.Error("missing -o accepted")
	}
}
