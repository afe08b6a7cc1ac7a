package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgfab/imgfab/internal/safefile"
)

// Limits on what an image source can make Resolve and ImageLayers do; see the package doc.
const (
	// MaxLayers is the most layers an image may have. Docker builds at most 127 and overlayfs stacks
	// at most 500; OCI sets no limit. Above it an image is refused before any layer is read. (A
	// layer costs about 0.1 ms beyond its bytes: 10,000 small layers flatten in about a second.)
	MaxLayers = 16384
	// maxIndexDepth is how deep indexes may nest below the one Resolve starts from.
	maxIndexDepth = 8
	// maxIndexEntries is the most entries one index walked for a platform may have.
	maxIndexEntries = 1000
	// maxWalkEntries is the most index entries examined in all while walking nested indexes for a
	// platform (each index is fetched and walked at most once, however often it is named).
	maxWalkEntries = 4096
	// maxManifestBytes bounds a manifest or index blob (registries refuse manifests above 4 MiB).
	maxManifestBytes = 4 << 20
	// maxIndexJSONBytes bounds an OCI layout's index.json, which lists every tag of the layout.
	maxIndexJSONBytes = 16 << 20
	// maxConfigBytes bounds an image config blob.
	maxConfigBytes = 16 << 20
)

// jsonDesc, jsonManifest and jsonConfig read manifests, indexes and configs with digests as plain
// strings: go-containerregistry's types refuse a bad digest with a message that names neither the
// field nor where it was ("found non-hex character in hash"). Every digest is checked by
// parseDigest, naming both, before it is used for anything (never a path built from it unchecked).
type jsonDesc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *v1.Platform      `json:"platform,omitempty"`
}

type jsonManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        *jsonDesc         `json:"config"`
	Layers        []jsonDesc        `json:"layers"`
	Manifests     []jsonDesc        `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	Subject       *jsonDesc         `json:"subject,omitempty"`
}

type jsonConfig struct {
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// shortQ quotes s for an error message, cut to 100 bytes.
func shortQ(s string) string {
	if len(s) > 100 {
		return fmt.Sprintf("%q… (%d bytes)", s[:100], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// parseDigest checks a digest read from a manifest, index or config: "sha256:" and 64 lowercase
// hex digits. what names where it was read ("manifest layer 3").
func parseDigest(what, s string) (v1.Hash, error) {
	alg, hx, ok := cutColon(s)
	switch {
	case !ok || alg == "":
		return v1.Hash{}, fmt.Errorf("%s: digest %s: not ALGORITHM:HEX", what, shortQ(s))
	case alg != "sha256":
		return v1.Hash{}, fmt.Errorf("%s: digest %s: unsupported digest algorithm %s (only sha256)", what, shortQ(s), shortQ(alg))
	case len(hx) != 64 || !lowerHex(hx):
		return v1.Hash{}, fmt.Errorf("%s: digest %s: not 64 hex digits", what, shortQ(s))
	}
	return v1.Hash{Algorithm: alg, Hex: hx}, nil
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// descriptor checks d (digest, size) and returns it as a v1.Descriptor; what names it in errors.
func (d *jsonDesc) descriptor(what string) (v1.Descriptor, error) {
	h, err := parseDigest(what, d.Digest)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if d.Size < 0 {
		return v1.Descriptor{}, fmt.Errorf("%s: %s: negative size %d", what, d.Digest, d.Size)
	}
	return v1.Descriptor{MediaType: types.MediaType(d.MediaType), Digest: h, Size: d.Size, URLs: d.URLs,
		Annotations: d.Annotations, Platform: d.Platform}, nil
}

// parseIndex reads an index (or index.json) and checks every entry's digest.
func parseIndex(raw []byte, where string) ([]v1.Descriptor, error) {
	var m jsonManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: parsing index: %w", where, err)
	}
	out := make([]v1.Descriptor, 0, len(m.Manifests))
	for i := range m.Manifests {
		d, err := m.Manifests[i].descriptor(fmt.Sprintf("%s: manifests[%d]", where, i))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// parseManifest reads an image manifest and checks its config and layer digests.
func parseManifest(raw []byte, mt types.MediaType) (*v1.Manifest, error) {
	var jm jsonManifest
	if err := json.Unmarshal(raw, &jm); err != nil {
		return nil, fmt.Errorf("parsing image manifest: %w", err)
	}
	if jm.Config == nil {
		return nil, fmt.Errorf("image manifest has no config")
	}
	m := &v1.Manifest{SchemaVersion: jm.SchemaVersion, MediaType: types.MediaType(jm.MediaType), Annotations: jm.Annotations}
	if m.MediaType == "" {
		m.MediaType = mt
	}
	var err error
	if m.Config, err = jm.Config.descriptor("manifest config"); err != nil {
		return nil, err
	}
	if len(jm.Layers) > MaxLayers {
		return nil, fmt.Errorf("image manifest lists %d layers, more than the %d allowed", len(jm.Layers), MaxLayers)
	}
	m.Layers = make([]v1.Descriptor, len(jm.Layers))
	for i := range jm.Layers {
		if m.Layers[i], err = jm.Layers[i].descriptor(fmt.Sprintf("manifest layer %d", i)); err != nil {
			return nil, err
		}
	}
	if jm.Subject != nil {
		s, err := jm.Subject.descriptor("manifest subject")
		if err != nil {
			return nil, err
		}
		m.Subject = &s
	}
	return m, nil
}

// parseDiffIDs reads a config's rootfs.diff_ids and checks each.
func parseDiffIDs(raw []byte) ([]v1.Hash, error) {
	var c jsonConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("parsing image config: %w", err)
	}
	if len(c.RootFS.DiffIDs) > MaxLayers {
		return nil, fmt.Errorf("image config lists %d diff_ids, more than the %d layers allowed", len(c.RootFS.DiffIDs), MaxLayers)
	}
	out := make([]v1.Hash, len(c.RootFS.DiffIDs))
	for i, s := range c.RootFS.DiffIDs {
		h, err := parseDigest(fmt.Sprintf("config rootfs.diff_ids[%d]", i), s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// readChecked reads what rc holds, at most limit bytes, and checks it against d's digest and
// size (a size of 0 in d: not given). what names the blob in errors ("index", "config blob").
func readChecked(rc io.ReadCloser, d v1.Descriptor, limit int64, what string) ([]byte, error) {
	defer rc.Close()
	if d.Size > limit {
		return nil, fmt.Errorf("%s %s: descriptor says %d bytes, more than the %d allowed", what, d.Digest, d.Size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, d.Digest, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: more than the %d bytes allowed", what, d.Digest, limit)
	}
	if err := checkManifestDigest(func() ([]byte, error) { return b, nil }, d); err != nil {
		return nil, fmt.Errorf("%s %w", what, err)
	}
	return b, nil
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

// source fetches the manifests and blobs of an OCI layout or a registry repository by digest. Each
// call costs the same whatever the number of layers (go-containerregistry's images look a layer up
// by parsing the whole manifest again: n layers cost O(n²)).
type source interface {
	// manifest returns the manifest or index d names, whole, checked against d's digest and size.
	manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// blob opens blob d (a layer or the config) as stored; the caller checks what it reads.
	blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
}

// layoutSource reads an OCI image layout directory.
type layoutSource struct{ dir string }

func (s layoutSource) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	// d.Digest was checked by parseDigest: "sha256" and 64 hex digits, nothing else to climb with.
	f, _, err := safefile.Open(filepath.Join(s.dir, "blobs", d.Digest.Algorithm, d.Digest.Hex), "blob "+d.Digest.String())
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s layoutSource) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s: descriptor says %d bytes, more than the %d allowed", d.Digest, d.Size, maxManifestBytes)
	}
	rc, err := s.blob(ctx, d)
	if err != nil {
		return nil, err
	}
	return readChecked(rc, d, maxManifestBytes, "manifest")
}

// remoteSource reads a registry repository; blobs are read with retries (retry.go).
type remoteSource struct {
	repo   name.Repository
	puller *remote.Puller
	pol    retryPolicy
	sizes  *blobSizes
}

func (s *remoteSource) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s: descriptor says %d bytes, more than the %d allowed", d.Digest, d.Size, maxManifestBytes)
	}
	desc, err := s.puller.Get(ctx, s.repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", d.Digest, err)
	}
	return readChecked(io.NopCloser(bytes.NewReader(desc.Manifest)), d, maxManifestBytes, "manifest")
}

func (s *remoteSource) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	s.sizes.expect(d.Digest, d.Size)
	l, err := s.puller.Layer(ctx, s.repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, err
	}
	rl := &retryLayer{Layer: l, ctx: ctx, pol: s.pol, digest: d.Digest, size: d.Size}
	return rl.Compressed()
}

// ociImage is an image of an OCI layout or a registry: its manifest read and checked by Resolve
// (every digest in it valid, the config read and checked), its blobs opened through src by
// digest, each in constant time.
type ociImage struct {
	ctx     context.Context
	src     source
	desc    v1.Descriptor // the manifest's own: digest, size, media type
	raw     []byte
	m       *v1.Manifest
	cfg     []byte    // checked against m.Config
	diffIDs []v1.Hash // checked; may be fewer than the layers (ImageLayers does not need them)
	index   v1.Hash   // the index a registry reference named and this image was picked from; zero: none

	once     sync.Once
	byDigest map[v1.Hash]int
	byDiffID map[v1.Hash]int
}

// newOCIImage checks the manifest raw (whose descriptor is d) and reads and checks its config.
func newOCIImage(ctx context.Context, src source, d v1.Descriptor, raw []byte) (*ociImage, error) {
	m, err := parseManifest(raw, d.MediaType)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", d.Digest, err)
	}
	img := &ociImage{ctx: ctx, src: src, desc: d, raw: raw, m: m}
	if err := checkConfigType(m); err != nil {
		return nil, err
	}
	if m.Config.Size > maxConfigBytes {
		return nil, fmt.Errorf("config blob %s: manifest says %d bytes, more than the %d allowed", m.Config.Digest, m.Config.Size, maxConfigBytes)
	}
	rc, err := src.blob(ctx, m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config blob %s: %w", m.Config.Digest, err)
	}
	defer rc.Close()
	cfg, err := io.ReadAll(io.LimitReader(rc, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading config blob %s: %w", m.Config.Digest, err)
	}
	if err := checkBlob(cfg, m.Config); err != nil {
		return nil, fmt.Errorf("config blob %w", err)
	}
	if img.diffIDs, err = parseDiffIDs(cfg); err != nil {
		return nil, fmt.Errorf("config blob %s: %w", m.Config.Digest, err)
	}
	img.cfg = cfg
	return img, nil
}

// checkConfigType refuses an OCI artifact (a Helm chart, a WASM module, ...): not a container image.
func checkConfigType(m *v1.Manifest) error {
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON, "":
		return nil
	}
	return fmt.Errorf("config blob %s has unsupported media type %q: not a container image", m.Config.Digest, m.Config.MediaType)
}

func (i *ociImage) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }
func (i *ociImage) Size() (int64, error)                { return int64(len(i.raw)), nil }
func (i *ociImage) Digest() (v1.Hash, error)            { return i.desc.Digest, nil }
func (i *ociImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *ociImage) Manifest() (*v1.Manifest, error)     { return i.m.DeepCopy(), nil }
func (i *ociImage) ConfigName() (v1.Hash, error)        { return i.m.Config.Digest, nil }
func (i *ociImage) RawConfigFile() ([]byte, error)      { return i.cfg, nil }

func (i *ociImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.cfg))
}

func (i *ociImage) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(i.m.Layers))
	for n := range i.m.Layers {
		out[n] = i.layer(n)
	}
	return out, nil
}

func (i *ociImage) maps() {
	i.once.Do(func() {
		i.byDigest = make(map[v1.Hash]int, len(i.m.Layers))
		for n := len(i.m.Layers) - 1; n >= 0; n-- {
			i.byDigest[i.m.Layers[n].Digest] = n
		}
		i.byDiffID = make(map[v1.Hash]int, len(i.diffIDs))
		for n := len(i.diffIDs) - 1; n >= 0; n-- {
			i.byDiffID[i.diffIDs[n]] = n
		}
	})
}

func (i *ociImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if h == i.m.Config.Digest {
		return partial.CompressedToLayer(&ociBlob{img: i, d: i.m.Config, n: -1})
	}
	i.maps()
	n, ok := i.byDigest[h]
	if !ok {
		return nil, fmt.Errorf("image %s has no layer %s", i.desc.Digest, h)
	}
	return i.layer(n), nil
}

func (i *ociImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	i.maps()
	n, ok := i.byDiffID[h]
	if !ok || n >= len(i.m.Layers) {
		return nil, fmt.Errorf("image %s has no layer with diff_id %s", i.desc.Digest, h)
	}
	return i.layer(n), nil
}

func (i *ociImage) layer(n int) v1.Layer {
	l, _ := partial.CompressedToLayer(&ociBlob{img: i, d: i.m.Layers[n], n: n})
	return l
}

// ociBlob is a layer (or the config, n = -1) of an ociImage.
type ociBlob struct {
	img *ociImage
	d   v1.Descriptor
	n   int
}

func (b *ociBlob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b *ociBlob) Size() (int64, error)                { return b.d.Size, nil }
func (b *ociBlob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }
func (b *ociBlob) Descriptor() (*v1.Descriptor, error) { d := b.d; return &d, nil }
func (b *ociBlob) Compressed() (io.ReadCloser, error)  { return b.img.src.blob(b.img.ctx, b.d) }
func (b *ociBlob) DiffID() (v1.Hash, error) {
	if b.n < 0 || b.n >= len(b.img.diffIDs) {
		return v1.Hash{}, fmt.Errorf("blob %s: no diff_id in the config", b.d.Digest)
	}
	return b.img.diffIDs[b.n], nil
}
