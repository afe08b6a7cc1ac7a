package layers

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgfab/imgfab/cache"
	"github.com/imgfab/imgfab/internal/safefile"
)

// Option configures Resolve.
type Option func(*options)

type options struct {
	platform v1.Platform
	insecure bool
	keychain authn.Keychain
	retry    retryPolicy
	store    *cache.Store // WithStore; nil: none
	offline  bool         // WithOffline
	manifest v1.Hash      // WithManifest; zero: resolve the reference
}

// WithPlatform picks the image for p out of an index (default linux/amd64). A Variant of ""
// matches any variant.
func WithPlatform(p v1.Platform) Option { return func(o *options) { o.platform = p } }

// WithInsecure lets registry references use plain HTTP (for loopback tests).
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithKeychain sets the registry credentials (default authn.DefaultKeychain, which reads
// ~/.docker/config.json).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// refNameAnnotation is the OCI image-spec annotation (annotations.md) that names a tag in index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// Resolve opens source and returns one image:
//
//   - "oci:DIR[:TAG]": an OCI image layout; TAG is matched against the
//     org.opencontainers.image.ref.name annotation of index.json's manifests. Without TAG the layout
//     must hold exactly one manifest (an image, or an index that resolves by platform).
//   - "docker-archive:FILE[:TAG]": a `docker save` tarball; TAG ("repo:tag") is needed only when it
//     holds several images.
//   - "docker://REF" or a bare REF: a registry, through go-containerregistry's remote package.
//
// Indexes, nested ones too, resolve by platform; when none matches the error lists the platforms
// available.
func Resolve(ctx context.Context, source string, opts ...Option) (v1.Image, error) {
	o := options{platform: v1.Platform{OS: "linux", Architecture: "amd64"}, keychain: authn.DefaultKeychain, retry: defaultRetry}
	for _, opt := range append(opts, ctxOpts(ctx)...) {
		opt(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(source, "oci:"):
		return resolveLayout(ctx, strings.TrimPrefix(source, "oci:"), &o)
	case strings.HasPrefix(source, "docker-archive:"):
		return resolveArchive(ctx, strings.TrimPrefix(source, "docker-archive:"))
	case strings.HasPrefix(source, "docker://"):
		return resolveRemote(ctx, strings.TrimPrefix(source, "docker://"), &o)
	case strings.HasPrefix(source, "dir:"), strings.HasPrefix(source, "tar:"):
		return nil, fmt.Errorf("resolving %q: dir: and tar: are extra layers, not images", source)
	default:
		return resolveRemote(ctx, source, &o)
	}
}

// splitPathTag splits "PATH[:TAG]": the whole string if it names an existing file, else the
// shortest prefix before a ':' that does.
func splitPathTag(s string) (p, tag string, err error) {
	if _, err := os.Stat(s); err == nil {
		return s, "", nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i], s[i+1:], nil
		}
	}
	_, err = os.Stat(s)
	return "", "", err
}

