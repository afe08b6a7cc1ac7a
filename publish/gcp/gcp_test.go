package gcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/googleapis/gax-go/v2"
	compute "google.golang.org/api/compute/v1"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/gcp/gcptest"
)

func gcpFeatures(img *compute.Image) []string {
	var out []string
	for _, f := range img.GuestOsFeatures {
		out = append(out, f.Type)
	}
	return out
}

// gcpTestDisk writes a sparse raw disk with seeded random data in it and opens it.
func gcpTestDisk(t testing.TB, size int64, data int) (string, diskfmt.Image) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewSource(int64(data)))
	buf := make([]byte, data)
	rnd.Read(buf)
	if _, err := f.WriteAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	img, err := diskfmt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return path, img
}

// gcpTarball is the GCE tarball of img, written by diskfmt.
func gcpTarball(t testing.TB, img diskfmt.Image) []byte {
	t.Helper()
	f, err := diskfmt.Lookup("gce")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := f.Write(context.Background(), &b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gcpNew(gcs *gcptest.GCS, cs *gcptest.Compute, name string) *Target {
	return &Target{
		Project: "proj-1", Bucket: "bkt", Image: name,
		StorageOptions: gcs.Options(), ComputeOptions: cs.Options(),
		ChunkSize:    256 << 10,
		RetryOptions: []storage.RetryOption{storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond})},
		PollInterval: time.Millisecond,
	}
}

