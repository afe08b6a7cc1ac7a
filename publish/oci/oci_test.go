package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
)

// testDisk writes a sparse raw disk of 8 MiB with incompressible data in two places and returns it
// opened, with its path.
func testDisk(t *testing.T, dir string) (string, diskfmt.Image) {
	t.Helper()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	for _, off := range []int64{0, 5 << 20} {
		rnd.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	img, err := diskfmt.Open(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return raw, img
}

// testQcow2 writes testDisk converted with diskfmt into dir/disk.qcow2 and returns the path and
// its bytes.
func testQcow2(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	_, img := testDisk(t, dir)
	q, err := diskfmt.Lookup("qcow2")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "disk.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Write(context.Background(), f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want, _ := os.ReadFile(path)
	return path, want
}

func openArt(t *testing.T, path string) publish.Artifact {
	t.Helper()
	img, err := diskfmt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return publish.Artifact{Path: path, Image: img, BootModes: []string{"uefi", "bios"}, Arch: "x86_64"}
}

var fast = remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 6}

func TestOCIContainerDisk(t *testing.T) {
	host := ocitest.Serve(t, ocitest.Registry())
	dir := t.TempDir()
	qc, want := testQcow2(t, dir)

	var events []publish.Event
	push := func(ref, path string) publish.Result {
		t.Helper()
		o := &Target{Ref: ref, Insecure: true, Backoff: fast}
		res, err := o.Push(context.Background(), openArt(t, path), func(e publish.Event) { events = append(events, e) })
		if err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		return res
	}
	res := push(host+"/vms/a:1", qc)
	if res.Existing || !strings.HasPrefix(res.ID, "sha256:") || res.Details["kind"] != "containerdisk" {
		t.Errorf("first push: %+v", res)
	}
	m, cf, es := ocitest.PullContainerDisk(t, host+"/vms/a:1")
	ocitest.CheckContainerDisk(t, es, want)
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("media types: %s %s %s", m.MediaType, m.Config.MediaType, m.Layers[0].MediaType)
	}
	if m.Annotations[AnnotationFormat] != "qcow2" || m.Annotations[AnnotationVirtualSize] != "8388608" || m.Annotations[AnnotationBootModes] != "bios,uefi" {
		t.Errorf("annotations: %v", m.Annotations)
	}
	if cf.Architecture != "amd64" || cf.OS != "linux" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config: %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	var sawUpload bool
	for _, e := range events {
		if e.Step == "upload" && e.Total > 0 && e.Done == e.Total {
			sawUpload = true
		}
	}
	if !sawUpload {
		t.Errorf("no complete upload event in %d events", len(events))
	}

	// Reproducible: another repository, same digest; the same tag again: nothing uploaded.
	if r2 := push(host+"/vms/b:x", qc); r2.ID != res.ID || r2.Existing {
		t.Errorf("second repository: %s existing=%v, first %s", r2.ID, r2.Existing, res.ID)
	}
	if r3 := push(host+"/vms/a:1", qc); r3.ID != res.ID || !r3.Existing {
		t.Errorf("rerun: %s existing=%v, want %s existing", r3.ID, r3.Existing, res.ID)
	}

	// A raw disk is converted (beside it, the temporary file removed) to the same qcow2 bytes.
	rawPath := filepath.Join(dir, "disk.raw")
	r4 := push(host+"/vms/raw:1", rawPath)
	if r4.Details["converted_from"] != "raw" || r4.ID != res.ID {
		t.Errorf("raw push: %+v; want the qcow2 push's digest %s", r4, res.ID)
	}
	_, _, es = ocitest.PullContainerDisk(t, host+"/vms/raw:1")
	ocitest.CheckContainerDisk(t, es, want)
	if left, _ := filepath.Glob(filepath.Join(dir, ".imgfab-oci-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestOCIArtifact(t *testing.T) {
	host := ocitest.Serve(t, ocitest.Registry())
	dir := t.TempDir()
	qc, want := testQcow2(t, dir)
	o := &Target{Ref: host + "/disks/d:1", Insecure: true, Artifact: true, Backoff: fast}
	res, err := o.Push(context.Background(), openArt(t, qc), nil)
	if err != nil {
		t.Fatal(err)
	}
	digest, m, _ := ocitest.PullManifest(t, o.Ref)
	if digest != res.ID {
		t.Errorf("tag at %s, push said %s", digest, res.ID)
	}
	if m.SchemaVersion != 2 || m.MediaType != types.OCIManifestSchema1 || m.ArtifactType != ArtifactType {
		t.Errorf("manifest: schema %d media type %s artifactType %s", m.SchemaVersion, m.MediaType, m.ArtifactType)
	}
	if m.Config.MediaType != EmptyMediaType || m.Config.Size != 2 ||
		m.Config.Digest.String() != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Errorf("config descriptor: %+v, want the empty descriptor", m.Config)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.imgfab.disk.qcow2" ||
		m.Layers[0].Size != int64(len(want)) || m.Layers[0].Annotations["org.opencontainers.image.title"] != "disk.qcow2" {
		t.Errorf("layers: %+v", m.Layers)
	}
	if m.Annotations[AnnotationFormat] != "qcow2" || m.Annotations[AnnotationVirtualSize] != "8388608" || m.Annotations[AnnotationBootModes] != "bios,uefi" {
		t.Errorf("annotations: %v", m.Annotations)
	}
	if got := ocitest.PullBlob(t, o.Ref, m.Layers[0].Digest.String()); !bytes.Equal(got, want) {
		t.Errorf("pulled blob: %d bytes, differs from the disk (%d)", len(got), len(want))
	}
	if b := ocitest.PullBlob(t, o.Ref, m.Config.Digest.String()); string(b) != "{}" {
		t.Errorf("config blob %q, want {}", b)
	}
	res2, err := o.Push(context.Background(), openArt(t, qc), nil)
	if err != nil || !res2.Existing || res2.ID != res.ID {
		t.Errorf("rerun: %+v %v", res2, err)
	}
}

// faulty wraps a registry: the first request of each kind (method and endpoint: ping excepted)
// gets a 500 or a 503, and the first two blob uploads with a body are cut off (connection closed)
// after 64 KiB.
type faulty struct {
	h     http.Handler
	mu    sync.Mutex
	seen  map[string]bool
	drops int
	off   bool
	log   []string
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.off {
		f.mu.Unlock()
		f.h.ServeHTTP(w, r)
		return
	}
	kind := r.Method + " manifests"
	if strings.Contains(r.URL.Path, "/blobs/uploads/") {
		kind = r.Method + " uploads"
	} else if strings.Contains(r.URL.Path, "/blobs/") {
		kind = r.Method + " blobs"
	}
	drop := (r.Method == http.MethodPatch || r.Method == http.MethodPut) && r.ContentLength != 0 &&
		strings.Contains(r.URL.Path, "/blobs/uploads/") && f.drops < 2
	fail := !drop && !f.seen[kind] && r.URL.Path != "/v2/"
	if drop {
		f.drops++
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	f.seen[kind] = true
	code := []int{500, 503}[len(f.log)%2]
	f.mu.Unlock()
	switch {
	case drop:
		io.CopyN(io.Discard, r.Body, 64<<10)
		f.record("drop " + r.Method)
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("no hijacker")
		}
		c, _, err := hj.Hijack()
		if err == nil {
			c.Close()
		}
	case fail:
		f.record(fmt.Sprintf("%d %s", code, kind))
		w.WriteHeader(code)
	default:
		f.h.ServeHTTP(w, r)
	}
}

func (f *faulty) record(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

func TestOCIFaults(t *testing.T) {
	dir := t.TempDir()
	qc, want := testQcow2(t, dir)
	for _, artifact := range []bool{false, true} {
		f := &faulty{h: ocitest.Registry()}
		srv := httptest.NewServer(f)
		host := strings.TrimPrefix(srv.URL, "http://")
		o := &Target{Ref: host + "/vms/f:1", Insecure: true, Artifact: artifact, Backoff: fast}
		res, err := o.Push(context.Background(), openArt(t, qc), nil)
		if err != nil {
			t.Fatalf("artifact=%v: push through faults %v: %v", artifact, f.log, err)
		}
		if f.drops != 2 || len(f.log) < 4 {
			t.Errorf("artifact=%v: faults injected: %v; want 2 drops and some 5xx", artifact, f.log)
		}
		// Pull from the same storage without faults.
		f.mu.Lock()
		f.off = true
		f.mu.Unlock()
		if artifact {
			if digest, _, _ := ocitest.PullManifest(t, host+"/vms/f:1"); digest != res.ID {
				t.Errorf("tag at %s, push said %s", digest, res.ID)
			}
			if got := ocitest.PullBlob(t, host+"/vms/f:1", res.Details["layer_digest"]); !bytes.Equal(got, want) {
				t.Errorf("pulled artifact blob differs (%d bytes)", len(got))
			}
		} else {
			_, _, es := ocitest.PullContainerDisk(t, host+"/vms/f:1")
			ocitest.CheckContainerDisk(t, es, want)
		}
		srv.Close()
	}
}

// useDockerConfig points HOME and DOCKER_CONFIG at a new ~/.docker/config.json holding
// user:pass for host.
func useDockerConfig(t *testing.T, host, user, pass string) {
	t.Helper()
	home, dc := ocitest.DockerConfig(t, host, user, pass)
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", dc)
}

func TestOCICredentials(t *testing.T) {
	const user, secret = "imgfab", "S3cr3t-Pa55word-imgfab-7731"
	host := ocitest.Serve(t, ocitest.BasicAuth(ocitest.Registry(), user, secret))
	dir := t.TempDir()
	qc, _ := testQcow2(t, dir)

	var seen strings.Builder
	prog := func(e publish.Event) { fmt.Fprintf(&seen, "%+v\n", e) }
	useDockerConfig(t, host, user, secret)
	o := &Target{Ref: host + "/vms/c:1", Insecure: true, Backoff: fast}
	res, err := o.Push(context.Background(), openArt(t, qc), prog)
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	fmt.Fprintf(&seen, "%+v\n", res)

	// Anonymous (no config): 401, named.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	_, err = o.Push(context.Background(), openArt(t, qc), prog)
	if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous push: %v, want a 401", err)
	}

	// A wrong password: a clear 401 without the password.
	wrong := secret + "-wrong"
	useDockerConfig(t, host, user, wrong)
	o.Ref = host + "/vms/c:2"
	_, err = o.Push(context.Background(), openArt(t, qc), prog)
	if err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("wrong password: %v, want a 401", err)
	}
	fmt.Fprintln(&seen, err.Error())
	enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
	for _, s := range []string{secret, enc, "Pa55word"} {
		if strings.Contains(seen.String(), s) {
			t.Errorf("%q appears in the output:\n%s", s, seen.String())
		}
	}
}

// TestOCICancel: a cancelled context (Ctrl-C) during a blob upload stops the push with an error
// that says so.
func TestOCICancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := ocitest.Registry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			cancel()
			io.Copy(io.Discard, r.Body) // until the client gives up the request
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	qc, _ := testQcow2(t, dir)
	o := &Target{Ref: host + "/vms/x:1", Insecure: true, Backoff: fast}
	_, err := o.Push(ctx, openArt(t, qc), nil)
	if err == nil || !strings.Contains(err.Error(), "context canceled") || !strings.Contains(err.Error(), "oci: upload") {
		t.Errorf("cancelled push: %v", err)
	}
}