func resolveLayout(ctx context.Context, s string, o *options) (v1.Image, error) {
	dir, tag, err := splitPathTag(s)
	if err != nil {
		return nil, fmt.Errorf("opening OCI layout %q: %w", s, err)
	}
	where := dir + "/index.json"
	f, fi, err := safefile.Open(filepath.Join(dir, "index.json"), "OCI layout index")
	if err != nil {
		return nil, fmt.Errorf("opening OCI layout %s: %w", dir, err)
	}
	if fi.Size() > maxIndexJSONBytes {
		f.Close()
		return nil, fmt.Errorf("OCI layout %s: index.json has %d bytes, more than the %d allowed", dir, fi.Size(), maxIndexJSONBytes)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxIndexJSONBytes+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", where, err)
	}
	if len(raw) > maxIndexJSONBytes {
		return nil, fmt.Errorf("OCI layout %s: index.json has more than the %d bytes allowed", dir, maxIndexJSONBytes)
	}
	manifests, err := parseIndex(raw, where)
	if err != nil {
		return nil, err
	}
	w := newWalker(ctx, layoutSource{dir: dir}, o)
	var tags []string
	for _, d := range manifests {
		if t, ok := d.Annotations[refNameAnnotation]; ok {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	var pick *v1.Descriptor
	if tag != "" {
		for i, d := range manifests {
			t := d.Annotations[refNameAnnotation]
			if t == tag || (strings.Contains(t, ":") && t[strings.LastIndex(t, ":")+1:] == tag) {
				if pick != nil {
					return nil, fmt.Errorf("OCI layout %s: tag %q names %d manifests", dir, tag, countTag(manifests, tag))
				}
				pick = &manifests[i]
			}
		}
		if pick == nil {
			return nil, fmt.Errorf("OCI layout %s: no manifest tagged %q (tags: %s)", dir, tag, listOrNone(tags))
		}
	} else {
		switch {
		case len(manifests) == 1:
			pick = &manifests[0]
		case len(manifests) > 1 && len(tags) == 0:
			// index.json itself is a multi-platform index without tags: resolve by platform.
			return w.pickFromIndex(manifests, where)
		default:
			return nil, fmt.Errorf("OCI layout %s holds %d manifests; name one with oci:%s:TAG (tags: %s)",
				dir, len(manifests), dir, listOrNone(tags))
		}
	}
	return w.fromDescriptor(*pick, where)
}

func countTag(ds []v1.Descriptor, tag string) int {
	n := 0
	for _, d := range ds {
		t := d.Annotations[refNameAnnotation]
		if t == tag || strings.HasSuffix(t, ":"+tag) {
			n++
		}
	}
	return n
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// walker resolves manifests and nested indexes of one source to one image. The walk is bounded by
// what the source really holds, never by what it claims: every index is fetched and walked at most
// once however many entries name it, an index may have at most maxIndexEntries entries, at most
// maxWalkEntries entries are examined in all, and indexes nest at most maxIndexDepth deep.
type walker struct {
	ctx     context.Context
	src     source
	o       *options
	seen    map[v1.Hash]bool // indexes walked
	entries int              // index entries examined so far
	avail   []string         // platforms seen, for the error when none matches
	availOK map[string]bool
}

func newWalker(ctx context.Context, src source, o *options) *walker {
	return &walker{ctx: ctx, src: src, o: o, seen: make(map[v1.Hash]bool), availOK: make(map[string]bool)}
}

// fromDescriptor fetches the manifest d names (its digest checked) and returns it as an image, or,
// for an index, the image it holds for the platform.
func (w *walker) fromDescriptor(d v1.Descriptor, where string) (v1.Image, error) {
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		raw, err := w.src.manifest(w.ctx, d)
		if err != nil {
			return nil, fmt.Errorf("%s: index %w", where, err)
		}
		w.seen[d.Digest] = true
		child := "index " + d.Digest.String()
		manifests, err := parseIndex(raw, child)
		if err != nil {
			return nil, err
		}
		return w.pickFromIndex(manifests, child)
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		raw, err := w.src.manifest(w.ctx, d)
		if err != nil {
			return nil, fmt.Errorf("%s: image %w", where, err)
		}
		img, err := newOCIImage(w.ctx, w.src, d, raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return img, nil
	default:
		return nil, fmt.Errorf("%s: manifest %s has unsupported media type %q", where, d.Digest, d.MediaType)
	}
}

// pickFromIndex resolves an index's entries by platform; nested indexes are searched depth
// first, in order.
func (w *walker) pickFromIndex(manifests []v1.Descriptor, where string) (v1.Image, error) {
	d, err := w.pick(manifests, where, 0)
	if err != nil {
		return nil, err
	}
	if d == nil {
		avail := w.avail
		if len(avail) > 20 {
			avail = append(avail[:20:20], fmt.Sprintf("and %d more", len(w.avail)-20))
		}
		return nil, fmt.Errorf("%s: no image for platform %s (available: %s)", where, platformString(&w.o.platform), listOrNone(avail))
	}
	return w.fromDescriptor(d.Descriptor, d.where)
}

// picked is the descriptor of the image chosen, with the index it was found in.
type picked struct {
	v1.Descriptor
	where string
}

func (w *walker) pick(manifests []v1.Descriptor, where string, depth int) (*picked, error) {
	if depth > maxIndexDepth {
		return nil, fmt.Errorf("%s: indexes nested more than %d deep", where, maxIndexDepth)
	}
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	if len(manifests) > maxIndexEntries {
		return nil, fmt.Errorf("%s: index has %d entries, more than the %d allowed", where, len(manifests), maxIndexEntries)
	}
	w.entries += len(manifests)
	if w.entries > maxWalkEntries {
		return nil, fmt.Errorf("%s: nested indexes hold more than %d entries in all (%d with this index of %d): refused",
			where, maxWalkEntries, w.entries, len(manifests))
	}
	for _, d := range manifests {
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			if w.seen[d.Digest] {
				continue // walked already: it holds no match
			}
			w.seen[d.Digest] = true
			raw, err := w.src.manifest(w.ctx, d)
			if err != nil {
				return nil, fmt.Errorf("%s: index %w", where, err)
			}
			child := "index " + d.Digest.String()
			cm, err := parseIndex(raw, child)
			if err != nil {
				return nil, err
			}
			p, err := w.pick(cm, child, depth+1)
			if err != nil || p != nil {
				return p, err
			}
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			if d.Platform != nil && d.Platform.OS != "unknown" {
				if s := platformString(d.Platform); !w.availOK[s] {
					w.availOK[s] = true
					w.avail = append(w.avail, s)
				}
			}
			if platformMatches(w.o.platform, d.Platform) {
				return &picked{Descriptor: d, where: where}, nil
			}
		}
	}
	return nil, nil
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return "unknown"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func platformMatches(want v1.Platform, got *v1.Platform) bool {
	if got == nil {
		return false
	}
	if got.OS != want.OS || got.Architecture != want.Architecture {
		return false
	}
	if want.Variant != "" && got.Variant != want.Variant {
		return false
	}
	if want.OSVersion != "" && got.OSVersion != want.OSVersion {
		return false
	}
	return true
}

func resolveRemote(ctx context.Context, s string, o *options) (v1.Image, error) {
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(s, nopts...)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", s, err)
	}
	if o.store != nil {
		if img, ok, err := resolveStored(ctx, ref, o, remoteForStore(ctx, ref, o)); ok {
			return img, err
		}
	} else if o.offline {
		return nil, fmt.Errorf("%s: offline, and no cache to resolve from", ref)
	}
	sizes := newBlobSizes()
	puller, err := remote.NewPuller(remoteOptions(ctx, o, sizes)...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	desc, err := puller.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	if len(desc.Manifest) > maxManifestBytes {
		return nil, fmt.Errorf("fetching %s: manifest of %d bytes, more than the %d allowed", ref, len(desc.Manifest), maxManifestBytes)
	}
	d := desc.Descriptor
	if err := checkManifestDigest(func() ([]byte, error) { return desc.Manifest, nil }, d); err != nil {
		return nil, fmt.Errorf("fetching %s: manifest %w", ref, err)
	}
	var src source = &remoteSource{repo: ref.Context(), puller: puller, pol: o.retry, sizes: sizes}
	if o.store != nil {
		// The reference's manifest or index goes into the store and its index.json.
		if _, err := o.store.PutBytes(desc.Manifest); err != nil {
			return nil, err
		}
		if err := o.store.Tag(ref.Name(), v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}); err != nil {
			return nil, err
		}
		src = &storeSource{st: o.store, next: src}
	}
	w := newWalker(ctx, src, o)
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		w.seen[d.Digest] = true
		where := ref.String()
		manifests, err := parseIndex(desc.Manifest, where)
		if err != nil {
			return nil, err
		}
		img, err := w.pickFromIndex(manifests, where)
		if oi, ok := img.(*ociImage); ok {
			oi.index = d.Digest
		}
		return img, err
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		img, err := newOCIImage(ctx, w.src, d, desc.Manifest)
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %w", ref, err)
		}
		return img, nil
	default:
		return nil, fmt.Errorf("fetching %s: unsupported manifest media type %q", ref, d.MediaType)
	}
}