// Converting on the fly: the object is the GCE tarball diskfmt writes; the insert has
// UEFI_COMPATIBLE for a UEFI disk; the operation is PENDING twice, then DONE; a rerun finds the
// image (Existing) and uploads nothing.
func TestGCPConvertAndInsert(t *testing.T) {
	gcs := gcptest.StartGCS(t, "bkt")
	cs := gcptest.StartCompute(t, "proj-1")
	cs.Source = gcptest.SourceCheck(gcs)
	path, img := gcpTestDisk(t, 40<<20, 3<<20)
	want := gcpTarball(t, img)

	g := gcpNew(gcs, cs, "web-1")
	g.Family, g.Labels, g.GuestOSFeatures = "web", map[string]string{"env": "test"}, []string{"SEV_CAPABLE"}
	var events []publish.Event
	var mu sync.Mutex
	res, err := g.Push(context.Background(), publish.Artifact{Path: path, Image: img, BootModes: []string{"uefi", "bios"}, Arch: "x86_64"},
		func(e publish.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	if got := gcs.Read(t, "bkt", "imgfab/web-1.tar.gz"); !bytes.Equal(got, want) {
		t.Fatalf("object: %d bytes, want the %d-byte GCE tarball diskfmt writes", len(got), len(want))
	}
	wantLink := "https://www.googleapis.com/compute/v1/projects/proj-1/global/images/web-1"
	if res.ID != wantLink || res.Existing || res.Target != "gcp" || res.Name != "web-1" {
		t.Errorf("result %+v, want ID %s, not existing", res, wantLink)
	}
	if !strings.HasPrefix(res.Details["upload"], "uploaded") || res.Details["object_bytes"] != fmt.Sprint(len(want)) {
		t.Errorf("details %v", res.Details)
	}
	ins := cs.LastInsert(t)
	if got, w := gcpFeatures(ins), []string{"UEFI_COMPATIBLE", "GVNIC", "VIRTIO_SCSI_MULTIQUEUE", "SEV_CAPABLE"}; !slices.Equal(got, w) {
		t.Errorf("guestOsFeatures %v, want %v", got, w)
	}
	if ins.RawDisk.Source != "https://storage.googleapis.com/bkt/imgfab/web-1.tar.gz" || ins.Family != "web" ||
		ins.Labels["env"] != "test" || ins.Architecture != "X86_64" || ins.Name != "web-1" {
		t.Errorf("insert body %+v rawDisk %+v", ins, ins.RawDisk)
	}
	if cs.Polls["operation-1"] != 2 {
		t.Errorf("operation waited for %d times, want 2 (PENDING twice, then DONE)", cs.Polls["operation-1"])
	}
	var up, wait bool
	for _, e := range events {
		up = up || (e.Step == "upload" && e.Done == int64(len(want)))
		wait = wait || (e.Step == "wait" && strings.Contains(e.Note, "PENDING"))
	}
	if !up || !wait {
		t.Errorf("events: final upload event %v, PENDING wait event %v", up, wait)
	}

	// The rerun: images.get finds it; nothing uploaded, nothing inserted.
	chunks, inserts := gcs.Chunks.Load(), len(cs.Inserts)
	res2, err := g.Push(context.Background(), publish.Artifact{Path: path, Image: img, BootModes: []string{"uefi"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Existing || res2.ID != wantLink {
		t.Errorf("rerun: %+v, want existing %s", res2, wantLink)
	}
	if gcs.Chunks.Load() != chunks || len(cs.Inserts) != inserts {
		t.Errorf("rerun uploaded %d requests and inserted %d images", gcs.Chunks.Load()-chunks, len(cs.Inserts)-inserts)
	}
}

// A GCE tarball is uploaded as it is; a BIOS-only disk gets no UEFI_COMPATIBLE; when the
// object is already there with the same CRC32C (image deleted since), the upload is skipped;
// a different object of that name is replaced.
func TestGCPTarballAndSkip(t *testing.T) {
	gcs := gcptest.StartGCS(t, "bkt")
	cs := gcptest.StartCompute(t, "proj-1")
	cs.Source = gcptest.SourceCheck(gcs)
	_, img := gcpTestDisk(t, 8<<20, 1<<20)
	tarball := gcpTarball(t, img)
	path := filepath.Join(t.TempDir(), "disk.tar.gz")
	if err := os.WriteFile(path, tarball, 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := diskfmt.IsGCETarball(path); !ok || err != nil {
		t.Fatalf("diskfmt.IsGCETarball = %v, %v", ok, err)
	}
	raw, err := diskfmt.Open(context.Background(), path) // what openArtifact does: disk.raw spooled, format "gce"
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	a := publish.Artifact{Path: path, Image: raw, BootModes: []string{"bios"}}
	g := gcpNew(gcs, cs, "bios-1")
	g.Object = "images/bios.tar.gz"
	res, err := g.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := gcs.Read(t, "bkt", "images/bios.tar.gz"); !bytes.Equal(got, tarball) {
		t.Fatalf("object: %d bytes differ from the %d-byte tarball", len(got), len(tarball))
	}
	if got := gcpFeatures(cs.LastInsert(t)); slices.Contains(got, "UEFI_COMPATIBLE") || !slices.Equal(got, []string{"GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}) {
		t.Errorf("BIOS-only disk: guestOsFeatures %v, want [GVNIC VIRTIO_SCSI_MULTIQUEUE]", got)
	}
	if res.Details["crc32c"] == "" || res.Existing {
		t.Errorf("result %+v", res)
	}

	// The image is deleted, the object stays: the rerun skips the upload.
	delete(cs.Images, "bios-1")
	chunks := gcs.Chunks.Load()
	res, err = g.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gcs.Chunks.Load() != chunks || !strings.HasPrefix(res.Details["upload"], "skipped") {
		t.Errorf("rerun with the object there: %d upload requests, details %v", gcs.Chunks.Load()-chunks, res.Details)
	}

	// Another object under that name: replaced (generation precondition), then inserted.
	delete(cs.Images, "bios-1")
	gcs.Fake.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "bkt", Name: "images/bios.tar.gz"}, Content: []byte("stale")})
	res, err = g.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := gcs.Read(t, "bkt", "images/bios.tar.gz"); !bytes.Equal(got, tarball) || !strings.HasPrefix(res.Details["upload"], "uploaded") {
		t.Fatalf("stale object: now %d bytes (want %d), details %v", len(got), len(tarball), res.Details)
	}
}

// A server that drops connections mid-chunk and answers 503: the upload still completes and
// the object equals the source.
func TestGCPUploadFaults(t *testing.T) {
	for _, fault := range []string{"drop", "503", "mixed"} {
		t.Run(fault, func(t *testing.T) {
			gcs := gcptest.StartGCS(t, "bkt")
			gcs.Fault = func(n int64) string {
				if n%3 != 2 { // the 2nd, 5th, 8th… upload request fails
					return ""
				}
				if fault == "mixed" {
					return []string{"drop", "503"}[n%2]
				}
				return fault
			}
			cs := gcptest.StartCompute(t, "proj-1")
			cs.Source = gcptest.SourceCheck(gcs)
			path, img := gcpTestDisk(t, 16<<20, 3<<20) // ≈3 MiB compressed: 12 chunks of 256 KiB
			want := gcpTarball(t, img)
			g := gcpNew(gcs, cs, "faulty")
			res, err := g.Push(context.Background(), publish.Artifact{Path: path, Image: img, BootModes: []string{"uefi"}}, nil)
			if err != nil {
				t.Fatalf("push through faults (%d injected): %v", gcs.Faults.Load(), err)
			}
			if gcs.Faults.Load() < 3 {
				t.Fatalf("only %d faults injected in %d upload requests", gcs.Faults.Load(), gcs.Chunks.Load())
			}
			if got := gcs.Read(t, "bkt", "imgfab/faulty.tar.gz"); !bytes.Equal(got, want) {
				t.Fatalf("object after %d faults: %d bytes, differs from the %d-byte source", gcs.Faults.Load(), len(got), len(want))
			}
			t.Logf("%d faults in %d upload requests; %s", gcs.Faults.Load(), gcs.Chunks.Load(), res.Details["upload"])
		})
	}
}

// A server that always fails ends in a clear error naming the step and the bytes.
func TestGCPUploadFailsClearly(t *testing.T) {
	gcs := gcptest.StartGCS(t, "bkt")
	gcs.Fault = func(n int64) string { return "503" }
	cs := gcptest.StartCompute(t, "proj-1")
	path, img := gcpTestDisk(t, 8<<20, 1<<20)
	g := gcpNew(gcs, cs, "down")
	g.RetryOptions = append(g.RetryOptions, storage.WithMaxAttempts(3))
	g.StallTimeout = 2 * time.Second // the session start is retried until then
	_, err := g.Push(context.Background(), publish.Artifact{Path: path, Image: img}, nil)
	if err == nil || !strings.Contains(err.Error(), "gcp: upload to gs://bkt/imgfab/down.tar.gz") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want the upload step and the 503", err)
	}
	t.Log(err)
	if len(cs.Inserts) != 0 {
		t.Errorf("inserted an image after a failed upload")
	}
}

// Ctrl-C (ctx cancel) mid-upload stops cleanly: an error, no object, no image.
func TestGCPCancel(t *testing.T) {
	gcs := gcptest.StartGCS(t, "bkt")
	cs := gcptest.StartCompute(t, "proj-1")
	path, img := gcpTestDisk(t, 16<<20, 3<<20)
	g := gcpNew(gcs, cs, "cancelled")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := g.Push(ctx, publish.Artifact{Path: path, Image: img}, func(e publish.Event) {
		if e.Step == "upload" && e.Done >= 512<<10 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) && (err == nil || !strings.Contains(err.Error(), "context canceled")) {
		t.Fatalf("err = %v, want context canceled", err)
	}
	if _, err := gcs.Fake.GetObject("bkt", "imgfab/cancelled.tar.gz"); err == nil {
		t.Error("a cancelled upload left an object")
	}
	if len(cs.Inserts) != 0 {
		t.Error("a cancelled push inserted an image")
	}
}

// A failed operation is an error naming the image, the operation and GCE's message.
func TestGCPOperationError(t *testing.T) {
	gcs := gcptest.StartGCS(t, "bkt")
	cs := gcptest.StartCompute(t, "proj-1")
	cs.OpFail = "disk.raw is not a multiple of 1 GiB"
	path, img := gcpTestDisk(t, 8<<20, 1<<20)
	_, err := gcpNew(gcs, cs, "bad").Push(context.Background(), publish.Artifact{Path: path, Image: img}, nil)
	if err == nil || !strings.Contains(err.Error(), "images.insert bad: operation operation-1 failed") || !strings.Contains(err.Error(), cs.OpFail) {
		t.Fatalf("err = %v", err)
	}
}

func TestGCPValidation(t *testing.T) {
	for _, g := range []*Target{
		{Project: "p", Bucket: "b", Image: "Upper"},
		{Project: "p", Bucket: "b", Image: "1abc"},
		{Project: "p", Bucket: "b", Image: strings.Repeat("a", 64)},
		{Project: "p", Image: "ok"},
	} {
		if _, err := g.Push(context.Background(), publish.Artifact{}, nil); err == nil {
			t.Errorf("%+v: no error", g)
		}
	}
	if id := requestID("p", "n", 1, 2); !gcptest.UUIDRE.MatchString(id) || id != requestID("p", "n", 1, 2) || id == requestID("p", "n", 1, 3) {
		t.Errorf("request id %q", id)
	}
}

// BenchmarkGCPUpload: the demo-sized convert-and-upload against in-process fake-gcs-server.
func BenchmarkGCPUpload(b *testing.B) {
	gcs := gcptest.StartGCS(b, "bkt")
	cs := gcptest.StartCompute(b, "proj-1")
	path, img := gcpTestDisk(b, 256<<20, 64<<20)
	b.SetBytes(img.Size())
	for i := 0; b.Loop(); i++ {
		g := gcpNew(gcs, cs, fmt.Sprintf("bench-%d", i))
		g.ChunkSize = 16 << 20
		if _, err := g.Push(context.Background(), publish.Artifact{Path: path, Image: img}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
