package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/imgfab/imgfab/internal/iox"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
)

// Media types and annotation keys of what OCI pushes.
const (
	// ArtifactType is the artifactType of an --artifact manifest (OCI image-spec 1.1,
	// "Guidelines for Artifact Usage": artifactType set, config = the empty descriptor).
	ArtifactType = "application/vnd.imgfab.disk.v1"
	// DiskMediaTypePrefix + format ("qcow2", "raw", "vmdk", "vhd", "vhd-dynamic") is the media type
	// of the disk blob of an artifact.
	DiskMediaTypePrefix = "application/vnd.imgfab.disk."
	// EmptyMediaType is the media type of the empty config of an artifact (image-spec 1.1
	// manifest.md, "Guidance for an Empty Descriptor"): the 2 bytes "{}".
	EmptyMediaType = "application/vnd.oci.empty.v1+json"

	AnnotationFormat      = "io.imgfab.disk.format"       // format of the disk as pushed
	AnnotationVirtualSize = "io.imgfab.disk.virtual-size" // guest size in bytes
	AnnotationBootModes   = "io.imgfab.disk.boot-modes"   // "uefi,bios" (sorted), "" when unknown

	// ContainerDiskPath is where the disk lies in a containerDisk layer, and its owner and mode:
	// KubeVirt's own builder (kubevirt/containerdisks, pkg/build/tar.go) writes the directory
	// "disk/" (0555) and the file "disk/disk.img" (0444), both owned by 107:107 (qemu), as the
	// user guide's `ADD --chown=107:107 IMAGE /disk/` does; KubeVirt boots the one file in /disk.
	ContainerDiskPath = "disk/disk.img"
	ContainerDiskUID  = 107
	ContainerDiskMode = 0o444
)

// Target pushes a disk to an OCI registry: by default as a KubeVirt containerDisk (a single-layer
// image whose gzip'd tar layer holds the disk as qcow2 at /disk/disk.img; a disk in any other
// format is converted first), with Artifact as an OCI artifact (the disk file as it is, one blob).
//
// The manifest is reproducible: the same disk gives the same digest (fixed timestamps, fixed
// tar headers, gzip at a fixed level with no name or time in its header), so a rerun finds the
// tag already at that digest and uploads nothing; blobs already in the repository are not sent
// again (HEAD checks). Transient failures (5xx, 408, 429, dropped connections) are retried with
// backoff, a blob from its start.
type Target struct {
	Ref      string // REGISTRY/REPO:TAG (or @sha256:… to push by digest only)
	Artifact bool   // push an OCI artifact instead of a containerDisk
	Insecure bool   // plain HTTP (and registries without TLS), e.g. a loopback test registry

	// Keychain finds credentials; nil means authn.DefaultKeychain (~/.docker/config.json,
	// $DOCKER_CONFIG, credential helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Backoff for retries; zero means 5 tries, 0.5 s doubling.
	Backoff remote.Backoff
	// Created is the time written into the image config and annotations; zero means the Unix
	// epoch (a reproducible digest needs a fixed time).
	Created time.Time
	// TempDir is where a disk that is not qcow2 is converted for a containerDisk (the qcow2 file
	// is written once, then read twice: for the digest and for the upload); "" means beside the
	// disk (Artifact.Path), or os.TempDir() when there is no path.
	TempDir string
}

var _ publish.Target = (*Target)(nil)

// Name is "oci".
func (o *Target) Name() string { return "oci" }

const targetName = "oci"

var defaultBackoff = remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 5}

