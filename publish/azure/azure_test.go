package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/azure/azuretest"
)

// azTestDisk writes a sparse raw disk of size bytes with data at the given offsets (each 200 KiB
// of a pattern, some of it zero) and returns it opened, with the fixed VHD diskfmt writes for it.
func azTestDisk(t testing.TB, size int64, at ...int64) (raw diskfmt.Image, vhdPath string) {
	t.Helper()
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "disk.raw")
	f, err := os.Create(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	for _, off := range at {
		b := make([]byte, min(200<<10, size-off))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		clear(b[min(64<<10, len(b)):min(128<<10, len(b))]) // a zero block inside the data
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	raw, err = diskfmt.Open(context.Background(), rawPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	vhdPath = filepath.Join(dir, "disk.vhd")
	out, err := os.Create(vhdPath)
	if err != nil {
		t.Fatal(err)
	}
	vf, _ := diskfmt.Lookup("vhd")
	if err := vf.Write(context.Background(), out, raw); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return raw, vhdPath
}

func azOpen(t testing.TB, path string, modes ...string) publish.Artifact {
	t.Helper()
	img, err := diskfmt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return publish.Artifact{Path: path, Image: img, BootModes: modes, Arch: "x86_64"}
}

// azDownload reads the whole page blob back.
func azMustEqualFile(t testing.TB, got []byte, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("blob differs from %s: %d vs %d bytes, first difference at %d", path, len(got), len(want), i)
	}
}

func azAtoi(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("detail %q: %v", s, err)
	}
	return n
}

// azCheckRanges checks that the blob's written pages are exactly the data: no zero range was sent.
func azCheckRanges(t testing.TB, res publish.Result, blobURL string) {
	t.Helper()
	rs, err := pageBlobRanges(context.Background(), blobURL, azuretest.Account, azuretest.Key)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range rs {
		n += r[1]
	}
	size, zero := azAtoi(t, res.Details["vhd_bytes"]), azAtoi(t, res.Details["zero_bytes_skipped"])
	if n != size-zero {
		t.Fatalf("page ranges hold %d bytes, want %d (vhd %d - zero %d): %v", n, size-zero, size, zero, rs)
	}
	if zero == 0 || azAtoi(t, res.Details["zero_ranges_skipped"]) == 0 {
		t.Fatalf("no zero range skipped: %v", res.Details)
	}
}

func azAzuriteTarget(ep, name string) *Target {
	return &Target{StorageAccount: azuretest.Account, StorageKey: azuretest.Key, BlobEndpoint: ep, ImageName: name, SkipImage: true}
}

func TestAzureUploadFixedVHDAndRerun(t *testing.T) {
	ep := azuretest.Start(t)
	_, vhd := azTestDisk(t, 9<<20+100<<10, 0, 3<<20+4096, 9<<20)
	a := azOpen(t, vhd)
	az := azAzuriteTarget(ep, "fixed")
	res, err := az.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Details["converted_to_vhd"] != "false" {
		t.Fatalf("a whole-MiB fixed VHD was converted: %v", res.Details)
	}
	azMustEqualFile(t, azuretest.Download(t, res.ID), vhd)
	azCheckRanges(t, res, res.ID)
	if got, want := res.Details["bytes_sent"], strconv.FormatInt(azAtoi(t, res.Details["vhd_bytes"])-azAtoi(t, res.Details["zero_bytes_skipped"]), 10); got != want {
		t.Fatalf("bytes_sent %s, want %s", got, want)
	}

	res2, err := az.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Details["blob_existing"] != "true" || res2.Details["bytes_sent"] != "0" {
		t.Fatalf("rerun sent data: %v", res2.Details)
	}
	azMustEqualFile(t, azuretest.Download(t, res.ID), vhd)
}

