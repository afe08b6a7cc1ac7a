package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgfab/imgfab/internal/testimage"
)

// retryFixture pushes an image with a small layer and a big one (streamed: above wholeBlobMax)
// and returns its reference, the registry and the two layer blobs' paths on it.
type retryFixture struct {
	ref          string
	reg          *testimage.FaultyRegistry
	small, big   string // "/v2/test/blobs/sha256:…"
	smallD, bigD v1.Hash
	blobs        [2][]byte // small, big
}

func newRetryFixture(t *testing.T) *retryFixture {
	t.Helper()
	old := wholeBlobMax
	wholeBlobMax = 64 << 10
	t.Cleanup(func() { wholeBlobMax = old })
	// Incompressible-ish content so the big blob stays big.
	noise := make([]byte, 300<<10)
	x := uint32(1)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = byte(x >> 24)
	}
	small := gzipOf(t, tarOf(t, "etc/", "etc/hostname=retry\n", "bin/", "bin/sh->busybox"))
	var bt bytes.Buffer
	tw := tar.NewWriter(&bt)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "srv/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "srv/noise", Mode: 0o644, Size: int64(len(noise))})
	tw.Write(noise)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/.wh.hostname", Mode: 0o644})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	big := gzipOf(t, bt.Bytes())
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var ds []v1.Hash
	for _, b := range [][]byte{small, big} {
		l := static.NewLayer(b, types.OCILayer)
		var err error
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		ds = append(ds, d)
	}
	f := testimage.NewFaultyRegistry()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host+"/test:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	if int64(len(small)) > wholeBlobMax || int64(len(big)) <= wholeBlobMax {
		t.Fatalf("blob sizes %d and %d do not straddle %d", len(small), len(big), wholeBlobMax)
	}
	return &retryFixture{ref: "docker://" + host + "/test:1", reg: f,
		small: "/v2/test/blobs/" + ds[0].String(), big: "/v2/test/blobs/" + ds[1].String(), smallD: ds[0], bigD: ds[1], blobs: [2][]byte{small, big}}
}