// Push implements publish.Target.
func (o *Target) Push(ctx context.Context, a publish.Artifact, p publish.Progress) (res publish.Result, err error) {
	res = publish.Result{Target: targetName}
	if a.Image == nil {
		return res, fmt.Errorf("oci: no disk image")
	}
	if _, err := a.Architecture(); err != nil {
		return res, fmt.Errorf("oci: %w", err)
	}
	ref, kc, secrets, err := o.reference()
	if err != nil {
		return res, err
	}
	res.Name = ref.Name()

	created := o.created()

	// The blob: the disk file itself (artifact) or a tar of it as qcow2 (containerDisk).
	b, err := o.blob(ctx, a, created, p)
	if err != nil {
		return res, err
	}
	defer b.cleanup()

	img, err := o.image(a, b.layer, b.format, created)
	if err != nil {
		return res, publish.NewStepError(targetName, "manifest", err)
	}
	dig, err := img.Digest()
	if err != nil {
		return res, publish.NewStepError(targetName, "manifest", err)
	}
	ld, _ := b.layer.Digest()
	ls, _ := b.layer.Size()
	res.ID = dig.String()
	b.details["kind"] = b.kind
	b.details["format"] = b.format
	b.details["layer_digest"] = ld.String()
	b.details["layer_size"] = strconv.FormatInt(ls, 10)
	b.details["pull"] = ref.Context().Digest(dig.String()).String()
	res.Details = b.details

	opts := o.remoteOptions(ctx, kc)
	// Idempotence: the tag already at this digest means the whole image is there.
	if _, isTag := ref.(name.Tag); isTag {
		desc, err := remote.Head(ref, opts...)
		switch {
		case err == nil && desc.Digest == dig:
			res.Existing = true
			p.Emit(publish.Event{Target: targetName, Step: "upload", Done: ls, Total: ls, Note: "already in the registry"})
			return res, nil
		case err != nil && !isNotFound(err):
			return res, publish.NewStepError(targetName, "checking "+ref.Name(), err, secrets...)
		}
	}
	return o.write(ctx, ref, a, b, created, opts, secrets, res, p)
}

// created is the time written into configs and annotations: Created, or the Unix epoch, in
// whole seconds, UTC.
func (o *Target) created() time.Time {
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	return created.UTC().Truncate(time.Second)
}

// blob is the layer a push uploads and what is known about it.
type blob struct {
	layer   v1.Layer
	format  string            // the disk's format as pushed
	kind    string            // "containerdisk" or "artifact"
	details map[string]string // Result.Details so far
	cleanup func()            // removes a temporary qcow2, if any
}

// blob makes the layer: the disk file itself (artifact), or a tar of it as qcow2
// (containerDisk), converted to a temporary qcow2 file first when it is not one.
func (o *Target) blob(ctx context.Context, a publish.Artifact, created time.Time, p publish.Progress) (*blob, error) {
	b := &blob{format: a.Image.Format(), kind: "containerdisk", details: map[string]string{}, cleanup: func() {}}
	path := a.Path
	var err error
	if o.Artifact {
		b.kind = "artifact"
		if path == "" {
			return nil, fmt.Errorf("oci: artifact: the disk has no file path")
		}
		if b.layer, err = newFileBlob(ctx, path, types.MediaType(DiskMediaTypePrefix+b.format), p); err != nil {
			return nil, publish.NewStepError(targetName, "digest", err)
		}
		return b, nil
	}
	if b.format != "qcow2" || path == "" {
		dir := o.TempDir
		if dir == "" && path != "" {
			dir = filepath.Dir(path)
		}
		tmp, err := convertQcow2(ctx, a.Image, dir, p)
		if err != nil {
			return nil, publish.NewStepError(targetName, "convert "+b.format+" to qcow2", err)
		}
		b.cleanup = func() { os.Remove(tmp) }
		b.details["converted_from"] = b.format
		path, b.format = tmp, "qcow2"
	}
	if b.layer, err = newContainerDiskLayer(ctx, path, created, p); err != nil {
		b.cleanup()
		return nil, publish.NewStepError(targetName, "digest", err)
	}
	return b, nil
}

// remoteOptions are the registry client's options: credentials, the statuses worth a retry and
// the backoff between retries, the transport.
func (o *Target) remoteOptions(ctx context.Context, kc authn.Keychain) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
			http.StatusGatewayTimeout),
	}
	bo := o.Backoff
	if bo.Steps == 0 {
		bo = defaultBackoff
	}
	opts = append(opts, remote.WithRetryBackoff(bo))
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return opts
}

