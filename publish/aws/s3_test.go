package aws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/aws/awstest"
)

// s3Fake is gofakes3 in process behind a handler that counts UploadPart requests and can fail them.
type s3Fake struct {
	URL     string
	backend *s3mem.Backend
	mu      sync.Mutex
	parts   int                                   // UploadPart requests that reached gofakes3
	fault   func(part, attempt int) awstest.Fault // nil: serve all
	latency time.Duration                         // added to each UploadPart (benchmarks)
	tries   map[int]int
}

func newS3Fake(t testing.TB, bucket string) *s3Fake {
	f := &s3Fake{backend: s3mem.New(), tries: map[int]int{}}
	if err := f.backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(f.backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pn := r.URL.Query().Get("partNumber"); pn != "" && r.Method == http.MethodPut {
			n, _ := strconv.Atoi(pn)
			f.mu.Lock()
			f.tries[n]++
			a := f.tries[n]
			fault := f.fault
			f.mu.Unlock()
			if fault != nil {
				switch ft := fault(n, a); ft {
				case awstest.Serve:
				case awstest.Drop:
					io.CopyN(io.Discard, r.Body, 1<<20)
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				default:
					io.Copy(io.Discard, r.Body)
					w.WriteHeader(int(ft))
					io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`)
					return
				}
			}
			f.mu.Lock()
			f.parts++
			f.mu.Unlock()
			time.Sleep(f.latency)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *s3Fake) read(bucket, key string) ([]byte, error) {
	obj, err := f.backend.GetObject(bucket, key, nil)
	if err != nil {
		return nil, err
	}
	defer obj.Contents.Close()
	return io.ReadAll(obj.Contents)
}

func (f *s3Fake) partCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.parts
}

func s3TestTarget(ec2 *awstest.Server, s3f *s3Fake, name string) *Target {
	tg := awsTestTarget(ec2, name)
	tg.Via, tg.Bucket, tg.EndpointS3, tg.PartSize, tg.Workers = "s3", "imgs", s3f.URL, 5<<20, 4
	ec2.ReadObject = s3f.read
	return tg
}

// 23 MiB + 1000 bytes: 5 parts of 5 MiB, the last one short.
var s3TestBuf = awsTestBytes(23<<20+1000, 0, 3, 11, 20, 46)

func TestAWSViaS3(t *testing.T) {
	ec2, s3f := awstest.New(t), newS3Fake(t, "imgs")
	a := awsArtifact(t, s3TestBuf, "uefi", "bios")
	res, err := s3TestTarget(ec2, s3f, "s3-raw").Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Details
	if d["import_format"] != "RAW" || d["parts_total"] != "5" || d["parts_sent"] != "5" || d["boot_mode"] != "uefi-preferred" {
		t.Errorf("details %v", d)
	}
	obj, err := s3f.read("imgs", d["s3_key"])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(obj, s3TestBuf) {
		t.Fatalf("object (%d bytes) differs from the raw disk (%d bytes)", len(obj), len(s3TestBuf))
	}
	if diff := ec2.Compare(res.Snapshot, bytes.NewReader(s3TestBuf), int64(len(s3TestBuf))); diff != "" {
		t.Fatal(diff)
	}
	if q := ec2.Image("s3-raw").Params; q.Get("BootMode") != "uefi-preferred" || q.Get("BlockDeviceMapping.1.Ebs.SnapshotId") != res.Snapshot {
		t.Errorf("RegisterImage %v", q)
	}
	if sn := ec2.Snapshot(res.Snapshot); sn.Tags["imgfab:sha256"] != d["content_sha256"] {
		t.Errorf("imported snapshot tags %v", sn.Tags)
	}
	// The same disk under another name: the snapshot is reused, nothing uploaded or imported.
	res2, err := s3TestTarget(ec2, s3f, "s3-raw-2").Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Snapshot != res.Snapshot || s3f.partCount() != 5 || ec2.Calls("ImportSnapshot") != 1 {
		t.Errorf("second push: %+v, %d parts, %d imports", res2, s3f.partCount(), ec2.Calls("ImportSnapshot"))
	}
}

// A VMDK artifact is uploaded as it is and imported as VMDK.
func TestAWSViaS3VMDK(t *testing.T) {
	ec2, s3f := awstest.New(t), newS3Fake(t, "imgs")
	a := awsVMDK(t, s3TestBuf)
	res, err := s3TestTarget(ec2, s3f, "s3-vmdk").Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Details["import_format"] != "VMDK" || !strings.HasSuffix(res.Details["s3_key"], ".vmdk") {
		t.Errorf("details %v", res.Details)
	}
	file, _ := readFile(a.Path)
	obj, _ := s3f.read("imgs", res.Details["s3_key"])
	if !bytes.Equal(obj, file) {
		t.Fatal("object differs from the VMDK file")
	}
	if diff := ec2.Compare(res.Snapshot, bytes.NewReader(s3TestBuf), int64(len(s3TestBuf))); diff != "" {
		t.Fatal(diff)
	}
}

// Cancel after two parts; the rerun sends only the missing parts and ends with the whole object.
func TestAWSViaS3Resume(t *testing.T) {
	ec2, s3f := awstest.New(t), newS3Fake(t, "imgs")
	a := awsArtifact(t, s3TestBuf, "uefi")
	tg := s3TestTarget(ec2, s3f, "s3-resume")
	tg.Workers = 1
	ctx, cancel := context.WithCancel(context.Background())
	_, err := tg.Push(ctx, a, func(e publish.Event) {
		if e.Step == "upload" && e.Done >= 2*5<<20 {
			cancel()
		}
	})
	cancel()
	if !errors.Is(err, context.Canceled) && (err == nil || !strings.Contains(err.Error(), "canceled")) {
		t.Fatalf("first push: %v", err)
	}
	first := s3f.partCount()
	if first < 2 || first >= 5 {
		t.Fatalf("first push sent %d parts", first)
	}
	tg.Workers = 4
	res, err := tg.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sent := s3f.partCount() - first; sent != 5-first || res.Details["parts_resumed"] != strconv.Itoa(first) || res.Details["s3_upload_resumed"] == "" {
		t.Errorf("rerun sent %d parts after %d, details %v", sent, first, res.Details)
	}
	obj, _ := s3f.read("imgs", res.Details["s3_key"])
	if !bytes.Equal(obj, s3TestBuf) {
		t.Fatal("resumed object differs from the disk")
	}
}

func TestAWSViaS3Faults(t *testing.T) {
	ec2, s3f := awstest.New(t), newS3Fake(t, "imgs")
	s3f.fault = func(part, attempt int) awstest.Fault {
		switch {
		case part%2 == 1 && attempt == 1:
			return 503
		case part == 2 && attempt <= 2:
			return awstest.Drop
		case part == 4 && attempt == 1:
			return 500
		}
		return awstest.Serve
	}
	res, err := s3TestTarget(ec2, s3f, "s3-faults").Push(context.Background(), awsArtifact(t, s3TestBuf, "uefi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := s3f.read("imgs", res.Details["s3_key"])
	if !bytes.Equal(obj, s3TestBuf) {
		t.Fatal("object differs from the disk")
	}
	if n, _ := strconv.Atoi(res.Details["retries"]); n < 6 {
		t.Errorf("retries %s", res.Details["retries"])
	}

	// A part that always fails: a clear error naming it.
	ec2b, s3b := awstest.New(t), newS3Fake(t, "imgs")
	s3b.fault = func(part, attempt int) awstest.Fault {
		if part == 3 {
			return 503
		}
		return awstest.Serve
	}
	tg := s3TestTarget(ec2b, s3b, "s3-broken")
	tg.MaxAttempts = 3
	_, err = tg.Push(context.Background(), awsArtifact(t, s3TestBuf, "uefi"), nil)
	if err == nil || !strings.Contains(err.Error(), "part 3 of 5") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err %v", err)
	}
	if ec2b.Calls("ImportSnapshot") != 0 {
		t.Error("imported after a failed upload")
	}
}

func TestS3PartSize(t *testing.T) {
	for _, c := range []struct{ want, size, got int64 }{
		{0, 1 << 30, 64 << 20},
		{1 << 20, 1 << 30, 5 << 20},
		{64 << 20, 1 << 40, 105 << 20}, // 1 TiB / 10,000 parts = 104.9 MiB → 105 MiB
	} {
		if ps := s3PartSize(c.want, c.size); ps != c.got || (c.size+ps-1)/ps > s3MaxParts {
			t.Errorf("s3PartSize(%d, %d) = %d, want %d", c.want, c.size, ps, c.got)
		}
	}
}

func BenchmarkAWSS3Upload(b *testing.B) {
	buf := awsTestBytes(128<<20, 0)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, bc := range []struct {
		w   int
		rtt time.Duration
	}{{1, 0}, {8, 0}, {1, 100 * time.Millisecond}, {8, 100 * time.Millisecond}} {
		w := bc.w
		b.Run("workers="+strconv.Itoa(w)+"/rtt="+bc.rtt.String(), func(b *testing.B) {
			a := awsArtifact(b, buf, "uefi")
			b.SetBytes(int64(len(buf)))
			for i := 0; i < b.N; i++ {
				ec2, s3f := awstest.New(b), newS3Fake(b, "imgs")
				s3f.latency = bc.rtt
				tg := s3TestTarget(ec2, s3f, "bench")
				tg.Workers, tg.PartSize = w, 8<<20
				if _, err := tg.Push(context.Background(), a, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
