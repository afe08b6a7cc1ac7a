package gcp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgfab/imgfab/internal/retry"

	"cloud.google.com/go/storage"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/internal/iox"
	"github.com/imgfab/imgfab/publish"
)

// Target publishes a Google Compute Engine image: the disk as a GCE image tarball (gzip'd GNU tar
// holding disk.raw) is uploaded to Cloud Storage with a resumable, chunked upload, then
// images.insert makes the image from it and the global operation is waited for.
//
// Idempotence: when an image named Name already exists in Project, Push returns it (Existing)
// and uploads nothing. When the object already exists with the same CRC32C and size, the upload
// is skipped. Overwrites are guarded by a generation precondition, first uploads by
// DoesNotExist, so every chunk may be retried (storage.RetryAlways).
//
// Resuming: chunks are retried from the last offset the server committed (the library's
// resumable session); a new process starts a new session (the Go client does not expose the
// session URI), but an object that is already complete is not uploaded again.
type Target struct {
	Project string // required
	Bucket  string // required
	Image   string // image name (required): [a-z]([-a-z0-9]{0,61}[a-z0-9])?
	Object  string // object name; default "imgfab/NAME.tar.gz"
	Family  string
	Labels  map[string]string
	// GuestOSFeatures are added to the ones Push sets itself (GVNIC, VIRTIO_SCSI_MULTIQUEUE, and
	// UEFI_COMPATIBLE when the artifact boots UEFI).
	GuestOSFeatures []string
	// ChunkSize of the resumable upload, rounded up by the library to 256 KiB; 0 means 16 MiB.
	ChunkSize int
	// StorageOptions and ComputeOptions are passed to the clients (endpoints, credentials for
	// tests); without them the standard credential chain (Application Default Credentials) is used.
	StorageOptions []option.ClientOption
	ComputeOptions []option.ClientOption
	// RetryOptions are added to the upload's retryer (after storage.WithPolicy(RetryAlways)),
	// e.g. storage.WithBackoff for a shorter backoff in tests.
	RetryOptions []storage.RetryOption
	// PollInterval between operation waits that return before the operation is DONE; 0 means 2 s.
	PollInterval time.Duration
	// StallTimeout ends the upload with an error when no byte has been taken or committed for
	// that long; 0 means 10 minutes. The client retries a failing session start without limit, so
	// this is what turns a server that keeps answering 503 into an error.
	StallTimeout time.Duration
}

var _ publish.Target = (*Target)(nil)

// Name is "gcp".
func (*Target) Name() string { return "gcp" }

const targetName = "gcp"

var imageNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// GCSSource is the rawDisk.source URL images.insert is given for an object.
func GCSSource(bucket, object string) string {
	return "https://storage.googleapis.com/" + bucket + "/" + object
}

// Push uploads the artifact and makes the image. a.Path is uploaded as it is when it is a GCE
// tarball (diskfmt.IsGCETarball); otherwise a.Image is converted into a GCE tarball while it uploads,
// through a pipe (no temporary file; the object size is then unknown until the end).
func (g *Target) Push(ctx context.Context, a publish.Artifact, p publish.Progress) (publish.Result, error) {
	object, arch, err := g.check(a)
	if err != nil {
		return publish.Result{}, err
	}
	res := publish.Result{Target: targetName, Name: g.Image, Details: map[string]string{
		"project": g.Project,
		"object":  "gs://" + g.Bucket + "/" + object,
	}}

	cs, err := compute.NewService(ctx, g.ComputeOptions...)
	if err != nil {
		return publish.Result{}, publish.NewStepError(targetName, "compute client", err)
	}
	// 1. An image of that name already there: nothing to do.
	p.Emit(publish.Event{Target: targetName, Step: "lookup"})
	if img, err := g.getImage(ctx, cs); err != nil {
		return publish.Result{}, publish.NewStepError(targetName, "images.get "+g.Image, err)
	} else if img != nil {
		if img.Architecture != "" && img.Architecture != arch {
			return publish.Result{}, fmt.Errorf("gcp: image %s is %s, this disk is %s: give another image name", g.Image, img.Architecture, arch)
		}
		res.ID, res.Existing = img.SelfLink, true
		res.Details["status"] = img.Status
		if img.RawDisk != nil {
			res.Details["source"] = img.RawDisk.Source
		}
		return res, nil
	}

	// 2. The object.
	up, err := g.storeObject(ctx, object, a, p)
	if err != nil {
		return publish.Result{}, err
	}
	res.Details["object_bytes"] = strconv.FormatInt(up.size, 10)
	res.Details["crc32c"] = fmt.Sprintf("%08x", up.crc)
	res.Details["upload"] = up.how
	if a.Image != nil {
		res.Details["virtual_bytes"] = strconv.FormatInt(a.Image.Size(), 10)
	}

	// 3. images.insert and wait.
	return g.insert(ctx, cs, res, g.image(a, arch, object, res.Details), up, p)
}