// write uploads the image (blobs the registry lacks, then the manifest) and reports the upload
// from the blob bytes the uploader reads.
func (o *Target) write(ctx context.Context, ref name.Reference, a publish.Artifact, b *blob, created time.Time,
	opts []remote.Option, secrets []string, res publish.Result, p publish.Progress) (publish.Result, error) {
	ls, _ := b.layer.Size()
	// Progress counts the blob bytes the uploader reads (ggcr's own progress channel can be
	// written to after Write returns on a failed request, which would panic).
	var closed atomic.Bool
	defer closed.Store(true)
	var sent atomic.Int64
	up := publish.Progress(func(e publish.Event) {
		if !closed.Load() {
			p.Emit(e)
		}
	})
	cl := &countingLayer{Layer: b.layer, p: up, sent: &sent, total: ls}
	img, err := o.image(a, cl, b.format, created)
	if err != nil {
		return res, publish.NewStepError(targetName, "manifest", err)
	}
	err = remote.Write(ref, img, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return res, publish.NewStepError(targetName, "upload to "+ref.Name(), ctx.Err())
		}
		return res, publish.NewStepError(targetName, "upload to "+ref.Name(), err, secrets...)
	}
	if n := sent.Load(); n == 0 {
		res.Details["blobs_existing"] = "true"
		up.Emit(publish.Event{Target: targetName, Step: "upload", Done: ls, Total: ls, Note: "blobs already in the registry"})
	} else {
		up.Emit(publish.Event{Target: targetName, Step: "upload", Done: ls, Total: ls})
	}
	return res, nil
}

// countingLayer reports the bytes read from each Compressed stream (a retry starts a new one,
// which restarts the count) as upload events.
type countingLayer struct {
	v1.Layer
	p     publish.Progress
	sent  *atomic.Int64 // bytes read from all streams, for "was anything sent"
	total int64
	note  string       // the events' Note: an index's platform ("" for Push)
	cur   atomic.Int64 // bytes read from the latest stream
}

func (l *countingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	l.cur.Store(0)
	return &countingReader{rc: rc, l: l}, nil
}

type countingReader struct {
	rc   io.ReadCloser
	l    *countingLayer
	last int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.rc.Read(b)
	if n > 0 {
		r.l.sent.Add(int64(n))
		done := r.l.cur.Add(int64(n))
		if done-r.last >= 4<<20 {
			r.last = done
			r.l.p.Emit(publish.Event{Target: targetName, Step: "upload", Done: done, Total: r.l.total, Note: r.l.note})
		}
	}
	if err == io.EOF && r.l.note != "" {
		// One layer of an index read to its end: say so (Push reports its one layer's end itself).
		r.l.p.Emit(publish.Event{Target: targetName, Step: "upload", Done: r.l.cur.Load(), Total: r.l.total, Note: r.l.note})
	}
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }

func (o *Target) nameOpts() []name.Option {
	if o.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// isNotFound reports a 404 (no such tag or repository yet).
func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// registrySecrets returns every secret the keychain holds for the registry, for redaction.
func registrySecrets(kc authn.Keychain, repo name.Repository) ([]string, error) {
	auth, err := kc.Resolve(repo)
	if err != nil {
		return nil, err
	}
	cfg, err := auth.Authorization()
	if err != nil || cfg == nil {
		return nil, err
	}
	s := []string{cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken}
	if cfg.Username != "" && cfg.Password != "" {
		s = append(s, base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password)))
	}
	if cfg.Auth != "" {
		if b, err := base64.StdEncoding.DecodeString(cfg.Auth); err == nil {
			if _, pw, ok := strings.Cut(string(b), ":"); ok {
				s = append(s, pw)
			}
		}
	}
	return s, nil
}

