package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The tests of this binary never use the user's cache: class-file builds keep their outputs in
// the cache by default.
// countingRegistry is go-containerregistry's registry on a fixed loopback address that can be
// stopped and started again (its content kept), counting blob GETs.
type countingRegistry struct {
	t     *testing.T
	h     http.Handler
	addr  string
	srv   *httptest.Server
	blobs atomic.Int64
}

func newCountingRegistry(t *testing.T) *countingRegistry {
	r := &countingRegistry{t: t, h: registry.New()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *countingRegistry) start() {
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = l.Addr().String()
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		if q.Method == http.MethodGet && strings.Contains(q.URL.Path, "/blobs/") {
			r.blobs.Add(1)
		}
		r.h.ServeHTTP(w, q)
	}))
	r.srv.Listener.Close()
	r.srv.Listener = l
	r.srv.Start()
}

func (r *countingRegistry) stop() {
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// TestLockOfflineCache: imgfab lock against a real registry, an online build, an unchanged
// rebuild from the cache (no blob fetched), a changed class rebuilt alone, with the registry
// stopped a --locked --offline build byte-identical to the online one, and a re-tagged base
// refused by --locked naming both digests.
func TestLockOfflineCache(t *testing.T) {
	demo := fixture(t, "demo/oci", "mkdemo.sh")
	reg := newCountingRegistry(t)
	p, err := layout.FromPath(demo)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ix.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == "demo" {
			img, err = p.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatal("demo layout: no image tagged demo")
	}
	ref, err := name.ParseReference(reg.addr+"/demo:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cacheDir := filepath.Join(t.TempDir(), "cache")
	file := filepath.Join(dir, "imgfab.yaml")
	writeClasses := func(bCmdline string) {
		y := "classes:\n" +
			"  a:\n    from: docker://" + reg.addr + "/demo:1\n    kernel: {cmdline: console=ttyS0}\n    outputs:\n      - path: out/{class}.qcow2\n" +
			"  b:\n    from: docker://" + reg.addr + "/demo:1\n    kernel: {cmdline: \"" + bCmdline + "\"}\n    outputs:\n      - path: out/{class}.raw\n"
		if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeClasses("console=ttyS0 quiet")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	imgfab := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errs := imgfabIn(t, args...)
		if code != want {
			t.Fatalf("imgfab %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errs)
		}
		return out, errs
	}
	results := func(out string) map[string]classResult {
		m := map[string]classResult{}
		for _, r := range classLines(t, out) {
			m[r.Class] = r
		}
		return m
	}

	// Lock: every blob fetched into the cache, the lock file written.
	imgfab(0, "lock", "-f", file, "--insecure", "--cache", cacheDir)
	var lock lockFile
	b, err := os.ReadFile(filepath.Join(dir, "imgfab.lock"))
	if err != nil || json.Unmarshal(b, &lock) != nil {
		t.Fatalf("imgfab.lock: %v\n%s", err, b)
	}
	la := lock.Classes["a"]["linux/amd64"]
	if la.Manifest == "" || la.Config == "" || len(la.Layers) == 0 || la.Source != "docker://"+reg.addr+"/demo:1" {
		t.Fatalf("lock entry %+v", la)
	}

	// Online build: nothing more fetched (the lock filled the cache).
	n := reg.blobs.Load()
	out, _ := imgfab(0, "build", "-f", file, "--insecure", "--cache", cacheDir, "--locked", "--json")
	online := results(out)
	if reg.blobs.Load() != n {
		t.Errorf("build after lock fetched %d blobs", reg.blobs.Load()-n)
	}
	for _, c := range []string{"a", "b"} {
		if online[c].Cached || online[c].ImageDigest != la.Manifest || sha(t, online[c].Outputs[0].Path) != online[c].Outputs[0].SHA256 {
			t.Fatalf("online %s: %+v", c, online[c])
		}
	}

	// Unchanged: both cached, the same bytes, nothing fetched.
	os.Remove(online["a"].Outputs[0].Path)
	out, _ = imgfab(0, "build", "-f", file, "--insecure", "--cache", cacheDir, "--json")
	again := results(out)
	for _, c := range []string{"a", "b"} {
		if !again[c].Cached || again[c].Outputs[0].SHA256 != online[c].Outputs[0].SHA256 || sha(t, again[c].Outputs[0].Path) != online[c].Outputs[0].SHA256 {
			t.Errorf("rebuild of %s: %+v", c, again[c])
		}
	}
	if reg.blobs.Load() != n {
		t.Errorf("cached rebuild fetched %d blobs", reg.blobs.Load()-n)
	}
	text, _ := imgfab(0, "build", "-f", file, "--insecure", "--cache", cacheDir, "a")
	if !strings.Contains(text, "(cached)") {
		t.Errorf("text output: %q", text)
	}

	// One class changed: it alone is built.
	writeClasses("console=ttyS0")
	out, _ = imgfab(0, "build", "-f", file, "--insecure", "--cache", cacheDir, "--json")
	changed := results(out)
	if !changed["a"].Cached || changed["b"].Cached || changed["b"].Outputs[0].SHA256 == online["b"].Outputs[0].SHA256 {
		t.Errorf("after changing b: a cached %v, b cached %v", changed["a"].Cached, changed["b"].Cached)
	}
	writeClasses("console=ttyS0 quiet")

	// The registry stopped: --offline --locked builds the same bytes from the cache (built, not
	// copied: --no-cache), and from the output cache.
	reg.stop()
	for _, extra := range [][]string{{"--no-cache"}, nil} {
		for _, c := range []string{"a", "b"} {
			os.Remove(online[c].Outputs[0].Path)
		}
		out, _ = imgfab(0, append([]string{"build", "-f", file, "--cache", cacheDir, "--offline", "--locked", "--json"}, extra...)...)
		off := results(out)
		for _, c := range []string{"a", "b"} {
			if off[c].Cached != (extra == nil) || sha(t, off[c].Outputs[0].Path) != online[c].Outputs[0].SHA256 {
				t.Errorf("offline %v %s: cached %v, sha256 %s, online %s", extra, c, off[c].Cached, sha(t, off[c].Outputs[0].Path), online[c].Outputs[0].SHA256)
			}
		}
	}
	// Offline without the lock: by the reference recorded in the cache's index.json.
	imgfab(0, "build", "-f", file, "--cache", cacheDir, "--offline", "--no-cache", "a")
	// An empty cache: the missing reference, or with --locked the missing manifest, named.
	empty := t.TempDir()
	_, errs := imgfab(1, "build", "-f", file, "--cache", empty, "--offline", "a")
	if !strings.Contains(errs, reg.addr+"/demo:1") || !strings.Contains(errs, "not in the cache") {
		t.Errorf("offline, empty cache: %s", errs)
	}
	_, errs = imgfab(1, "build", "-f", file, "--cache", empty, "--offline", "--locked", "a")
	if !strings.Contains(errs, la.Manifest) || !strings.Contains(errs, "not in the cache") {
		t.Errorf("offline --locked, empty cache: %s", errs)
	}

	// The base re-tagged: --locked fails naming the class, the platform and both digests.
	reg.start()
	other, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, other); err != nil {
		t.Fatal(err)
	}
	od, _ := other.Digest()
	_, errs = imgfab(1, "build", "-f", file, "--insecure", "--cache", cacheDir, "--locked", "a")
	for _, w := range []string{"class a", "linux/amd64", la.Manifest, od.String()} {
		if !strings.Contains(errs, w) {
			t.Errorf("--locked after re-tag: no %q in %s", w, errs)
		}
	}

	// cache ls and prune.
	ls, _ := imgfab(0, "cache", "ls", "--cache", cacheDir)
	if !strings.Contains(ls, reg.addr+"/demo:1") || !strings.Contains(ls, "output") || !strings.Contains(ls, la.Manifest) {
		t.Errorf("cache ls:\n%s", ls)
	}
	pr, _ := imgfab(0, "cache", "prune", "--cache", cacheDir, "--keep-days", "30")
	if !strings.Contains(pr, "0 removed") {
		t.Errorf("prune of fresh entries: %s", pr)
	}
}