// check validates the target's fields and the artifact's architecture, and returns the object
// name and the GCE architecture.
func (g *Target) check(a publish.Artifact) (object, arch string, err error) {
	if g.Project == "" || g.Bucket == "" || g.Image == "" {
		return "", "", fmt.Errorf("gcp: project, bucket and name are required (got %q, %q, %q)", g.Project, g.Bucket, g.Image)
	}
	if !imageNameRE.MatchString(g.Image) {
		return "", "", fmt.Errorf("gcp: image name %q: want lower-case letters, digits and '-', starting with a letter, at most 63 characters", g.Image)
	}
	object = g.Object
	if object == "" {
		object = "imgfab/" + g.Image + ".tar.gz"
	}
	goarch, err := a.Architecture()
	if err != nil {
		return "", "", fmt.Errorf("gcp: %w", err)
	}
	arch = gceArch(goarch)
	if goarch == publish.ARM64 && len(a.BootModes) > 0 && !a.Boots("uefi") {
		return "", "", fmt.Errorf("gcp: architecture arm64 boots UEFI only, but the disk boots %v", a.BootModes)
	}
	return object, arch, nil
}

// gceArch is the images.insert architecture of a publish architecture (AMD64 or ARM64).
func gceArch(arch string) string {
	if arch == publish.ARM64 {
		return "ARM64"
	}
	return "X86_64"
}

// storeObject makes the storage client and puts the GCE tarball into the object.
func (g *Target) storeObject(ctx context.Context, object string, a publish.Artifact, p publish.Progress) (uploadResult, error) {
	// The HTTP client is built here, around a transport that remembers the last error status:
	// the library retries some requests until the context ends and then reports only that.
	rec := &statusRecorder{base: http.DefaultTransport}
	tr, err := htransport.NewTransport(ctx, rec, append([]option.ClientOption{option.WithScopes(storage.ScopeFullControl)}, g.StorageOptions...)...)
	if err != nil {
		return uploadResult{}, publish.NewStepError(targetName, "storage credentials", err)
	}
	sc, err := storage.NewClient(ctx, append(slices.Clone(g.StorageOptions), option.WithHTTPClient(&http.Client{Transport: tr}))...)
	if err != nil {
		return uploadResult{}, publish.NewStepError(targetName, "storage client", err)
	}
	defer sc.Close()
	obj := sc.Bucket(g.Bucket).Object(object)
	return g.upload(ctx, obj, a, rec, p)
}