// image assembles the manifest and config around the layer.
func (o *Target) image(a publish.Artifact, layer v1.Layer, format string, created time.Time) (v1.Image, error) {
	ld, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	ls, err := layer.Size()
	if err != nil {
		return nil, err
	}
	lmt, err := layer.MediaType()
	if err != nil {
		return nil, err
	}
	modes := slices.Clone(a.BootModes)
	slices.Sort(modes)
	ann := map[string]string{
		AnnotationFormat:                   format,
		AnnotationVirtualSize:              strconv.FormatInt(a.Image.Size(), 10),
		AnnotationBootModes:                strings.Join(modes, ","),
		"org.opencontainers.image.created": created.Format(time.RFC3339),
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Annotations:   ann,
	}
	var config []byte
	if o.Artifact {
		config = []byte("{}")
		m.ArtifactType = ArtifactType
		m.Layers = []v1.Descriptor{{MediaType: lmt, Size: ls, Digest: ld,
			Annotations: map[string]string{"org.opencontainers.image.title": "disk." + diskExt(format)}}}
		m.Config = v1.Descriptor{MediaType: EmptyMediaType, Size: 2}
	} else {
		diffID, err := layer.DiffID()
		if err != nil {
			return nil, err
		}
		arch, err := a.Architecture()
		if err != nil {
			return nil, err
		}
		cf := v1.ConfigFile{
			Architecture: arch,
			OS:           "linux",
			Created:      v1.Time{Time: created},
			RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
			History: []v1.History{{Created: v1.Time{Time: created}, CreatedBy: "imgfab push oci",
				Comment: "KubeVirt containerDisk: " + ContainerDiskPath}},
			Config: v1.Config{Labels: map[string]string{AnnotationFormat: format}},
		}
		if config, err = json.Marshal(cf); err != nil {
			return nil, err
		}
		m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(config))}
		m.Layers = []v1.Descriptor{{MediaType: lmt, Size: ls, Digest: ld}}
	}
	sum := sha256.Sum256(config)
	m.Config.Digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&pushImage{manifest: raw, config: config, layer: layer})
}

func diskExt(format string) string {
	if format == "vhd-dynamic" {
		return "vhd"
	}
	return format
}

// pushImage is the minimal image partial.CompressedToImage completes.
type pushImage struct {
	manifest, config []byte
	layer            v1.Layer
}

func (i *pushImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *pushImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (i *pushImage) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *pushImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if d, _ := i.layer.Digest(); d == h {
		return i.layer, nil
	}
	return nil, fmt.Errorf("no blob %s in this image", h)
}

// convertQcow2 writes the disk as qcow2 to a temporary file in dir and returns its path. The
// qcow2 writer is sequential with fixed buffers: memory stays flat whatever the disk size.
func convertQcow2(ctx context.Context, d diskfmt.Image, dir string, p publish.Progress) (string, error) {
	q, err := diskfmt.Lookup("qcow2")
	if err != nil {
		return "", err
	}
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".imgfab-oci-*.qcow2")
	if err != nil {
		return "", err
	}
	ctx = diskfmt.WithProgress(ctx, func(done, total int64) {
		p.Emit(publish.Event{Target: targetName, Step: "convert", Done: done, Total: total})
	})
	err = q.Write(ctx, f, d)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// progressWriter reports bytes written as events of one step.
type progressWriter struct {
	p     publish.Progress
	step  string
	done  int64
	total int64
	last  int64
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.done += int64(len(b))
	if w.done-w.last >= 8<<20 || w.done == w.total {
		w.last = w.done
		w.p.Emit(publish.Event{Target: targetName, Step: w.step, Done: w.done, Total: w.total})
	}
	return len(b), nil
}

// fileBlob is a file pushed as it is (artifact mode).
type fileBlob struct {
	path   string
	size   int64
	digest v1.Hash
	mt     types.MediaType
}

func newFileBlob(ctx context.Context, path string, mt types.MediaType, p publish.Progress) (*fileBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	pw := &progressWriter{p: p, step: "digest", total: fi.Size()}
	n, err := io.Copy(io.MultiWriter(h, pw), iox.CtxReader{Ctx: ctx, R: f})
	if err != nil {
		return nil, fmt.Errorf("reading %s at byte %d: %w", path, n, err)
	}
	if n != fi.Size() {
		return nil, fmt.Errorf("%s: read %d bytes, its size is %d (changed while pushing?)", path, n, fi.Size())
	}
	return &fileBlob{path: path, size: n, digest: hashOf(h), mt: mt}, nil
}

