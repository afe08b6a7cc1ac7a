// Package gcptest runs, on loopback, what imgfab's GCP target talks to: fake-gcs-server (in
// process) behind a listener that can inject faults, and a Compute Engine stub that checks
// images.insert as GCE would (name rules, a UUID requestId, rawDisk.source, architecture, known
// guestOsFeatures, an optional bearer token) and runs the global operation PENDING → DONE. A
// token endpoint stands in for Google's OAuth2 server so that service-account credentials can
// be used end to end. For tests only.
package gcptest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
)

// GCS is fake-gcs-server (in process) behind a real loopback listener, with an optional
// fault injector in front of it.
type GCS struct {
	URL    string // http://127.0.0.1:PORT
	Fake   *fakestorage.Server
	Chunks atomic.Int64 // upload requests seen (PUT/POST under /upload/)
	// fault, when set, is asked for each upload request (n counts from 1): "drop" reads part of
	// the body and closes the connection, "503" answers 503; "" passes it on.
	Fault  func(n int64) string
	Faults atomic.Int64
	// Token, when set, must be the bearer token of every request (else 401).
	Token string
	// Unauthorized counts requests refused for a missing or wrong token.
	Unauthorized atomic.Int64
}

func StartGCS(t testing.TB, buckets ...string) *GCS {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", NoListener: true, PublicHost: l.Addr().String(),
	})
	if err != nil {
		t.Fatalf("fake-gcs-server: %v", err)
	}
	for _, b := range buckets {
		fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	s := &GCS{Fake: fake}
	h := fake.HTTPHandler()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/upload/") && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
			n := s.Chunks.Add(1)
			if s.Fault != nil {
				switch s.Fault(n) {
				case "drop":
					s.Faults.Add(1)
					// Read about half the chunk, then cut the connection mid-body.
					io.CopyN(io.Discard, r.Body, max(r.ContentLength/2, 1))
					hj, ok := w.(http.Hijacker)
					if !ok {
						t.Error("fault proxy: no hijacker")
						return
					}
					c, _, err := hj.Hijack()
					if err == nil {
						c.Close()
					}
					return
				case "503":
					s.Faults.Add(1)
					http.Error(w, `{"error":{"code":503,"message":"backend unavailable"}}`, http.StatusServiceUnavailable)
					return
				}
			}
		}
		if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
			s.Unauthorized.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":401,"message":"Invalid Credentials"}}`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(fake.Stop)
	s.URL = ts.URL
	return s
}

func (s *GCS) Options() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(s.URL + "/storage/v1/"), option.WithoutAuthentication()}
}

// read returns the object's bytes, read back through the storage client.
func (s *GCS) Read(t testing.TB, bucket, object string) []byte {
	t.Helper()
	ctx := context.Background()
	c, err := storage.NewClient(ctx, s.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Bucket(bucket).Object(object).NewReader(ctx)
	if err != nil {
		t.Fatalf("reading back gs://%s/%s: %v", bucket, object, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading back gs://%s/%s: %v", bucket, object, err)
	}
	return b
}

// Compute answers the Compute Engine calls imgfab makes, checking each as GCE would.
type Compute struct {
	t       testing.TB
	Project string
	Token   string                 // when set, every request must carry "Authorization: Bearer TOKEN"
	Source  func(src string) error // checks rawDisk.Source (e.g. that the object exists)
	OpFail  string                 // when set, the operation ends DONE with this error
	mu      sync.Mutex
	Images  map[string]*compute.Image // made
	Inserts []*compute.Image          // bodies of images.insert
	Ops     map[string]*compute.Image // operation → image it makes
	Polls   map[string]int            // waits per operation
	ReqIDs  []string
	Calls   []string
	URL     string
}

var UUIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func StartCompute(t testing.TB, project string) *Compute {
	c := &Compute{t: t, Project: project, Images: map[string]*compute.Image{}, Ops: map[string]*compute.Image{}, Polls: map[string]int{}}
	ts := httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(ts.Close)
	c.URL = ts.URL
	return c
}

func (c *Compute) Options() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(c.URL + "/compute/v1/"), option.WithoutAuthentication()}
}

