package layers

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgfab/imgfab/cache"
)

// TestStore: a registry image resolved through a store is written into it (Fetch fills the
// layers); with the registry gone it resolves offline by reference and by manifest digest, with
// the same digests; what the store lacks is an error naming it.
func TestStore(t *testing.T) {
	var blobGets atomic.Int64
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.TrimPrefix(srv.URL, "http://") + "/test/img:1"
	ref, _ := name.ParseReference(src)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	st, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := Resolve(ctx, "docker://"+src, WithInsecure(), WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	pins, err := PinsOf(got)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if pins.Manifest != want.String() || len(pins.Layers) != 3 {
		t.Fatalf("pins %+v, want manifest %s", pins, want)
	}
	if err := Fetch(ctx, got); err != nil {
		t.Fatal(err)
	}
	for _, l := range pins.Layers {
		h, _ := v1.NewHash(l)
		if !st.Has(h) {
			t.Errorf("layer %s not in the store", l)
		}
	}
	if d, ok, _ := st.Lookup(ref.Name()); !ok || d.Digest != want {
		t.Errorf("index.json: %v %v", d, ok)
	}
	n := blobGets.Load()
	// Online again: nothing but the manifest is fetched.
	again, err := Resolve(ctx, "docker://"+src, WithInsecure(), WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	readLayers(t, again)
	if blobGets.Load() != n {
		t.Errorf("%d blobs fetched again", blobGets.Load()-n)
	}
	srv.Close()
	for _, opts := range [][]Option{{WithOffline()}, {WithOffline(), WithManifest(want)}} {
		off, err := Resolve(ctx, "docker://"+src, append(opts, WithInsecure(), WithStore(st))...)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := off.Digest(); d != want {
			t.Errorf("offline digest %s", d)
		}
		readLayers(t, off)
	}
	_, err = Resolve(ctx, "docker://"+strings.TrimPrefix(srv.URL, "http://")+"/test/other:1", WithInsecure(), WithStore(st), WithOffline())
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "test/other:1") {
		t.Errorf("missing reference: %v", err)
	}
	missing := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	_, err = Resolve(ctx, "docker://"+src, WithInsecure(), WithStore(st), WithOffline(), WithManifest(missing))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing.String()) {
		t.Errorf("missing manifest: %v", err)
	}
}

func readLayers(t *testing.T, img v1.Image) {
	t.Helper()
	ls, err := ImageLayers(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		rc, err := l.Open()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
}
