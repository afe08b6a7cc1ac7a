package serve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// fakeBuilder builds a file of the class's text and the key's parts, after release is closed.
type fakeBuilder struct {
	builds  atomic.Int32
	release chan struct{}
	started chan string
}

func (f *fakeBuilder) Class(body []byte) ([]byte, error) { return body, nil }
func (f *fakeBuilder) Resolve(ctx context.Context, class []byte, arch string) (string, error) {
	return "sha256:" + strings.Repeat("ab", 32), nil
}
func (f *fakeBuilder) Build(ctx context.Context, class []byte, arch, source, path string) (string, int64, error) {
	f.builds.Add(1)
	f.started <- path
	<-f.release
	b := []byte(string(class) + arch + source + path[strings.LastIndex(path, "/"):])
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", 0, err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), int64(len(b)), nil
}
func (f *fakeBuilder) Version() string { return "test" }
func (f *fakeBuilder) PushContainerDisk(ctx context.Context, path, arch, ref string) (string, error) {
	return "", errors.New("no containerDisks here")
}

func newTestServer(t *testing.T, fb *fakeBuilder, maxQueue int) (*httptest.Server, *Server) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	st, err := OpenStore(t.Context(), strings.TrimPrefix(reg.URL, "http://")+"/t/store", true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Store: st, Builder: fb, CacheDir: t.TempDir(), MaxBuilds: 1, MaxQueue: maxQueue, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, s
}

func post(t *testing.T, url, body string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/classes", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /classes: %v %v", err, resp)
	}
	resp.Body.Close()
	s := sha256.Sum256([]byte(body))
	return hex.EncodeToString(s[:])
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestOneBuildPerKey: ten concurrent requests for one artifact share one build and get the same
// bytes, whose sha256 is the ETag; the artifact is then in the store.
func TestOneBuildPerKey(t *testing.T) {
	fb := &fakeBuilder{release: make(chan struct{}), started: make(chan string, 10)}
	srv, s := newTestServer(t, fb, 4)
	id := post(t, srv.URL, "class one")
	var wg sync.WaitGroup
	bodies := make([]string, 10)
	for i := range bodies {
		wg.Go(func() {
			code, b, h := get(t, srv.URL+"/images/"+id+"/amd64/disk.qcow2")
			sum := sha256.Sum256([]byte(b))
			if code != 200 || h.Get("ETag") != `"sha256:`+hex.EncodeToString(sum[:])+`"` {
				t.Errorf("request %d: %d %q", i, code, h.Get("ETag"))
			}
			bodies[i] = b
		})
	}
	<-fb.started
	close(fb.release)
	wg.Wait()
	if n := fb.builds.Load(); n != 1 {
		t.Errorf("%d builds for one key, want 1", n)
	}
	for _, b := range bodies {
		if b != bodies[0] || b == "" {
			t.Fatalf("bodies differ: %q %q", b, bodies[0])
		}
	}
	arts, err := s.cfg.Store.Artifacts(t.Context(), id)
	if err != nil || len(arts) != 1 || arts[0].File != "disk.qcow2" {
		t.Errorf("stored %+v %v", arts, err)
	}
	_, m, _ := get(t, srv.URL+"/metrics")
	for _, want := range []string{`imgfab_builds_total{result="built"} 1`, "imgfab_build_queue_depth 0", "imgfab_bytes_served_total"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestQueueFull: with one build running and --max-queue 1 waiting, a third artifact is refused
// with 503 and Retry-After, and served once the queue has room.
func TestQueueFull(t *testing.T) {
	fb := &fakeBuilder{release: make(chan struct{}), started: make(chan string, 10)}
	srv, _ := newTestServer(t, fb, 1)
	id := post(t, srv.URL, "class two")
	for _, f := range []string{"disk.raw", "disk.qcow2"} {
		if code, b, _ := get(t, srv.URL+"/images/"+id+"/amd64/"+f+"?wait=false"); code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", f, code, b)
		}
		if f == "disk.raw" {
			<-fb.started // disk.raw has the slot: disk.qcow2 then waits
		}
	}
	code, b, h := get(t, srv.URL+"/images/"+id+"/amd64/disk.vhd?wait=false")
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(b, "queue full") {
		t.Errorf("third build: %d %q %s, want 503 with Retry-After", code, h.Get("Retry-After"), b)
	}
	close(fb.release)
	<-fb.started // disk.qcow2 has its slot: nothing waits
	if code, _, _ := get(t, srv.URL+"/images/"+id+"/amd64/disk.vhd"); code != 200 {
		t.Errorf("after the queue drained: %d", code)
	}
}
