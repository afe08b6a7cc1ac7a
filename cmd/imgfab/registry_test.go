package main

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/imgfab/imgfab/internal/testimage"
)

// TestBuildFromRegistry pushes an image to a real OCI registry (go-containerregistry's, on
// loopback) and builds from it as docker://REF and as a bare REF: the same image gives the same disk
// as from the OCI layout.
func TestBuildFromRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := testimage.WriteLayout(t, "reg", testimage.GzipTar(t, testimage.ContentTree()))
	testimage.PushLayout(t, dir, host+"/imgfab/test:1")
	out := t.TempDir()
	fromLayout := build(t, "oci:"+dir, "-o", filepath.Join(out, "layout.raw"))
	for _, src := range []string{"docker://" + host + "/imgfab/test:1", host + "/imgfab/test:1"} {
		res := build(t, "--insecure", src, "-o", filepath.Join(out, "reg.raw"))
		if res.ImageDigest != fromLayout.ImageDigest || res.Outputs[0].SHA256 != fromLayout.Outputs[0].SHA256 {
			t.Errorf("%s: digest %s sha256 %s; from the layout: %s %s", src, res.ImageDigest, res.Outputs[0].SHA256,
				fromLayout.ImageDigest, fromLayout.Outputs[0].SHA256)
		}
	}
	// Without --insecure the plain-HTTP registry is refused (no silent downgrade) — except that
	// go-containerregistry treats localhost/127.0.0.1 as insecure by default, so only check that
	// a missing tag fails with exit 1 and names the reference.
	r := runImgfab(t, nil, "build", "--insecure", host+"/imgfab/test:missing", "-o", filepath.Join(out, "x.raw"))
	if r.code != 1 || !strings.Contains(r.stderr, "imgfab/test:missing") {
		t.Errorf("missing tag: exit %d\n%s", r.code, r.stderr)
	}
}