func (c *Compute) fail(w http.ResponseWriter, code int, format string, a ...any) {
	c.t.Errorf("compute stub: "+format, a...)
	msg, _ := json.Marshal(fmt.Sprintf(format, a...))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"error":{"code":%d,"message":%s}}`, code, msg)
}

// serve checks a Compute Engine request's token and project and routes it to its handler (c.mu
// held).
func (c *Compute) serve(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Calls = append(c.Calls, r.Method+" "+r.URL.Path)
	if c.Token != "" && r.Header.Get("Authorization") != "Bearer "+c.Token {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":401,"message":"Request had invalid authentication credentials."}}`)
		c.t.Errorf("compute stub: %s %s without the issued bearer token", r.Method, r.URL.Path)
		return
	}
	prefix := "/compute/v1/projects/" + c.Project + "/global/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		c.fail(w, 404, "unexpected path %s (project %s)", r.URL.Path, c.Project)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, prefix)
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(rest, "images/"):
		c.getImage(w, strings.TrimPrefix(rest, "images/"))
	case r.Method == http.MethodPost && rest == "images":
		c.insertImage(w, r, prefix)
	case r.Method == http.MethodPost && strings.HasPrefix(rest, "operations/") && strings.HasSuffix(rest, "/wait"):
		c.waitOperation(w, strings.TrimSuffix(strings.TrimPrefix(rest, "operations/"), "/wait"), prefix)
	default:
		c.fail(w, 404, "unexpected call %s %s", r.Method, r.URL.Path)
	}
}

// reply answers v as JSON.
func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// operation is the global operation name inserting img, in status.
func (c *Compute) operation(prefix, name, status string, img *compute.Image) *compute.Operation {
	o := &compute.Operation{Name: name, Status: status, OperationType: "insert", Kind: "compute#operation",
		TargetLink: c.URL + prefix + "images/" + img.Name,
		SelfLink:   c.URL + prefix + "operations/" + name}
	if status == "DONE" {
		o.Progress = 100
	}
	return o
}

// getImage serves images.get: the image, or GCE's 404.
func (c *Compute) getImage(w http.ResponseWriter, name string) {
	img, ok := c.Images[name]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		fmt.Fprintf(w, `{"error":{"code":404,"message":"The resource 'projects/%s/global/images/%s' was not found","errors":[{"reason":"notFound"}]}}`, c.Project, name)
		return
	}
	reply(w, img)
}

// insertImage serves images.insert: checks the request as GCE does (a UUID requestId, the name,
// rawDisk.source, the architecture, known guestOsFeatures), answers 409 for an image that exists,
// else starts a PENDING operation.
func (c *Compute) insertImage(w http.ResponseWriter, r *http.Request, prefix string) {
	id := r.URL.Query().Get("requestId")
	if !UUIDRE.MatchString(id) {
		c.fail(w, 400, "requestId %q is not a UUID", id)
		return
	}
	var img compute.Image
	if err := json.NewDecoder(r.Body).Decode(&img); err != nil {
		c.fail(w, 400, "images.insert body: %v", err)
		return
	}
	c.Inserts = append(c.Inserts, &img)
	c.ReqIDs = append(c.ReqIDs, id)
	if !nameOK(img.Name) {
		c.fail(w, 400, "image name %q invalid", img.Name)
		return
	}
	if img.RawDisk == nil || !strings.HasPrefix(img.RawDisk.Source, "https://storage.googleapis.com/") {
		c.fail(w, 400, "rawDisk.Source missing or not a storage.googleapis.com URL: %+v", img.RawDisk)
		return
	}
	if c.Source != nil {
		if err := c.Source(img.RawDisk.Source); err != nil {
			c.fail(w, 400, "rawDisk.Source %s: %v", img.RawDisk.Source, err)
			return
		}
	}
	if img.Architecture != "X86_64" && img.Architecture != "ARM64" {
		c.fail(w, 400, "architecture %q", img.Architecture)
		return
	}
	for _, f := range img.GuestOsFeatures {
		if !slices.Contains([]string{"UEFI_COMPATIBLE", "GVNIC", "VIRTIO_SCSI_MULTIQUEUE", "SEV_CAPABLE", "MULTI_IP_SUBNET", "SECURE_BOOT", "WINDOWS", "IDPF"}, f.Type) {
			c.fail(w, 400, "guestOsFeatures: unknown type %q", f.Type)
			return
		}
	}
	if _, ok := c.Images[img.Name]; ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(409)
		fmt.Fprintf(w, `{"error":{"code":409,"message":"The resource 'projects/%s/global/images/%s' already exists"}}`, c.Project, img.Name)
		return
	}
	name := fmt.Sprintf("operation-%d", len(c.Inserts))
	c.Ops[name] = &img
	reply(w, c.operation(prefix, name, "PENDING", &img))
}