// image is the image images.insert is asked to make; it records its guest OS features in details.
// An ARM64 image is UEFI_COMPATIBLE even when the disk's boot modes are unknown: Arm VMs boot UEFI
// only.
func (g *Target) image(a publish.Artifact, arch, object string, details map[string]string) *compute.Image {
	feats := []string{"GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}
	if a.Boots("uefi") || arch == "ARM64" {
		feats = append([]string{"UEFI_COMPATIBLE"}, feats...)
	}
	for _, f := range g.GuestOSFeatures {
		if !slices.Contains(feats, f) {
			feats = append(feats, f)
		}
	}
	img := &compute.Image{
		Name:         g.Image,
		Family:       g.Family,
		Labels:       g.Labels,
		Architecture: arch,
		Description:  "imgfab: " + details["object"],
		RawDisk:      &compute.ImageRawDisk{Source: GCSSource(g.Bucket, object)},
	}
	for _, f := range feats {
		img.GuestOsFeatures = append(img.GuestOsFeatures, &compute.GuestOsFeature{Type: f})
	}
	details["guest_os_features"] = fmt.Sprint(feats)
	return img
}

// insert calls images.insert for img, waits for the operation and completes res with the image;
// an image made meanwhile by another run (409) is returned as Existing.
func (g *Target) insert(ctx context.Context, cs *compute.Service, res publish.Result, img *compute.Image, up uploadResult, p publish.Progress) (publish.Result, error) {
	p.Emit(publish.Event{Target: targetName, Step: "register", Note: "images.insert " + g.Image})
	// A request id makes a retried insert (or a rerun during the operation) the same request.
	reqID := requestID(g.Project, g.Image, up.crc, up.size)
	var op *compute.Operation
	err := withRetry(ctx, func() error {
		var err error
		op, err = cs.Images.Insert(g.Project, img).RequestId(reqID).Context(ctx).Do()
		return err
	})
	if isStatus(err, http.StatusConflict) {
		// Made meanwhile (another run): use it.
		existing, gerr := g.getImage(ctx, cs)
		if gerr == nil && existing != nil {
			res.ID, res.Existing = existing.SelfLink, true
			res.Details["status"] = existing.Status
			return res, nil
		}
	}
	if err != nil {
		return publish.Result{}, publish.NewStepError(targetName, "images.insert "+g.Image, err)
	}
	if err := g.wait(ctx, cs, op, p); err != nil {
		return publish.Result{}, err
	}
	done, err := g.getImage(ctx, cs)
	if err != nil {
		return publish.Result{}, publish.NewStepError(targetName, "images.get "+g.Image+" after insert", err)
	}
	if done == nil {
		return publish.Result{}, fmt.Errorf("gcp: images.get %s after insert: not found although operation %s is DONE", g.Image, op.Name)
	}
	res.ID = done.SelfLink
	res.Details["status"] = done.Status
	res.Details["operation"] = op.Name
	return res, nil
}

type uploadResult struct {
	size int64
	crc  uint32
	how  string // "uploaded", "skipped: …"
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// source gives the bytes of the GCE tarball to upload: the file as it is, or the disk image
// converted through a pipe.
type source struct {
	a       publish.Artifact
	tarball bool           // a.Path is a GCE tarball
	gce     diskfmt.Format // the converter, when it is not
}

// newSource finds whether a.Path is a GCE tarball already, else that there is a disk to convert.
func newSource(a publish.Artifact) (*source, error) {
	s := &source{a: a}
	if a.Path != "" {
		ok, err := diskfmt.IsGCETarball(a.Path)
		if err != nil {
			return nil, publish.NewStepError(targetName, "reading "+a.Path, err)
		}
		s.tarball = ok
	}
	if !s.tarball && a.Image == nil {
		return nil, fmt.Errorf("gcp: %s is not a GCE tarball and no disk image was opened to convert", a.Path)
	}
	gceFmt, err := diskfmt.Lookup("gce")
	if err != nil {
		return nil, publish.NewStepError(targetName, "gce format", err)
	}
	s.gce = gceFmt
	return s, nil
}

// open gives the tarball's bytes: the file, or the conversion through a pipe.
func (s *source) open(ctx context.Context) (io.ReadCloser, error) {
	if s.tarball {
		return os.Open(s.a.Path)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.gce.Write(ctx, pw, s.a.Image)) }()
	return pr, nil
}

// checksum reads the whole tarball once and returns its size and CRC32C.
func (s *source) checksum(ctx context.Context, p publish.Progress, step string) (int64, uint32, error) {
	r, err := s.open(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, &progressReader{r: iox.CtxReader{Ctx: ctx, R: r}, fn: func(n int64) {
		p.Emit(publish.Event{Target: targetName, Step: step, Done: n})
	}})
	return n, h.Sum32(), err
}

// upload puts the GCE tarball into obj unless it is there already with the same CRC32C.
func (g *Target) upload(ctx context.Context, obj *storage.ObjectHandle, a publish.Artifact, rec *statusRecorder, p publish.Progress) (uploadResult, error) {
	src, err := newSource(a)
	if err != nil {
		return uploadResult{}, err
	}
	var size int64 = -1
	var crc uint32
	if src.tarball {
		p.Emit(publish.Event{Target: targetName, Step: "checksum"})
		if size, crc, err = src.checksum(ctx, p, "checksum"); err != nil {
			return uploadResult{}, publish.NewStepError(targetName, "checksum of "+a.Path, err)
		}
	}
	attrs, err := obj.Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		attrs, err = nil, nil
	}
	if err != nil {
		return uploadResult{}, publish.NewStepError(targetName, "object attrs gs://"+obj.BucketName()+"/"+obj.ObjectName(), err)
	}
	if attrs != nil && !src.tarball {
		// The conversion is deterministic: hash it once more rather than upload it again.
		if size, crc, err = src.checksum(ctx, p, "checksum"); err != nil {
			return uploadResult{}, publish.NewStepError(targetName, "converting to a GCE tarball (checksum)", err)
		}
	}
	if attrs != nil && attrs.Size == size && attrs.CRC32C == crc {
		return uploadResult{size: size, crc: crc, how: fmt.Sprintf("skipped: object exists with the same crc32c (generation %d)", attrs.Generation)}, nil
	}

	cond := storage.Conditions{DoesNotExist: true}
	if attrs != nil {
		cond = storage.Conditions{GenerationMatch: attrs.Generation}
	}
	return g.write(ctx, obj.If(cond), src, size, crc, rec, p)
}

