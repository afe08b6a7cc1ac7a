// Package ocitest holds what the tests of imgfab's OCI target share: an in-process registry
// (go-containerregistry's, quiet), optionally behind basic auth, with the Docker config that
// holds the credentials; a puller that checks a KubeVirt containerDisk as KubeVirt reads it (one
// platform of a multi-platform index too); and pullers of an index, of an artifact's manifest and
// of blobs. For tests only.
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry returns an in-memory OCI distribution registry handler that does not log.
func Registry() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// Serve serves h on loopback until the test ends and returns its host:port.
func Serve(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// BasicAuth wraps a registry with HTTP basic auth for user:pass: anything else gets a 401 with
// the registry's error body.
func BasicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="imgfab-test"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// DockerConfig writes, in a new temporary home, .docker/config.json holding user:pass for host,
// and returns the home and the .docker directory (for HOME and DOCKER_CONFIG).
func DockerConfig(t testing.TB, host, user, pass string) (home, dir string) {
	t.Helper()
	home = t.TempDir()
	dir = filepath.Join(home, ".docker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, dir
}

// PullManifest gets the manifest ref points at (plain HTTP allowed): its digest, decoded and as
// served.
func PullManifest(t testing.TB, ref string) (string, *v1.Manifest, []byte) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("getting %s: %v", ref, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String(), &m, desc.Manifest
}

// PullBlob pulls the blob digest ("sha256:…") of ref's repository as stored (not decompressed).
func PullBlob(t testing.TB, ref, digest string) []byte {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(r.Context().Digest(digest))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("pulling blob %s: %v", digest, err)
	}
	return b
}

// Entry is one entry of a pulled layer.
type Entry struct {
	Hdr  tar.Header
	Data []byte
}

// PullContainerDisk pulls ref (plain HTTP allowed) and returns its manifest, its config and the
// entries of its one layer.
func PullContainerDisk(t testing.TB, ref string) (*v1.Manifest, *v1.ConfigFile, []Entry) {
	t.Helper()
	return pullContainerDisk(t, ref)
}

// PullPlatform pulls the image of platform (e.g. linux/arm64) that ref (an image index; plain
// HTTP allowed) holds, as a runtime on that platform picks it (go-containerregistry's platform
// match), and returns its manifest, its config and the entries of its one layer.
func PullPlatform(t testing.TB, ref string, platform v1.Platform) (*v1.Manifest, *v1.ConfigFile, []Entry) {
	t.Helper()
	return pullContainerDisk(t, ref, remote.WithPlatform(platform))
}

// PullIndex gets the image index ref points at (plain HTTP allowed): its digest and the index,
// decoded. A manifest that is not an index fails the test.
func PullIndex(t testing.TB, ref string) (string, *v1.IndexManifest) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("getting %s: %v", ref, err)
	}
	if !desc.MediaType.IsIndex() {
		t.Fatalf("%s is a %s, not an image index", ref, desc.MediaType)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(desc.Manifest, &im); err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String(), &im
}

func pullContainerDisk(t testing.TB, ref string, opts ...remote.Option) (*v1.Manifest, *v1.ConfigFile, []Entry) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("%s: %d layers, %v; want 1", ref, len(ls), err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var es []Entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m, cf, es
		}
		if err != nil {
			t.Fatalf("layer tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, Entry{*h, b})
	}
}

// CheckContainerDisk checks the KubeVirt containerDisk layout — disk/ (0555) and disk/disk.img
// (0444), both owned by 107:107 (qemu) — and, if want is not nil, that the disk equals want.
// It returns the disk.
func CheckContainerDisk(t testing.TB, es []Entry, want []byte) []byte {
	t.Helper()
	if len(es) != 2 {
		t.Fatalf("layer has %d entries, want disk/ and disk/disk.img", len(es))
	}
	d, f := es[0].Hdr, es[1].Hdr
	if d.Name != "disk/" || d.Typeflag != tar.TypeDir || d.Mode != 0o555 || d.Uid != 107 || d.Gid != 107 {
		t.Errorf("dir entry: %q type %c mode %o uid %d gid %d", d.Name, d.Typeflag, d.Mode, d.Uid, d.Gid)
	}
	if f.Name != "disk/disk.img" || f.Typeflag != tar.TypeReg || f.Mode != 0o444 || f.Uid != 107 || f.Gid != 107 || f.Uname != "qemu" {
		t.Errorf("disk entry: %q type %c mode %o uid %d gid %d uname %q", f.Name, f.Typeflag, f.Mode, f.Uid, f.Gid, f.Uname)
	}
	if want != nil && !bytes.Equal(es[1].Data, want) {
		t.Errorf("pulled disk: %d bytes, differs from the pushed one (%d bytes)", len(es[1].Data), len(want))
	}
	return es[1].Data
}

// PulledDisk pulls the containerDisk ref, checks its layout and its config (linux/amd64) and
// returns disk/disk.img.
func PulledDisk(t testing.TB, ref string) []byte {
	t.Helper()
	_, cf, es := PullContainerDisk(t, ref)
	if cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Errorf("config: os %q architecture %q, want linux/amd64", cf.OS, cf.Architecture)
	}
	return CheckContainerDisk(t, es, nil)
}

// LayerFileDisk reads the disk (disk/disk.img) out of a containerDisk's gzip'd layer as a file,
// as `skopeo copy … dir:` writes it.
func LayerFileDisk(t testing.TB, layer string) []byte {
	t.Helper()
	f, err := os.Open(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", layer, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no disk/disk.img (%v)", layer, err)
		}
		if h.Name == "disk/disk.img" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}