func TestAzureConvertOnTheFly(t *testing.T) {
	ep := azuretest.Start(t)
	raw, vhd := azTestDisk(t, 5<<20+3*512, 1<<20, 5<<20)
	res, err := azAzuriteTarget(ep, "conv").Push(context.Background(), publish.Artifact{Path: "", Image: raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Details["converted_to_vhd"] != "true" {
		t.Fatalf("not converted: %v", res.Details)
	}
	azMustEqualFile(t, azuretest.Download(t, res.ID), vhd)
	azCheckRanges(t, res, res.ID)

	// The same content as a fixed VHD file has the same content hash: a rerun from the VHD file
	// sends nothing.
	res2, err := azAzuriteTarget(ep, "conv").Push(context.Background(), azOpen(t, vhd), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Details["content_sha256"] != res.Details["content_sha256"] || res2.Details["bytes_sent"] != "0" {
		t.Fatalf("VHD file and converted raw differ: %v vs %v", res2.Details, res.Details)
	}
}

func TestAzureResumeAfterCancel(t *testing.T) {
	ep := azuretest.Start(t)
	_, vhd := azTestDisk(t, 16<<20, 0, 2<<20, 4<<20, 6<<20, 8<<20, 10<<20, 12<<20, 14<<20)
	a := azOpen(t, vhd)
	az := azAzuriteTarget(ep, "resume")
	az.Workers, az.PageChunk = 1, 64<<10
	ctx, cancel := context.WithCancel(context.Background())
	var puts atomic.Int32
	_, err := az.Push(ctx, a, func(e publish.Event) {
		if e.Step == "upload" && e.Done > 0 && puts.Add(1) == 5 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "rerun to resume") {
		t.Fatalf("cancelled push: err = %v", err)
	}
	res, err := az.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	resumed, ranges := azAtoi(t, res.Details["ranges_resumed"]), azAtoi(t, res.Details["data_ranges"])
	sent := azAtoi(t, res.Details["ranges_sent"])
	if resumed < 5 || sent+resumed != ranges {
		t.Fatalf("resume: %d ranges were there, %d sent, %d in all: %v", resumed, sent, ranges, res.Details)
	}
	azMustEqualFile(t, azuretest.Download(t, res.ID), vhd)
	azCheckRanges(t, res, res.ID)

	// Another disk under the same name replaces the blob (no stale pages remain).
	_, vhd2 := azTestDisk(t, 16<<20, 1<<20)
	res3, err := az.Push(context.Background(), azOpen(t, vhd2), nil)
	if err != nil {
		t.Fatal(err)
	}
	azMustEqualFile(t, azuretest.Download(t, res3.ID), vhd2)
	azCheckRanges(t, res3, res3.ID)
}

// azFaultProxy forwards to Azurite, answering 503 to every third Put Page and dropping the
// connection of every fifth (after reading the request).
type azFaultProxy struct {
	rp           *httputil.ReverseProxy
	n, e503, cut atomic.Int32
}

func (f *azFaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Query().Get("comp") == "page" {
		switch n := f.n.Add(1); {
		case n%3 == 0:
			io.Copy(io.Discard, r.Body)
			f.e503.Add(1)
			http.Error(w, "ServerBusy", http.StatusServiceUnavailable)
			return
		case n%5 == 0:
			io.CopyN(io.Discard, r.Body, 1000)
			f.cut.Add(1)
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
	}
	f.rp.ServeHTTP(w, r)
}

func TestAzureFaults(t *testing.T) {
	ep := azuretest.Start(t)
	u, _ := url.Parse(ep)
	u.Path = ""
	fp := &azFaultProxy{rp: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	_, vhd := azTestDisk(t, 12<<20, 0, 1<<20, 3<<20, 5<<20, 7<<20, 9<<20, 11<<20)
	az := azAzuriteTarget(ep, "faults")
	az.BlobEndpoint = srv.URL + "/" + azuretest.Account
	az.PageChunk = 64 << 10
	az.Retries = 8
	res, err := az.Push(context.Background(), azOpen(t, vhd), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fp.e503.Load() == 0 || fp.cut.Load() == 0 {
		t.Fatalf("no faults injected: 503 %d, cut %d", fp.e503.Load(), fp.cut.Load())
	}
	azMustEqualFile(t, azuretest.Download(t, ep+"/vhds/faults.vhd"), vhd)
	azCheckRanges(t, res, ep+"/vhds/faults.vhd")

	// A server that always fails ends in a clear error naming the step and the range.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Get("comp") == "page" {
			http.Error(w, "ServerBusy", http.StatusServiceUnavailable)
			return
		}
		fp.rp.ServeHTTP(w, r)
	}))
	defer bad.Close()
	az2 := azAzuriteTarget(bad.URL+"/"+azuretest.Account, "fails")
	az2.Retries = 1
	_, err = az2.Push(context.Background(), azOpen(t, vhd), nil)
	if err == nil || !strings.Contains(err.Error(), "put page at ") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("always-503 server: err = %v", err)
	}
}

// A wrong key (recognisable, valid base64) fails, and its text is in no error.
func TestAzureSecretNotInError(t *testing.T) {
	ep := azuretest.Start(t)
	secret := "U0VDUkVULWF6dXJlLWtleS1pbWdmYWItdGVzdC0xMjM0NTY3ODkw"
	_, vhd := azTestDisk(t, 2<<20, 0)
	az := azAzuriteTarget(ep, "secret")
	az.StorageKey = secret
	var events []string
	_, err := az.Push(context.Background(), azOpen(t, vhd), func(e publish.Event) { events = append(events, fmt.Sprint(e)) })
	if err == nil {
		t.Fatal("a wrong key was accepted")
	}
	all := err.Error() + strings.Join(events, "\n")
	if strings.Contains(all, secret) || strings.Contains(all, secret[:20]) {
		t.Fatalf("the key is in the output: %s", all)
	}
}

// azARMStub is an ARM server for Microsoft.Compute/images that checks what Azure checks.
type azARMStub struct {
	t        testing.TB
	mu       sync.Mutex
	images   map[string]map[string]any // by name: the stored image
	polls    int
	puts     int
	wantGen  string
	wantBlob string
	srv      *httptest.Server
}

const azARMImagePrefix = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/images/"

func (s *azARMStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(code int, f string, a ...any) {
		msg := fmt.Sprintf(f, a...)
		s.t.Errorf("ARM stub: %s %s: %s", r.Method, r.URL, msg)
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "BadRequest", "message": msg}})
	}
	if r.Header.Get("Authorization") != "Bearer test-arm-token" {
		fail(http.StatusUnauthorized, "Authorization %q", r.Header.Get("Authorization"))
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		fail(http.StatusBadRequest, "no api-version")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/operations/op-1":
		s.polls++
		status := "InProgress"
		if s.polls >= 2 {
			status = "Succeeded"
		}
		json.NewEncoder(w).Encode(map[string]any{"status": status})
	case strings.HasPrefix(r.URL.Path, azARMImagePrefix) && r.Method == http.MethodGet:
		name := strings.TrimPrefix(r.URL.Path, azARMImagePrefix)
		img, ok := s.images[name]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "NotFound", "message": "image " + name + " not found"}})
			return
		}
		if s.polls >= 2 {
			img["properties"].(map[string]any)["provisioningState"] = "Succeeded"
		}
		json.NewEncoder(w).Encode(img)
	case strings.HasPrefix(r.URL.Path, azARMImagePrefix) && r.Method == http.MethodPut:
		s.puts++
		name := strings.TrimPrefix(r.URL.Path, azARMImagePrefix)
		var body struct {
			Location   string            `json:"location"`
			Tags       map[string]string `json:"tags"`
			Properties struct {
				HyperVGeneration string `json:"hyperVGeneration"`
				StorageProfile   struct {
					OSDisk struct {
						OSType  string `json:"osType"`
						OSState string `json:"osState"`
						BlobURI string `json:"blobUri"`
					} `json:"osDisk"`
				} `json:"storageProfile"`
			} `json:"properties"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			fail(http.StatusBadRequest, "body: %v", err)
			return
		}
		od := body.Properties.StorageProfile.OSDisk
		switch {
		case body.Location != "westeurope":
			fail(http.StatusBadRequest, "location %q", body.Location)
			return
		case body.Properties.HyperVGeneration != s.wantGen:
			fail(http.StatusBadRequest, "hyperVGeneration %q, want %q", body.Properties.HyperVGeneration, s.wantGen)
			return
		case od.OSType != "Linux" || od.OSState != "Generalized":
			fail(http.StatusBadRequest, "osType %q osState %q", od.OSType, od.OSState)
			return
		case od.BlobURI != s.wantBlob:
			fail(http.StatusBadRequest, "blobUri %q, want %q", od.BlobURI, s.wantBlob)
			return
		case len(body.Tags["imgfab_sha256"]) != 64:
			fail(http.StatusBadRequest, "tags %v", body.Tags)
			return
		}
		img := map[string]any{
			"id": azARMImagePrefix + name, "name": name, "location": body.Location, "tags": body.Tags,
			"properties": map[string]any{"hyperVGeneration": body.Properties.HyperVGeneration, "provisioningState": "Creating",
				"storageProfile": map[string]any{"osDisk": map[string]any{"osType": od.OSType, "osState": od.OSState, "blobUri": od.BlobURI}}},
		}
		s.images[name] = img
		s.polls = 0
		w.Header().Set("Azure-AsyncOperation", s.srv.URL+"/operations/op-1?api-version=2024-11-01")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(img)
	default:
		fail(http.StatusNotFound, "unexpected request")
	}
}

type azTestCred struct{}

func (azTestCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "test-arm-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func azNewARMStub(t testing.TB) *azARMStub {
	s := &azARMStub{t: t, images: map[string]map[string]any{}}
	s.srv = httptest.NewTLSServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func azARMTarget(ep string, s *azARMStub, name string) *Target {
	az := azAzuriteTarget(ep, name)
	az.SkipImage = false
	az.SubscriptionID, az.ResourceGroup, az.Location = "sub-1", "rg-1", "westeurope"
	az.ARMEndpoint = s.srv.URL
	az.Credential = azTestCred{}
	az.Transport = s.srv.Client()
	az.PollEvery = time.Millisecond
	return az
}

func TestAzureImage(t *testing.T) {
	ep := azuretest.Start(t)
	s := azNewARMStub(t)
	_, vhd := azTestDisk(t, 3<<20, 0)
	for _, c := range []struct {
		name, gen, want string
		modes           []string
	}{
		{"uefi", "auto", "V2", []string{"uefi"}},
		{"bios", "auto", "V1", []string{"bios"}},
		{"hybrid", "auto", "V2", []string{"uefi", "bios"}},
		{"hybrid-v1", "V1", "V1", []string{"uefi", "bios"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.wantGen, s.wantBlob = c.want, ep+"/vhds/"+c.name+".vhd"
			az := azARMTarget(ep, s, c.name)
			az.HyperVGeneration = c.gen
			a := azOpen(t, vhd, c.modes...)
			res, err := az.Push(context.Background(), a, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.ID != azARMImagePrefix+c.name || res.Existing || res.Details["provisioning_state"] != "Succeeded" || s.polls < 2 {
				t.Fatalf("result %+v, polls %d", res, s.polls)
			}
			azMustEqualFile(t, azuretest.Download(t, s.wantBlob), vhd)
			puts := s.puts
			res, err = az.Push(context.Background(), a, nil)
			if err != nil || !res.Existing || s.puts != puts {
				t.Fatalf("rerun: %+v, %v, puts %d → %d", res, err, puts, s.puts)
			}
		})
	}
	// Another disk under an existing image name is refused; so is V1 for a UEFI-only disk.
	_, other := azTestDisk(t, 3<<20, 1<<20)
	if _, err := azARMTarget(ep, s, "uefi").Push(context.Background(), azOpen(t, other, "uefi"), nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("other content under the same name: %v", err)
	}
	az := azARMTarget(ep, s, "x")
	az.HyperVGeneration = "V1"
	if _, err := az.Push(context.Background(), azOpen(t, vhd, "uefi"), nil); err == nil || !strings.Contains(err.Error(), "V1") {
		t.Fatalf("V1 for a UEFI-only disk: %v", err)
	}
}

// BenchmarkAzurePageUpload uploads a 64 MiB disk (half zero) to Azurite with 1 and 8 workers,
// directly and through a loopback proxy that adds a 20 ms round trip to each request (Azurite on
// loopback answers in well under a millisecond, so only the latency case shows what parallel puts
// buy against a real region).
func BenchmarkAzurePageUpload(b *testing.B) {
	ep := azuretest.Start(b)
	u, err := url.Parse(ep)
	if err != nil {
		b.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		rp.ServeHTTP(w, r)
	}))
	defer slow.Close()
	slowEP := slow.URL + u.Path
	var at []int64
	for off := int64(0); off < 64<<20; off += 512 << 10 {
		at = append(at, off) // 200 KiB of data (64 KiB of it zero) every 512 KiB
	}
	_, vhd := azTestDisk(b, 64<<20, at...)
	a := azOpen(b, vhd)
	for _, rtt := range []string{"0s", "20ms"} {
		for _, workers := range []int{1, 8} {
			b.Run(fmt.Sprintf("workers=%d/rtt=%s", workers, rtt), func(b *testing.B) {
				var res publish.Result
				for i := range b.N {
					e := ep
					if rtt != "0s" {
						e = slowEP
					}
					az := azAzuriteTarget(e, fmt.Sprintf("bench-%d-%s-%d", workers, rtt, i))
					az.Workers = workers
					var err error
					if res, err = az.Push(context.Background(), a, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(azAtoi(b, res.Details["bytes_sent"]))
				b.ReportMetric(float64(azAtoi(b, res.Details["zero_ranges_skipped"])), "zero-ranges-skipped")
				b.ReportMetric(float64(azAtoi(b, res.Details["zero_bytes_skipped"])>>20), "zero-MiB-skipped")
			})
		}
	}
}

// pageBlobRanges returns the written ranges of a page blob as [offset, length] pairs (a test
// helper: it checks an upload). key is the account's shared key.
func pageBlobRanges(ctx context.Context, blobURL, account, key string) ([][2]int64, error) {
	az := &Target{StorageAccount: account, StorageKey: key}
	pb, err := az.pageClient(blobURL)
	if err != nil {
		return nil, err
	}
	rs, err := az.pageRanges(ctx, pb)
	out := make([][2]int64, len(rs))
	for i, r := range rs {
		out[i] = [2]int64{r.Off, r.Len}
	}
	return out, err
}