// BenchmarkOCIPush pushes a 48 MiB qcow2 (16 MiB random, 16 MiB text-like, 16 MiB zeros) as a
// containerDisk to an in-process registry: the digest pass (tar+gzip) and the upload. Bytes/s are
// of the qcow2 file.
func BenchmarkOCIPush(b *testing.B) {
	for _, artifact := range []bool{false, true} {
		b.Run(map[bool]string{false: "containerdisk", true: "artifact"}[artifact], func(b *testing.B) {
			dir := b.TempDir()
			raw := filepath.Join(dir, "disk.raw")
			f, _ := os.Create(raw)
			rnd := rand.New(rand.NewSource(2))
			buf := make([]byte, 16<<20)
			rnd.Read(buf)
			f.Write(buf)
			var text []byte
			for i := 0; len(text) < 16<<20; i++ {
				text = fmt.Appendf(text, "line %d: the quick brown fox %x jumps\n", i, rnd.Intn(1<<16))
			}
			f.Write(text[:16<<20])
			f.Truncate(48 << 20)
			f.Close()
			img, err := diskfmt.Open(context.Background(), raw)
			if err != nil {
				b.Fatal(err)
			}
			defer img.Close()
			q, _ := diskfmt.Lookup("qcow2")
			qc := filepath.Join(dir, "disk.qcow2")
			qf, _ := os.Create(qc)
			if err := q.Write(context.Background(), qf, img); err != nil {
				b.Fatal(err)
			}
			qf.Close()
			fi, _ := os.Stat(qc)
			qimg, err := diskfmt.Open(context.Background(), qc)
			if err != nil {
				b.Fatal(err)
			}
			defer qimg.Close()
			a := publish.Artifact{Path: qc, Image: qimg}
			host := ocitest.Serve(b, ocitest.Registry())
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// A new repository each time: the blob is uploaded again.
				o := &Target{Ref: fmt.Sprintf("%s/bench%d/d:1", host, i), Insecure: true, Artifact: artifact}
				if _, err := o.Push(context.Background(), a, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
