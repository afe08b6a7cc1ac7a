package layers

// Resolving through the local content store (package cache).
//
// WithStore makes a registry source read every manifest and blob that the store holds from it
// and write every one it fetches into it, checked against its digest as it streams (a blob is
// renamed to its name only once checked). The reference's top manifest or index is recorded in
// the store's index.json under the reference's full name. WithOffline makes a registry
// reference resolve from the store alone: by index.json's entry for the reference, or, with
// WithManifest, by the manifest digest; nothing is fetched, and what the store lacks is an
// error naming the digest.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/cache"
)

// WithStore resolves registry sources through the content store st (see the package cache).
func WithStore(st *cache.Store) Option { return func(o *options) { o.store = st } }

// WithOffline never touches the network: registry references resolve from the store only (it
// needs WithStore).
func WithOffline() Option { return func(o *options) { o.offline = true } }

// WithManifest resolves a registry source to the manifest h (for the platform) without looking
// its reference up: from the store when it holds h, else from the registry by digest.
func WithManifest(h v1.Hash) Option { return func(o *options) { o.manifest = h } }

type ctxOptions struct{}

// WithOptions returns ctx carrying opts: Resolve applies them after its own arguments. It lets a
// caller that owns the context (cmd/imgfab's class-file builds) give a resolver it does not call
// directly (assemble.Run's) the store, offline and a pinned manifest, without a field in every
// plan in between. They change where an image's bytes come from, never which bytes.
func WithOptions(ctx context.Context, opts ...Option) context.Context {
	return context.WithValue(ctx, ctxOptions{}, append(ctxOpts(ctx), opts...))
}

func ctxOpts(ctx context.Context) []Option {
	o, _ := ctx.Value(ctxOptions{}).([]Option)
	return o[:len(o):len(o)]
}

// Pins are the digests an image from Resolve was resolved to: what a lock file records.
type Pins struct {
	Index    string   // the index the reference named ("" when it named the manifest)
	Manifest string   // the image manifest (for a docker-archive: the config, as Digest)
	Config   string   // the config blob
	Layers   []string // the layer blobs, bottom first
}

// PinsOf returns the digests of img.
func PinsOf(img v1.Image) (Pins, error) {
	var p Pins
	if oi, ok := img.(*ociImage); ok && oi.index != (v1.Hash{}) {
		p.Index = oi.index.String()
	}
	d, err := img.Digest()
	if err != nil {
		return p, err
	}
	p.Manifest = d.String()
	c, err := img.ConfigName()
	if err != nil {
		return p, err
	}
	p.Config = c.String()
	m, err := img.Manifest()
	if err != nil {
		return p, err
	}
	for _, l := range m.Layers {
		p.Layers = append(p.Layers, l.Digest.String())
	}
	return p, nil
}

