// Package ocitest holds what the tests of imgfab's OCI target share: an in-process registry
// (go-containerregistry's, quiet) and a puller that checks a KubeVirt containerDisk as KubeVirt
// reads it. For tests only.
package ocitest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
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

// Entry is one entry of a pulled layer.
type Entry struct {
	Hdr  tar.Header
	Data []byte
}

// PullContainerDisk pulls ref (plain HTTP allowed) and returns its manifest, its config and the
// entries of its one layer.
func PullContainerDisk(t testing.TB, ref string) (*v1.Manifest, *v1.ConfigFile, []Entry) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
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
