package layers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgfab/imgfab/internal/safefile"
)

// Option configures Resolve.
type Option func(*options)

type options struct {
	platform v1.Platform
	insecure bool
	keychain authn.Keychain
	retry    retryPolicy
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
	for _, opt := range opts {
		opt(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(source, "oci:"):
		return resolveLayout(ctx, strings.TrimPrefix(source, "oci:"), &o)
	case strings.HasPrefix(source, "docker-archive:"):
		return resolveArchive(strings.TrimPrefix(source, "docker-archive:"))
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
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("opening OCI layout %s: %w", dir, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("opening OCI layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading %s/index.json: %w", dir, err)
	}
	var tags []string
	for _, d := range im.Manifests {
		if t, ok := d.Annotations[refNameAnnotation]; ok {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	var pick *v1.Descriptor
	if tag != "" {
		for i, d := range im.Manifests {
			t := d.Annotations[refNameAnnotation]
			if t == tag || (strings.Contains(t, ":") && t[strings.LastIndex(t, ":")+1:] == tag) {
				if pick != nil {
					return nil, fmt.Errorf("OCI layout %s: tag %q names %d manifests", dir, tag, countTag(im.Manifests, tag))
				}
				pick = &im.Manifests[i]
			}
		}
		if pick == nil {
			return nil, fmt.Errorf("OCI layout %s: no manifest tagged %q (tags: %s)", dir, tag, listOrNone(tags))
		}
	} else {
		switch {
		case len(im.Manifests) == 1:
			pick = &im.Manifests[0]
		case len(im.Manifests) > 1 && len(tags) == 0:
			// index.json itself is a multi-platform index without tags: resolve by platform.
			return pickFromIndex(ctx, idx, o, dir+"/index.json")
		default:
			return nil, fmt.Errorf("OCI layout %s holds %d manifests; name one with oci:%s:TAG (tags: %s)",
				dir, len(im.Manifests), dir, listOrNone(tags))
		}
	}
	return fromDescriptor(ctx, idx, *pick, o, dir+"/index.json")
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

// fromDescriptor opens the manifest d of idx as an image, or as an index resolved by platform,
// checking the manifest's digest against d.
func fromDescriptor(ctx context.Context, idx v1.ImageIndex, d v1.Descriptor, o *options, where string) (v1.Image, error) {
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: opening index %s: %w", where, d.Digest, err)
		}
		if err := checkManifestDigest(child.RawManifest, d); err != nil {
			return nil, fmt.Errorf("%s: index %w", where, err)
		}
		return pickFromIndex(ctx, child, o, "index "+d.Digest.String())
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: opening image %s: %w", where, d.Digest, err)
		}
		if err := checkManifestDigest(img.RawManifest, d); err != nil {
			return nil, fmt.Errorf("%s: image manifest %w", where, err)
		}
		return img, nil
	default:
		return nil, fmt.Errorf("%s: manifest %s has unsupported media type %q", where, d.Digest, d.MediaType)
	}
}

func checkManifestDigest(raw func() ([]byte, error), d v1.Descriptor) error {
	b, err := raw()
	if err != nil {
		return fmt.Errorf("%s: %w", d.Digest, err)
	}
	if d.Digest.Algorithm != "sha256" {
		return fmt.Errorf("%s: unsupported digest algorithm %q", d.Digest, d.Digest.Algorithm)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != d.Digest.Hex {
		return fmt.Errorf("%s: digest mismatch: blob has sha256:%s", d.Digest, got)
	}
	if d.Size != 0 && d.Size != int64(len(b)) {
		return fmt.Errorf("%s: size mismatch: descriptor says %d bytes, blob has %d", d.Digest, d.Size, len(b))
	}
	return nil
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

// pickFromIndex resolves idx by platform; nested indexes are searched depth first, in order.
func pickFromIndex(ctx context.Context, idx v1.ImageIndex, o *options, where string) (v1.Image, error) {
	var avail []string
	img, err := pickRec(ctx, idx, o, where, &avail, 0)
	if err != nil {
		return nil, err
	}
	if img == nil {
		return nil, fmt.Errorf("%s: no image for platform %s (available: %s)", where, platformString(&o.platform), listOrNone(avail))
	}
	return img, nil
}

func pickRec(ctx context.Context, idx v1.ImageIndex, o *options, where string, avail *[]string, depth int) (v1.Image, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: indexes nested more than 8 deep", where)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: reading index: %w", where, err)
	}
	for _, d := range im.Manifests {
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("%s: opening index %s: %w", where, d.Digest, err)
			}
			if err := checkManifestDigest(child.RawManifest, d); err != nil {
				return nil, fmt.Errorf("%s: index %w", where, err)
			}
			img, err := pickRec(ctx, child, o, "index "+d.Digest.String(), avail, depth+1)
			if err != nil || img != nil {
				return img, err
			}
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			if d.Platform != nil && d.Platform.OS != "unknown" {
				*avail = append(*avail, platformString(d.Platform))
			}
			if platformMatches(o.platform, d.Platform) {
				return fromDescriptor(ctx, idx, d, o, where)
			}
		}
	}
	return nil, nil
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
	desc, err := remote.Get(ref, remoteOptions(ctx, o)...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	switch desc.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("fetching index %s: %w", ref, err)
		}
		img, err := pickFromIndex(ctx, idx, o, ref.String())
		if err != nil {
			return nil, err
		}
		return withRetries(ctx, img, o), nil
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("fetching image %s: %w", ref, err)
		}
		return withRetries(ctx, img, o), nil
	default:
		return nil, fmt.Errorf("fetching %s: unsupported manifest media type %q", ref, desc.MediaType)
	}
}