// watchStalls cancels uctx (with the cause) when lastMove (unix nanoseconds) is older than
// stall; it returns when uctx ends.
func watchStalls(uctx context.Context, cancelCause context.CancelCauseFunc, stall time.Duration, lastMove *atomic.Int64, rec *statusRecorder) {
	t := time.NewTicker(min(stall/4, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-uctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, lastMove.Load())) > stall {
				cancelCause(fmt.Errorf("no upload progress for %s%s", stall, rec.last()))
				return
			}
		}
	}
}

// write uploads the tarball to obj (its preconditions set) with a resumable upload watched for
// stalls, and checks the object the server made against the bytes sent. size and crc are the
// tarball's when it is a file (size -1 otherwise).
func (g *Target) write(ctx context.Context, obj *storage.ObjectHandle, src *source, size int64, crc uint32, rec *statusRecorder, p publish.Progress) (uploadResult, error) {
	a := src.a
	r, err := src.open(ctx)
	if err != nil {
		return uploadResult{}, publish.NewStepError(targetName, "opening "+a.Path, err)
	}
	defer r.Close()
	uctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(context.Canceled) }
	defer cancel()
	stall := g.StallTimeout
	if stall == 0 {
		stall = 10 * time.Minute
	}
	var lastMove atomic.Int64 // unix nanoseconds of the last progress; only for the watchdog
	lastMove.Store(time.Now().UnixNano())
	go watchStalls(uctx, cancelCause, stall, &lastMove, rec)
	// storage.ShouldRetry also retries a connection closed before the answer (EOF); without an
	// error func the chunk retry falls back to a stricter default that does not.
	w := obj.Retryer(append([]storage.RetryOption{storage.WithPolicy(storage.RetryAlways), storage.WithErrorFunc(storage.ShouldRetry)}, g.RetryOptions...)...).NewWriter(uctx)
	w.ChunkSize = g.ChunkSize
	if w.ChunkSize == 0 {
		w.ChunkSize = 16 << 20
	}
	w.ContentType = "application/gzip"
	w.Metadata = map[string]string{"imgfab-image": g.Image}
	if src.tarball {
		// The server checks the whole object against it.
		w.CRC32C, w.SendCRC32C = crc, true
	}
	total := max(size, 0)
	w.ProgressFunc = func(n int64) {
		lastMove.Store(time.Now().UnixNano())
		p.Emit(publish.Event{Target: targetName, Step: "upload", Done: n, Total: total})
	}
	h := crc32.New(castagnoli)
	in := &progressReader{r: iox.CtxReader{Ctx: ctx, R: r}, fn: func(int64) { lastMove.Store(time.Now().UnixNano()) }}
	n, err := io.Copy(w, io.TeeReader(in, h))
	if err == nil {
		err = w.Close()
		if err != nil && context.Cause(uctx) != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %v", context.Cause(uctx), err)
		}
		if err != nil {
			return uploadResult{}, publish.NewStepError(targetName, fmt.Sprintf("upload to gs://%s/%s (%d bytes, chunks of %d)", obj.BucketName(), obj.ObjectName(), n, w.ChunkSize), err)
		}
	} else {
		if context.Cause(uctx) != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %v", context.Cause(uctx), err)
		}
		cancel() // abandons the upload; the object is not created
		w.Close()
		if ctx.Err() != nil {
			return uploadResult{}, publish.NewStepError(targetName, fmt.Sprintf("upload to gs://%s/%s interrupted after %d bytes", obj.BucketName(), obj.ObjectName(), n), ctx.Err())
		}
		return uploadResult{}, publish.NewStepError(targetName, fmt.Sprintf("upload to gs://%s/%s after %d bytes", obj.BucketName(), obj.ObjectName(), n), err)
	}
	got := w.Attrs()
	if src.tarball && n != size {
		return uploadResult{}, fmt.Errorf("gcp: upload of %s: read %d bytes, the file had %d when checksummed (changed meanwhile?)", a.Path, n, size)
	}
	if got.Size != n || got.CRC32C != h.Sum32() {
		return uploadResult{}, fmt.Errorf("gcp: upload to gs://%s/%s: the server has %d bytes with crc32c %08x, we sent %d bytes with crc32c %08x",
			obj.BucketName(), obj.ObjectName(), got.Size, got.CRC32C, n, h.Sum32())
	}
	p.Emit(publish.Event{Target: targetName, Step: "upload", Done: n, Total: n})
	return uploadResult{size: n, crc: h.Sum32(), how: fmt.Sprintf("uploaded (generation %d)", got.Generation)}, nil
}