// flattenSum resolves, flattens and hashes the whole composed stream.
func flattenSum(ref string) (string, error) {
	ctx := context.Background()
	img, err := Resolve(ctx, ref, WithInsecure(), WithRetry(3, time.Millisecond))
	if err != nil {
		return "", err
	}
	ls, err := ImageLayers(ctx, img)
	if err != nil {
		return "", err
	}
	r := Flatten(ctx, ls)
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func TestRegistryFaults(t *testing.T) {
	fx := newRetryFixture(t)
	want, err := flattenSum(fx.ref)
	if err != nil {
		t.Fatalf("fault-free: %v", err)
	}
	isBlob := func(r *http.Request) bool { return r.URL.Path == fx.small || r.URL.Path == fx.big }

	t.Run("drop-mid-blob", func(t *testing.T) {
		before := fx.reg.Hits()["GET "+fx.big]
		fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
			if isBlob(r) && hit <= before+2 && (r.URL.Path == fx.big || hit <= 2) {
				testimage.DropAfterHalf(w, real)
			}
			return false
		})
		defer fx.reg.SetFault(nil)
		got, err := flattenSum(fx.ref)
		if err != nil || got != want {
			t.Fatalf("sum %s err %v; fault-free %s", got, err, want)
		}
		if n := fx.reg.Hits()["GET "+fx.big]; n-before != 3 {
			t.Errorf("big blob fetched %d times, want 3 (2 broken + 1)", n-before)
		}
	})
	// go-containerregistry's remote image keeps a config it read half way; ours fetches it again.
	t.Run("drop-config", func(t *testing.T) {
		fx.reg.ResetHits()
		fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
			if strings.Contains(r.URL.Path, "/blobs/") && !isBlob(r) && hit == 1 {
				testimage.DropAfterHalf(w, real)
			}
			return false
		})
		defer fx.reg.SetFault(nil)
		img, err := Resolve(context.Background(), fx.ref, WithInsecure(), WithRetry(3, time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil || cf.Architecture != "amd64" && cf.Architecture != "" {
			t.Fatalf("config after a broken read: %+v, %v", cf, err)
		}
		n := 0
		for k, v := range fx.reg.Hits() {
			if strings.Contains(k, "/blobs/") && !strings.HasSuffix(k, fx.small) && !strings.HasSuffix(k, fx.big) {
				n += v
			}
		}
		if n != 2 {
			t.Errorf("config blob fetched %d times, want 2 (broken, good)", n)
		}
		got, err := flattenSum(fx.ref)
		if err != nil || got != want {
			t.Fatalf("sum %s err %v; fault-free %s", got, err, want)
		}
	})
	t.Run("503-and-429", func(t *testing.T) {
		fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
			if hit%2 == 1 { // every other request of each path, manifests and config too
				code := http.StatusServiceUnavailable
				if isBlob(r) {
					code = http.StatusTooManyRequests
				}
				http.Error(w, "try later", code)
				return true
			}
			return false
		})
		defer fx.reg.SetFault(nil)
		got, err := flattenSum(fx.ref)
		if err != nil || got != want {
			t.Fatalf("sum %s err %v; fault-free %s", got, err, want)
		}
	})
	t.Run("drop-always", func(t *testing.T) {
		fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
			if r.URL.Path == fx.big {
				testimage.DropAfterHalf(w, real)
			}
			return false
		})
		defer fx.reg.SetFault(nil)
		_, err := flattenSum(fx.ref)
		if err == nil || !strings.Contains(err.Error(), fx.bigD.String()) || !strings.Contains(err.Error(), "after 3 attempt(s)") {
			t.Fatalf("want an error naming %s and 3 attempts, got %v", fx.bigD, err)
		}
	})
	mtime := func(b []byte) []byte { // same size, other bytes: the gzip header's MTIME, which decompression ignores
		b = append([]byte(nil), b...)
		b[5] ^= 0x55
		return b
	}
	for _, c := range []struct {
		name  string
		blob  *string
		d     v1.Hash
		serve func(real []byte) []byte
		fetch int    // requests of the blob expected
		want  string // in the message
	}{
		// Read whole: fetched once more, then refused before use.
		{"other-blob-small", &fx.small, fx.smallD, func([]byte) []byte { return fx.blobs[1] }, 2, "size mismatch: manifest says"},
		{"wrong-bytes-small", &fx.small, fx.smallD, mtime, 2, "digest mismatch"},
		// Streamed: a wrong length is seen before the first byte, and refused after one more try.
		{"other-blob-big", &fx.big, fx.bigD, func([]byte) []byte { return fx.blobs[0] }, 2, "size mismatch: manifest says"},
		// Streamed, same length: found at the end, the bytes are used already: not retried.
		{"wrong-bytes-big", &fx.big, fx.bigD, mtime, 1, "digest mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, serve := *c.blob, c.serve
			before := fx.reg.Hits()["GET "+path]
			fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
				if r.URL.Path != path {
					return false
				}
				b := serve(real.Body.Bytes())
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.WriteHeader(http.StatusOK)
				w.Write(b)
				return true
			})
			defer fx.reg.SetFault(nil)
			_, err := flattenSum(fx.ref)
			var de *DigestError
			if !errors.As(err, &de) || de.Layer != c.d.String() || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want a DigestError for %s with %q, got %v", c.d, c.want, err)
			}
			if n := fx.reg.Hits()["GET "+path]; n-before != c.fetch {
				t.Errorf("blob fetched %d times, want %d (%v)", n-before, c.fetch, err)
			}
		})
	}
	t.Run("no-splice", func(t *testing.T) {
		before := fx.reg.Hits()["GET "+fx.big]
		fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
			if r.URL.Path != fx.big {
				return false
			}
			if hit == before+1 {
				testimage.DropAfterHalf(w, real)
			}
			// Fetched again: other bytes at the start.
			b := append([]byte(nil), real.Body.Bytes()...)
			b[100] ^= 0x55
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.WriteHeader(http.StatusOK)
			w.Write(b)
			return true
		})
		defer fx.reg.SetFault(nil)
		_, err := flattenSum(fx.ref)
		if err == nil || !strings.Contains(err.Error(), "not spliced") || !strings.Contains(err.Error(), fx.bigD.String()) {
			t.Fatalf("want a no-splice error naming %s, got %v", fx.bigD, err)
		}
	})
	// Not transient: a missing blob is not retried.
	t.Run("404-not-retried", func(t *testing.T) {
		before := fx.reg.Hits()["GET "+fx.small]
		fx.reg.SetFault(func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) bool {
			if r.URL.Path == fx.small {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"gone"}]}`, http.StatusNotFound)
				return true
			}
			return false
		})
		defer fx.reg.SetFault(nil)
		_, err := flattenSum(fx.ref)
		if err == nil || !strings.Contains(err.Error(), fx.smallD.String()) || !strings.Contains(err.Error(), "after 1 attempt(s)") {
			t.Fatalf("want an error naming %s after 1 attempt, got %v", fx.smallD, err)
		}
		if n := fx.reg.Hits()["GET "+fx.small]; n-before != 1 {
			t.Errorf("missing blob fetched %d times, want 1", n-before)
		}
	})
}
