package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
)

const serveToken = "imgfab-test-token-0123456789"

// replica is one `imgfab serve` process of a test.
type replica struct {
	url   string
	cmd   *exec.Cmd
	logs  *bytes.Buffer
	args  []string
	cache string
}

// startReplica runs `imgfab serve` against the store on a free loopback port and waits until
// it is ready. cache is its scratch directory (kept across restarts of the same replica).
func startReplica(t *testing.T, store, cache string, extra ...string) *replica {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(serveToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &replica{url: "http://" + addr, logs: &bytes.Buffer{}, cache: cache,
		args: append([]string{"serve", "--store", store, "--insecure", "--listen", addr, "--cache", cache,
			"--token-file", tok, "--pin-ttl", "0s", "--max-builds", "1"}, extra...)}
	r.start(t)
	return r
}

func (r *replica) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command(imgfabBin, r.args...)
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := r.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		resp, err := http.Get(r.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if i == 200 {
			t.Fatalf("imgfab serve did not get ready: %v\n%s", err, r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 kills the replica as SIGKILL does: no cleanup of its own.
func (r *replica) kill9(t *testing.T) {
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
}

// call makes a request and returns the status and body.
func call(t *testing.T, method, url, token string, body io.Reader) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, url, err)
	}
	return resp.StatusCode, b, resp.Header
}

// postClass posts a class and returns its id.
func postClass(t *testing.T, r *replica, yaml string) string {
	t.Helper()
	code, b, _ := call(t, "POST", r.url+"/classes", serveToken, strings.NewReader(yaml))
	var out struct{ ID string }
	if code != http.StatusCreated || json.Unmarshal(b, &out) != nil || len(out.ID) != 64 {
		t.Fatalf("POST /classes: %d %s", code, b)
	}
	return out.ID
}

// storeTags lists the repository's tags with prefix.
func storeTags(t *testing.T, repo, prefix string) []string {
	t.Helper()
	r, err := name.NewRepository(repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(r)
	if err != nil && strings.Contains(err.Error(), "NAME_UNKNOWN") {
		return nil // no repository: nothing was ever stored
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tg := range tags {
		if strings.HasPrefix(tg, prefix) {
			out = append(out, tg)
		}
	}
	return out
}

func demoClass(base string, n int) string {
	return fmt.Sprintf("from: %s\nkernel:\n  cmdline: console=ttyS0 imgfab.class=%d\nhostname: web-%d\n", base, n, n)
}

// TestServeReplicas (issue 16): three `imgfab serve` replicas on loopback share one store (the
// reference registry). 60 concurrent requests for 4 classes × 2 formats, spread over the replicas,
// all succeed; every response for a key has the same sha256 (and ETag); the store ends with
// exactly one artifact per key. Then: a replica killed with SIGKILL in the middle of a build;
// the request retried on another succeeds, the store holds no partial artifact, and the killed
// replica, restarted, serves it from the store without building. Then the base image is
// re-tagged and one class refreshed: only its artifacts are rebuilt, from the new base, and the
// old ones are still served by digest.
func TestServeReplicas(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow integration test (three replicas, nine builds): IMGFAB_SLOW=1")
	}
	reg := startRegistry(t)
	src := fixture(t, "demo/oci", "mkdemo.sh")
	base := reg + "/base/demo:1"
	testimage.PushLayout(t, src, base)
	store := reg + "/imgfab/factory"
	caches := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var rs []*replica
	for _, c := range caches {
		rs = append(rs, startReplica(t, store, c))
	}
	var ids []string
	for n := range 4 {
		ids = append(ids, postClass(t, rs[n%3], demoClass(base, n)))
	}
	if again := postClass(t, rs[2], demoClass(base, 0)); again != ids[0] {
		t.Errorf("the same class posted twice: ids %s and %s", ids[0], again)
	}
	files := []string{"disk.qcow2", "disk.vhd"}

	type got struct{ sha, etag string }
	var mu sync.Mutex
	byKey := map[string][]got{}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			id, file, r := ids[i%4], files[(i/4)%2], rs[i%3]
			code, body, h := call(t, "GET", r.url+"/images/"+id+"/amd64/"+file, "", nil)
			if code != 200 {
				t.Errorf("request %d (%s): %d %s", i, r.url, code, body)
				return
			}
			sum := sha256.Sum256(body)
			mu.Lock()
			k := id + "/" + file
			byKey[k] = append(byKey[k], got{hex.EncodeToString(sum[:]), h.Get("ETag")})
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(byKey) != 8 {
		t.Fatalf("%d keys answered, want 8", len(byKey))
	}
	shas := map[string]string{}
	for k, gs := range byKey {
		for _, g := range gs {
			if g.sha != gs[0].sha || g.etag != `"sha256:`+g.sha+`"` {
				t.Errorf("%s: responses %+v: want one sha256, and it as the ETag", k, gs)
				break
			}
		}
		shas[k] = gs[0].sha
	}
	if arts := storeTags(t, store, "a-"); len(arts) != 8 {
		t.Errorf("the store holds %d artifacts, want 8: %v", len(arts), arts)
	}

	// Range and HEAD.
	code, part, h := callRange(t, rs[1].url+"/images/"+ids[0]+"/amd64/disk.qcow2", "bytes=0-3")
	if code != http.StatusPartialContent || string(part) != "QFI\xfb" || !strings.HasPrefix(h.Get("Content-Range"), "bytes 0-3/") {
		t.Errorf("Range: %d %q %v", code, part, h)
	}
	if code, b, h := call(t, "HEAD", rs[2].url+"/images/"+ids[0]+"/amd64/disk.qcow2", "", nil); code != 200 || len(b) != 0 || h.Get("ETag") == "" {
		t.Errorf("HEAD: %d, %d bytes, %v", code, len(b), h)
	}

	// A KubeVirt containerDisk from the store: the same image from two replicas, holding the
	// qcow2 the class's disk.qcow2 is.
	var cdRef string
	for _, r := range rs[:2] {
		code, b, _ := call(t, "GET", r.url+"/images/"+ids[2]+"/amd64/containerdisk", "", nil)
		var cd struct{ Image, Digest, Pull string }
		if code != 200 || json.Unmarshal(b, &cd) != nil || !strings.HasPrefix(cd.Digest, "sha256:") {
			t.Fatalf("containerdisk: %d %s", code, b)
		}
		if cdRef != "" && cd.Pull != cdRef {
			t.Errorf("containerdisk: %s from one replica, %s from another", cdRef, cd.Pull)
		}
		cdRef = cd.Pull
	}
	_, qc, _ := call(t, "GET", rs[2].url+"/images/"+ids[2]+"/amd64/disk.qcow2", "", nil)
	if got := ocitest.PulledDisk(t, cdRef); !bytes.Equal(got, qc) {
		t.Errorf("the containerDisk %s holds %d bytes, not the class's qcow2 (%d)", cdRef, len(got), len(qc))
	}

	// kill -9 in the middle of a build: a fifth class, asked of replica 0 without waiting.
	id5 := postClass(t, rs[0], demoClass(base, 5))
	code, b, _ := call(t, "GET", rs[0].url+"/images/"+id5+"/amd64/disk.raw?wait=false", "", nil)
	if code != http.StatusAccepted {
		t.Fatalf("?wait=false: %d %s", code, b)
	}
	waitLog(t, rs[0], `"msg":"build started"`)
	rs[0].kill9(t)
	if arts := storeTags(t, store, "a-"); len(arts) != 8 {
		t.Errorf("after the kill the store holds %d artifacts, want the 8 before (no partial one)", len(arts))
	}
	code, body5, _ := call(t, "GET", rs[1].url+"/images/"+id5+"/amd64/disk.raw", "", nil)
	if code != 200 {
		t.Fatalf("retry on replica 1: %d %s", code, body5)
	}
	rs[0].logs.Reset()
	rs[0].start(t)
	code, again5, _ := call(t, "GET", rs[0].url+"/images/"+id5+"/amd64/disk.raw", "", nil)
	if code != 200 || !bytes.Equal(again5, body5) {
		t.Errorf("restarted replica: %d, %d bytes (want %d, the same)", code, len(again5), len(body5))
	}
	if strings.Contains(rs[0].logs.String(), "build started") {
		t.Errorf("the restarted replica built again:\n%s", rs[0].logs.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(caches[0], "tmp")); len(ents) != 0 {
		t.Errorf("the killed build's scratch is still there after the restart: %v", ents)
	}

	// A patched base: re-tag base with one more layer, refresh class 1 only.
	retagPatched(t, base)
	code, b, _ = call(t, "POST", rs[2].url+"/classes/"+ids[1]+"/refresh", serveToken, nil)
	var rf struct {
		Architectures []struct {
			Arch, OldSource, NewSource string
			Changed                    bool
			Rebuilding                 []string
		}
	}
	if code != http.StatusAccepted || json.Unmarshal(b, &rf) != nil || len(rf.Architectures) != 1 || len(rf.Architectures[0].Rebuilding) != 2 {
		t.Fatalf("refresh: %d %s: want 202 and both files of amd64 rebuilding", code, b)
	}
	for _, f := range files {
		code, nb, _ := call(t, "GET", rs[0].url+"/images/"+ids[1]+"/amd64/"+f, "", nil)
		sum := sha256.Sum256(nb)
		if code != 200 || hex.EncodeToString(sum[:]) == shas[ids[1]+"/"+f] {
			t.Errorf("class 1 %s after the refresh: %d, sha256 %x (before %s): want a new build", f, code, sum, shas[ids[1]+"/"+f])
		}
		// The old artifact, by digest.
		code, ob, _ := call(t, "GET", rs[1].url+"/blobs/sha256/"+shas[ids[1]+"/"+f], "", nil)
		osum := sha256.Sum256(ob)
		if code != 200 || hex.EncodeToString(osum[:]) != shas[ids[1]+"/"+f] {
			t.Errorf("class 1's old %s by digest: %d", f, code)
		}
		// Class 0 was not refreshed: still its old artifact.
		code, cb, _ := call(t, "GET", rs[2].url+"/images/"+ids[0]+"/amd64/"+f, "", nil)
		csum := sha256.Sum256(cb)
		if code != 200 || hex.EncodeToString(csum[:]) != shas[ids[0]+"/"+f] {
			t.Errorf("class 0 %s (not refreshed) changed: %d", f, code)
		}
	}
	if arts := storeTags(t, store, "a-"); len(arts) != 11 {
		t.Errorf("the store holds %d artifacts, want 11 (8, the fifth class's, 2 rebuilt)", len(arts))
	}
	code, b, _ = call(t, "GET", rs[1].url+"/classes/"+ids[1], "", nil)
	if code != 200 || strings.Count(string(b), `"key"`) != 4 {
		t.Errorf("GET /classes/{id}: %d, want its 4 artifacts listed:\n%s", code, b)
	}

	// SIGTERM while a request waits for its build: the replica drains (the request is answered
	// with the disk), then exits 143.
	id6 := postClass(t, rs[2], demoClass(base, 6))
	rs[2].logs.Reset()
	type answer struct {
		code int
		n    int
	}
	ans := make(chan answer, 1)
	go func() {
		code, b, _ := call(t, "GET", rs[2].url+"/images/"+id6+"/amd64/disk.vmdk", "", nil)
		ans <- answer{code, len(b)}
	}()
	waitLog(t, rs[2], `"msg":"build started"`)
	rs[2].cmd.Process.Signal(syscall.SIGTERM)
	a := <-ans
	err := rs[2].cmd.Wait()
	if a.code != 200 || a.n == 0 {
		t.Errorf("the request in flight at SIGTERM: %d, %d bytes; want the disk", a.code, a.n)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 143 {
		t.Errorf("after the drain: %v, want exit 143\n%s", err, rs[2].logs.String())
	}
}

func callRange(t *testing.T, url, rng string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Range", rng)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// waitLog waits until the replica's log has s.
func waitLog(t *testing.T, r *replica, s string) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if strings.Contains(r.logs.String(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the replica's log never said %s:\n%s", s, r.logs.String())
}

// retagPatched moves the tag ref to its image with one more layer (a "security update").
func retagPatched(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	l := testimage.Layer(t, testimage.GzipTar(t, []testimage.Entry{testimage.Reg("etc/patched", "CVE-2026-0001 fixed\n", 0o644)}))
	patched, err := mutate.AppendLayers(img, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, patched); err != nil {
		t.Fatal(err)
	}
}

// TestServeBadInput (issue 16): each bad request gets the right 4xx with a JSON error, and
// nothing is stored. One replica on a loopback registry (go-containerregistry's, in process).
func TestServeBadInput(t *testing.T) {
	regSrv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer regSrv.Close()
	reg := strings.TrimPrefix(regSrv.URL, "http://")
	store := reg + "/imgfab/factory"
	r := startReplica(t, store, t.TempDir())
	okClass := demoClass(reg+"/base/demo:1", 0)
	zeros := strings.Repeat("0", 64)
	for _, c := range []struct {
		name, method, path, token string
		body                      io.Reader
		want                      int
		msg                       string
	}{
		{"malformed-yaml", "POST", "/classes", serveToken, strings.NewReader("from: [unclosed\n"), 400, "YAML"},
		{"not-a-mapping", "POST", "/classes", serveToken, strings.NewReader("- a\n- b\n"), 400, "want one class"},
		{"unknown-key", "POST", "/classes", serveToken, strings.NewReader(okClass + "colour: blue\n"), 400, "colour"},
		{"local-source", "POST", "/classes", serveToken, strings.NewReader("from: oci:/etc\n"), 400, "reads no files of yours"},
		{"local-layer", "POST", "/classes", serveToken, strings.NewReader(okClass + "layers: [/etc]\n"), 400, "layers"},
		{"host-keys", "POST", "/classes", serveToken, strings.NewReader(okClass + "boot: {uki: true}\nsecure_boot: {key: /etc/ssl/private/k.pem, cert: /etc/ssl/certs/c.pem}\n"), 400, "secure_boot: the service reads no files of yours"},
		{"gigabyte-body", "POST", "/classes", serveToken, io.LimitReader(zeroReader{}, 1<<30), 413, "request body over"},
		{"no-token", "POST", "/classes", "", strings.NewReader(okClass), 401, "Bearer"},
		{"wrong-token", "POST", "/classes", serveToken + "x", strings.NewReader(okClass), 403, "wrong token"},
		{"refresh-no-token", "POST", "/classes/" + zeros + "/refresh", "", nil, 401, "Bearer"},
		{"unknown-class", "GET", "/images/" + zeros + "/amd64/disk.qcow2", "", nil, 404, "no class"},
		{"unknown-class-info", "GET", "/classes/" + zeros, "", nil, 404, "no class"},
		{"bad-id", "GET", "/images/XYZ/amd64/disk.qcow2", "", nil, 400, "64 lower-case hex"},
		{"dotdot", "GET", "/images/" + zeros + "/../../etc/passwd", "", nil, 400, "no . or .."},
		{"dotdot-encoded", "GET", "/images/" + zeros + "/amd64/%2e%2e", "", nil, 400, "no . or .."},
		{"slash-encoded", "GET", "/images/" + zeros + "/amd64%2f..%2fx/disk.raw", "", nil, 400, "malformed path"},
		{"unknown-format", "GET", "/images/" + zeros + "/amd64/disk.iso", "", nil, 404, "want one of"},
		{"unknown-arch", "GET", "/images/" + zeros + "/riscv64/disk.raw", "", nil, 404, "architecture"},
		{"unknown-build", "GET", "/builds/" + zeros, "", nil, 404, "no build"},
		{"unknown-blob", "GET", "/blobs/sha256/" + zeros, "", nil, 404, "no blob"},
		{"unknown-endpoint", "DELETE", "/classes", "", nil, 404, "no such endpoint"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, r.url+c.path, c.body)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = "//" + req.URL.Host + c.path // as written: no client-side cleaning
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Error  string
				Status int
			}
			if resp.StatusCode != c.want {
				t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, resp.StatusCode, c.want, b)
			}
			if json.Unmarshal(b, &e) != nil || e.Status != c.want || !strings.Contains(e.Error, c.msg) {
				t.Errorf("%s %s: body %q: want a JSON error with %q", c.method, c.path, b, c.msg)
			}
		})
	}
	if tags := storeTags(t, store, ""); len(tags) != 0 {
		t.Errorf("bad requests stored %v", tags)
	}
}