// Fetch reads every layer blob of img that its store lacks, so that the store holds the whole
// image (`imgfab lock`). For images without a store it does nothing.
func Fetch(ctx context.Context, img v1.Image) error {
	oi, ok := img.(*ociImage)
	if !ok {
		return nil
	}
	ss, ok := oi.src.(*storeSource)
	if !ok {
		return nil
	}
	for _, d := range oi.m.Layers {
		if ss.st.Has(d.Digest) {
			continue
		}
		rc, err := ss.blob(ctx, d)
		if err != nil {
			return fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		if !ss.st.Has(d.Digest) {
			return fmt.Errorf("layer %s: not written to the cache %s", d.Digest, ss.st.Dir)
		}
	}
	return nil
}

// storeSource reads through the store; next (nil offline) fetches what it lacks.
type storeSource struct {
	st   *cache.Store
	next source
}

func (s *storeSource) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s: descriptor says %d bytes, more than the %d allowed", d.Digest, d.Size, maxManifestBytes)
	}
	if s.st.Has(d.Digest) {
		rc, err := s.st.Open(d.Digest)
		if err == nil {
			return readChecked(rc, d, maxManifestBytes, "manifest")
		}
	}
	if s.next == nil {
		return nil, &cache.MissingError{Dir: s.st.Dir, Digest: d.Digest.String(), What: "manifest"}
	}
	raw, err := s.next.manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	if _, err := s.st.PutBytes(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

func (s *storeSource) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if f, err := s.st.Open(d.Digest); err == nil {
		return f, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if s.next == nil {
		return nil, &cache.MissingError{Dir: s.st.Dir, Digest: d.Digest.String(), What: "blob"}
	}
	rc, err := s.next.blob(ctx, d)
	if err != nil {
		return nil, err
	}
	w, err := s.st.NewBlob(d.Digest, d.Size)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &teeBlob{rc: rc, w: w}, nil
}

// teeBlob writes what is read into the store; at EOF the blob is committed (checked and
// renamed). A read that stops before EOF, or a write error, leaves nothing in the store.
type teeBlob struct {
	rc  io.ReadCloser
	w   *cache.BlobWriter
	err error // a commit error, returned at EOF
}

func (t *teeBlob) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if t.w != nil && n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.w.Abort()
			t.w = nil
		}
	}
	if err == io.EOF && t.w != nil {
		if cerr := t.w.Commit(); cerr != nil {
			t.err = cerr
		}
		t.w = nil
	}
	if err == io.EOF && t.err != nil {
		return n, t.err
	}
	if err != nil && err != io.EOF && t.w != nil {
		t.w.Abort()
		t.w = nil
	}
	return n, err
}

func (t *teeBlob) Close() error {
	if t.w != nil {
		t.w.Abort()
		t.w = nil
	}
	return t.rc.Close()
}

// manifestMediaType reads the media type of a stored manifest or index: its mediaType field,
// else by its shape.
func manifestMediaType(raw []byte) types.MediaType {
	var m struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	json.Unmarshal(raw, &m)
	switch {
	case m.MediaType != "":
		return types.MediaType(m.MediaType)
	case m.Manifests != nil:
		return types.OCIImageIndex
	default:
		return types.OCIManifestSchema1
	}
}

// resolveStored resolves a registry reference through the store: by WithManifest's digest, or
// offline by index.json's entry for the reference. ok is false when the caller should resolve the
// reference online.
func resolveStored(ctx context.Context, ref name.Reference, o *options, mkRemote func() (source, error)) (v1.Image, bool, error) {
	st := o.store
	ss := &storeSource{st: st}
	if !o.offline {
		if o.manifest == (v1.Hash{}) {
			return nil, false, nil
		}
		next, err := mkRemote()
		if err != nil {
			return nil, true, err
		}
		ss.next = next
	}
	w := newWalker(ctx, ss, o)
	var d v1.Descriptor
	where := ref.Name()
	if o.manifest != (v1.Hash{}) {
		d = v1.Descriptor{Digest: o.manifest}
		raw, err := ss.manifest(ctx, d)
		if err != nil {
			return nil, true, fmt.Errorf("%s: %w", where, err)
		}
		d.Size = int64(len(raw))
		d.MediaType = manifestMediaType(raw)
	} else {
		var ok bool
		var err error
		d, ok, err = st.Lookup(ref.Name())
		if err != nil {
			return nil, true, err
		}
		if !ok {
			return nil, true, &cache.MissingError{Dir: st.Dir, Digest: ref.Name(), What: "reference"}
		}
	}
	img, err := w.fromDescriptor(d, where)
	if err != nil {
		return nil, true, err
	}
	if oi, ok := img.(*ociImage); ok && d.Digest != oi.desc.Digest {
		oi.index = d.Digest
	}
	return img, true, nil
}

// remoteForStore is the registry source behind a store, made only when something is fetched.
func remoteForStore(ctx context.Context, ref name.Reference, o *options) func() (source, error) {
	return func() (source, error) {
		sizes := newBlobSizes()
		puller, err := remote.NewPuller(remoteOptions(ctx, o, sizes)...)
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %w", ref, err)
		}
		return &remoteSource{repo: ref.Context(), puller: puller, pol: o.retry, sizes: sizes}, nil
	}
}