func (b *fileBlob) Digest() (v1.Hash, error)             { return b.digest, nil }
func (b *fileBlob) DiffID() (v1.Hash, error)             { return b.digest, nil }
func (b *fileBlob) Size() (int64, error)                 { return b.size, nil }
func (b *fileBlob) MediaType() (types.MediaType, error)  { return b.mt, nil }
func (b *fileBlob) Compressed() (io.ReadCloser, error)   { return os.Open(b.path) }
func (b *fileBlob) Uncompressed() (io.ReadCloser, error) { return os.Open(b.path) }

var _ v1.Layer = (*fileBlob)(nil)

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// containerDiskLayer is the tar of a qcow2 file at ContainerDiskPath, gzip'd. Its digests are
// computed in one pass when it is made; Compressed and Uncompressed produce the stream again
// (through a pipe, fixed memory) each time they are called, so a retry starts over.
type containerDiskLayer struct {
	path           string
	size           int64
	created        time.Time
	digest, diffID v1.Hash
	csize          int64
}

// gzipLevel: a fixed level so that the same tar always gives the same bytes (klauspost's
// gzip is deterministic for a level; its header has no name and a zero time). BestSpeed: about
// 2–4× the throughput of the default level (BenchmarkOCIPush), the gzip pass being the bottleneck.
const gzipLevel = gzip.BestSpeed

func newContainerDiskLayer(ctx context.Context, path string, created time.Time, p publish.Progress) (*containerDiskLayer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	l := &containerDiskLayer{path: path, size: fi.Size(), created: created}
	hd, hc := sha256.New(), sha256.New()
	cnt := &iox.CountWriter{}
	zw, err := gzip.NewWriterLevel(io.MultiWriter(hc, cnt), gzipLevel)
	if err != nil {
		return nil, err
	}
	pw := &progressWriter{p: p, step: "digest", total: l.size}
	if err := l.writeTar(ctx, io.MultiWriter(hd, zw), pw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	l.diffID, l.digest, l.csize = hashOf(hd), hashOf(hc), cnt.N
	return l, nil
}

// writeTar writes the layer tar: the directory, then the disk (tar header fields fixed, so the
// same file gives the same bytes).
func (l *containerDiskLayer) writeTar(ctx context.Context, w io.Writer, progress io.Writer) error {
	f, err := os.Open(l.path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	hdr := func(typ byte, name string, mode, size int64) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size,
			Uid: ContainerDiskUID, Gid: ContainerDiskUID, Uname: "qemu", Gname: "qemu", ModTime: l.created}
	}
	if err := tw.WriteHeader(hdr(tar.TypeDir, "disk/", 0o555, 0)); err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr(tar.TypeReg, ContainerDiskPath, ContainerDiskMode, l.size)); err != nil {
		return err
	}
	var src io.Reader = iox.CtxReader{Ctx: ctx, R: f}
	if progress != nil {
		src = io.TeeReader(src, progress)
	}
	n, err := io.Copy(tw, src)
	if err != nil {
		return fmt.Errorf("%s at byte %d: %w", l.path, n, err)
	}
	return tw.Close() // a file that grew: tar.ErrWriteTooLong above; shrank: "missed writing" here
}

func (l *containerDiskLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *containerDiskLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *containerDiskLayer) Size() (int64, error)                { return l.csize, nil }
func (l *containerDiskLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

func (l *containerDiskLayer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.writeTar(context.Background(), pw, nil)) }()
	return pr, nil
}

func (l *containerDiskLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzipLevel)
		if err == nil {
			err = l.writeTar(context.Background(), zw, nil)
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

var _ v1.Layer = (*containerDiskLayer)(nil)

// reference parses the target's reference and finds its registry's keychain and the secrets it
// hands out (to keep them out of errors).
func (o *Target) reference() (name.Reference, authn.Keychain, []string, error) {
	ref, err := name.ParseReference(o.Ref, o.nameOpts()...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("oci: reference %q: %w", o.Ref, err)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	secrets, err := registrySecrets(kc, ref.Context())
	if err != nil {
		return nil, nil, nil, publish.NewStepError(targetName, "credentials for "+ref.Context().RegistryStr(), err, secrets...)
	}
	return ref, kc, secrets, nil
}