// waitOperation serves globalOperations.wait: PENDING on the first wait, then DONE with the image
// made (or with OpFail as the operation's error).
func (c *Compute) waitOperation(w http.ResponseWriter, name, prefix string) {
	img, ok := c.Ops[name]
	if !ok {
		c.fail(w, 404, "operation %s unknown", name)
		return
	}
	c.Polls[name]++
	if c.Polls[name] < 2 {
		reply(w, c.operation(prefix, name, "PENDING", img)) // PENDING twice (the insert's answer and this), then DONE
		return
	}
	o := c.operation(prefix, name, "DONE", img)
	if c.OpFail != "" {
		o.Error = &compute.OperationError{Errors: []*compute.OperationErrorErrors{{Code: "INVALID_IMAGE", Message: c.OpFail}}}
	} else {
		made := *img
		made.Status = "READY"
		made.SelfLink = "https://www.googleapis.com/compute/v1/projects/" + c.Project + "/global/images/" + img.Name
		made.Kind = "compute#image"
		c.Images[img.Name] = &made
	}
	reply(w, o)
}

// nameOK: GCE's rule for resource names (RFC 1035 label, at most 63 characters).
func nameOK(s string) bool { return imageNameRE.MatchString(s) }

var imageNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (c *Compute) LastInsert(t testing.TB) *compute.Image {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.Inserts) == 0 {
		t.Fatal("no images.insert")
	}
	return c.Inserts[len(c.Inserts)-1]
}

// SourceCheck makes the stub refuse an insert whose object is not in the bucket.
func SourceCheck(gcs *GCS) func(string) error {
	return func(src string) error {
		rest := strings.TrimPrefix(src, "https://storage.googleapis.com/")
		b, o, _ := strings.Cut(rest, "/")
		if _, err := gcs.Fake.GetObject(b, o); err != nil {
			return fmt.Errorf("object not found: %v", err)
		}
		return nil
	}
}

// Credentials writes a service-account key file whose token_uri is a loopback token server,
// and returns its path and the access token that server issues. GOOGLE_APPLICATION_CREDENTIALS
// set to the path makes the Google clients sign requests with that token.
func Credentials(t testing.TB) (path, token string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var tb [16]byte
	rand.Read(tb[:])
	token = fmt.Sprintf("ya29.test-%x", tb)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Method != http.MethodPost || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || r.Form.Get("assertion") == "" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, token)
	}))
	t.Cleanup(ts.Close)
	sa := map[string]string{
		"type":           "service_account",
		"project_id":     "proj-1",
		"private_key_id": "k1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "imgfab-test@proj-1.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      ts.URL + "/token",
	}
	b, _ := json.Marshal(sa)
	path = filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, token
}