// getImage returns the image named g.Image, or nil when there is none.
func (g *Target) getImage(ctx context.Context, cs *compute.Service) (*compute.Image, error) {
	var img *compute.Image
	err := withRetry(ctx, func() error {
		var err error
		img, err = cs.Images.Get(g.Project, g.Image).Context(ctx).Do()
		return err
	})
	if isStatus(err, http.StatusNotFound) {
		return nil, nil
	}
	return img, err
}

// wait waits for the global operation to be DONE and returns its error, if any.
func (g *Target) wait(ctx context.Context, cs *compute.Service, op *compute.Operation, p publish.Progress) error {
	interval := g.PollInterval
	if interval == 0 {
		interval = 2 * time.Second
	}
	for polls := 1; op.Status != "DONE"; polls++ {
		p.Emit(publish.Event{Target: targetName, Step: "wait", Done: int64(op.Progress), Total: 100, Note: "operation " + op.Name + " " + op.Status})
		name := op.Name
		err := withRetry(ctx, func() error {
			var err error
			// operations.wait returns when DONE or after up to 2 minutes.
			op, err = cs.GlobalOperations.Wait(g.Project, name).Context(ctx).Do()
			return err
		})
		if err != nil {
			return publish.NewStepError(targetName, fmt.Sprintf("waiting for operation %s (poll %d)", name, polls), err)
		}
		if op.Status == "DONE" {
			break
		}
		select {
		case <-ctx.Done():
			return publish.NewStepError(targetName, "waiting for operation "+name, ctx.Err())
		case <-time.After(interval):
		}
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		var msgs []string
		for _, e := range op.Error.Errors {
			msgs = append(msgs, e.Code+": "+e.Message)
		}
		return fmt.Errorf("gcp: images.insert %s: operation %s failed: %v", g.Image, op.Name, msgs)
	}
	p.Emit(publish.Event{Target: targetName, Step: "wait", Done: 100, Total: 100, Note: "operation " + op.Name + " DONE"})
	return nil
}

// retry runs fn up to 4 times while it fails with 429 or 5xx (the calls are idempotent: gets,
// waits, and inserts with a request id).
func withRetry(ctx context.Context, fn func() error) error {
	_, err := retryPolicy.Do(ctx, func(err error) bool {
		var ge *googleapi.Error
		return errors.As(err, &ge) && (ge.Code == 429 || ge.Code >= 500)
	}, fn)
	return err
}

var retryPolicy = retry.Policy{Attempts: 4, Base: 250 * time.Millisecond}

func isStatus(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

// requestID is a UUID derived from what the insert makes, so a retried or repeated insert of the
// same image is recognised by the API as the same request.
func requestID(project, name string, crc uint32, size int64) string {
	s := sha256.Sum256([]byte(fmt.Sprintf("imgfab-gcp\x00%s\x00%s\x00%08x\x00%d", project, name, crc, size)))
	s[6] = s[6]&0x0f | 0x50 // version 5-like
	s[8] = s[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// progressReader reports the bytes read so far.
type progressReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}

// statusRecorder remembers the last HTTP error status the storage API answered (method and
// status only: no URL, header or body, so nothing secret).
type statusRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	msg  string
}

func (r *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	var msg string
	switch {
	case err != nil:
		msg = fmt.Sprintf("%s: %v", req.Method, errors.Unwrap(err))
		if errors.Unwrap(err) == nil {
			msg = req.Method + ": " + err.Error()
		}
	case resp.StatusCode >= 400:
		msg = req.Method + " answered " + resp.Status
	}
	if msg != "" {
		r.mu.Lock()
		r.msg = msg
		r.mu.Unlock()
	}
	return resp, err
}

// last is "; last error: ..." or "".
func (r *statusRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msg == "" {
		return ""
	}
	return "; last error: " + r.msg
}