// archiveImage marks an image read from a `docker save` tarball: its layers are checked against the
// config's diff_ids (ImageLayers would otherwise have to gzip every layer to compute a manifest).
type archiveImage struct {
	v1.Image
	file string
}

func resolveArchive(s string) (v1.Image, error) {
	file, tagStr, err := splitPathTag(s)
	if err != nil {
		return nil, fmt.Errorf("opening docker archive %q: %w", s, err)
	}
	var tag *name.Tag
	if tagStr != "" {
		t, err := name.NewTag(tagStr)
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: parsing tag %q: %w", file, tagStr, err)
		}
		tag = &t
	}
	// Refuse a FIFO or device before go-containerregistry opens it (an open of a FIFO blocks).
	f, _, err := safefile.Open(file, "docker archive")
	if err != nil {
		return nil, err
	}
	f.Close()
	img, err := tarball.ImageFromPath(file, tag)
	if err != nil {
		return nil, fmt.Errorf("opening docker archive %s: %w", file, err)
	}
	// Check the config against the digest in its file name ("<hex>.json" or "blobs/sha256/<hex>").
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return nil, fmt.Errorf("opening docker archive %s: reading manifest.json: %w", file, err)
	}
	var cfgName string
	for _, d := range m {
		if tag == nil {
			cfgName = d.Config
			break
		}
		for _, rt := range d.RepoTags {
			if t, err := name.NewTag(rt); err == nil && t.Name() == tag.Name() {
				cfgName = d.Config
			}
		}
	}
	want := strings.TrimSuffix(path.Base(cfgName), ".json")
	if len(want) == 64 {
		if _, err := hex.DecodeString(want); err == nil {
			raw, err := img.RawConfigFile()
			if err != nil {
				return nil, fmt.Errorf("docker archive %s: reading config %s: %w", file, cfgName, err)
			}
			sum := sha256.Sum256(raw)
			if got := hex.EncodeToString(sum[:]); got != want {
				return nil, fmt.Errorf("docker archive %s: config %s: digest mismatch: want sha256:%s, got sha256:%s", file, cfgName, want, got)
			}
		}
	}
	return &archiveImage{Image: img, file: file}, nil
}
