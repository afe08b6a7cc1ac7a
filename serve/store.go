package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media and artifact types of what the service stores (OCI image-spec 1.1 artifacts: an
// artifactType, the empty config, one blob).
const (
	ClassArtifactType = "application/vnd.imgfab.class.v1"
	ClassMediaType    = "application/vnd.imgfab.class.v1+yaml"
	PinArtifactType   = "application/vnd.imgfab.pin.v1"
	DiskArtifactType  = "application/vnd.imgfab.disk.v1" // as `imgfab push oci --artifact`
	DiskMediaPrefix   = "application/vnd.imgfab.disk."   // + format
	emptyMediaType    = "application/vnd.oci.empty.v1+json"
)

// Annotations on the stored manifests.
const (
	AnnClass  = "dev.imgfab.class"  // class id
	AnnArch   = "dev.imgfab.arch"   // amd64, arm64
	AnnFile   = "dev.imgfab.file"   // disk.qcow2, …
	AnnSource = "dev.imgfab.source" // the source's manifest digest the artifact was built from
	AnnKey    = "dev.imgfab.key"    // the artifact key
	AnnSHA256 = "dev.imgfab.sha256" // the disk file's sha256 (= the blob's digest)
	annTitle  = "org.opencontainers.image.title"
)

// Tag prefixes: one tag per stored object, named by its content-derived key.
const (
	classTagPrefix    = "class-"
	pinTagPrefix      = "pin-"
	artifactTagPrefix = "a-"
)

// ErrNotFound is a tag or blob the store does not hold.
var ErrNotFound = errors.New("not in the store")

// Store is the OCI repository that holds classes, pins and artifacts. Everything in it is
// addressed by a tag derived from its content or key, and written manifest last, so a reader
// never sees a partial artifact: a blob whose manifest was never written is not one.
type Store struct {
	repo name.Repository
	opts []remote.Option
}

var emptyConfig = v1.Descriptor{MediaType: emptyMediaType, Size: 2,
	Digest: v1.Hash{Algorithm: "sha256", Hex: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}}

// OpenStore opens REGISTRY/REPO. insecure allows plain HTTP; keychain nil means
// authn.DefaultKeychain.
func OpenStore(ctx context.Context, repo string, insecure bool, keychain authn.Keychain, tr http.RoundTripper) (*Store, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(repo, nopts...)
	if err != nil {
		return nil, fmt.Errorf("store %q: %w", repo, err)
	}
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithAuthFromKeychain(keychain),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200e6, Factor: 2, Jitter: 0.1, Steps: 4})}
	if tr != nil {
		opts = append(opts, remote.WithTransport(tr))
	}
	return &Store{repo: r, opts: opts}, nil
}

func (s *Store) o(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, s.opts...)
}

// Ping checks that the repository answers (a tag list; an empty or missing repository is fine).
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.tags(ctx)
	return err
}

func (s *Store) tags(ctx context.Context) ([]string, error) {
	tags, err := remote.List(s.repo, s.o(ctx)...)
	if isNotFound(err) {
		return nil, nil
	}
	return tags, err
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode || d.Code == transport.BlobUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

// manifest reads the manifest tagged tag.
func (s *Store) manifest(ctx context.Context, tag string) (*v1.Manifest, error) {
	d, err := remote.Get(s.repo.Tag(tag), s.o(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("store: %s: %w", tag, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(d.Manifest, &m); err != nil {
		return nil, fmt.Errorf("store: %s: manifest: %w", tag, err)
	}
	return &m, nil
}

// digestOf is the digest of the manifest tagged tag (ErrNotFound: no such tag).
func (s *Store) digestOf(ctx context.Context, tag string) (string, error) {
	d, err := remote.Head(s.repo.Tag(tag), s.o(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return "", ErrNotFound
		}
		return "", err
	}
	return d.Digest.String(), nil
}

// blob opens a blob of the repository.
func (s *Store) blob(ctx context.Context, digest v1.Hash) (io.ReadCloser, error) {
	l, err := remote.Layer(s.repo.Digest(digest.String()), s.o(ctx)...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if isNotFound(err) {
		return nil, ErrNotFound
	}
	return rc, err
}

// put writes the blob, then the manifest under tag.
func (s *Store) put(ctx context.Context, tag, artifactType string, layer v1.Layer, ann, layerAnn map[string]string) error {
	if err := remote.WriteLayer(s.repo, layer, s.o(ctx)...); err != nil {
		return fmt.Errorf("store: uploading the blob of %s: %w", tag, err)
	}
	if err := remote.WriteLayer(s.repo, staticLayer{[]byte("{}"), emptyMediaType}, s.o(ctx)...); err != nil {
		return fmt.Errorf("store: uploading the empty config: %w", err)
	}
	d, err := layer.Digest()
	if err != nil {
		return err
	}
	n, err := layer.Size()
	if err != nil {
		return err
	}
	mt, err := layer.MediaType()
	if err != nil {
		return err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType,
		Config: emptyConfig, Layers: []v1.Descriptor{{MediaType: mt, Size: n, Digest: d, Annotations: layerAnn}}, Annotations: ann}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := remote.Put(s.repo.Tag(tag), rawManifest(raw), s.o(ctx)...); err != nil {
		return fmt.Errorf("store: writing the manifest of %s: %w", tag, err)
	}
	return nil
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// staticLayer is a small blob held in memory (a class, the empty config).
type staticLayer struct {
	b  []byte
	mt types.MediaType
}

func (l staticLayer) Digest() (v1.Hash, error) {
	sum := sha256.Sum256(l.b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
func (l staticLayer) DiffID() (v1.Hash, error) { return l.Digest() }
func (l staticLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l staticLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l staticLayer) Size() (int64, error)                 { return int64(len(l.b)), nil }
func (l staticLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }

// fileLayer is a disk file as a blob: its digest is known (the build's sha256), its bytes are
// streamed from the file on upload, never held in memory.
type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
	mt     types.MediaType
}

func (l fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l fileLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }

// PutClass stores a class as it was posted (YAML) under class-<id>, id the sha256 of its
// canonical form (Builder.Class).
func (s *Store) PutClass(ctx context.Context, id string, yaml []byte) error {
	return s.put(ctx, classTagPrefix+id, ClassArtifactType, staticLayer{yaml, ClassMediaType},
		map[string]string{AnnClass: id}, nil)
}

// Class reads a class as it was posted (ErrNotFound when none was); the caller checks it against
// its id.
func (s *Store) Class(ctx context.Context, id string) ([]byte, error) {
	m, err := s.manifest(ctx, classTagPrefix+id)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != 1 || m.Layers[0].Size > MaxClassBytes {
		return nil, fmt.Errorf("store: class %s: a manifest imgfab did not write", id)
	}
	rc, err := s.blob(ctx, m.Layers[0].Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxClassBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxClassBytes {
		return nil, fmt.Errorf("store: class %s: over %d bytes", id, MaxClassBytes)
	}
	return b, nil
}

// ClassIDs lists the ids of the stored classes.
func (s *Store) ClassIDs(ctx context.Context) ([]string, error) {
	tags, err := s.tags(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, classTagPrefix); ok && isID(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// PutPin records the source digest a class builds from on arch.
func (s *Store) PutPin(ctx context.Context, id, arch, source string) error {
	return s.put(ctx, pinTagPrefix+id+"-"+arch, PinArtifactType, staticLayer{[]byte("{}"), emptyMediaType},
		map[string]string{AnnClass: id, AnnArch: arch, AnnSource: source}, nil)
}

// Pin is the source digest recorded for a class on arch (ErrNotFound: none yet).
func (s *Store) Pin(ctx context.Context, id, arch string) (string, error) {
	m, err := s.manifest(ctx, pinTagPrefix+id+"-"+arch)
	if err != nil {
		return "", err
	}
	src := m.Annotations[AnnSource]
	if _, err := v1.NewHash(src); err != nil {
		return "", fmt.Errorf("store: pin of %s/%s: source %q: %w", id, arch, src, err)
	}
	return src, nil
}

// Artifact is one stored disk.
type Artifact struct {
	Key    string `json:"key"`
	Class  string `json:"class"`
	Arch   string `json:"arch"`
	File   string `json:"file"`
	Source string `json:"source"` // the source image's manifest digest
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"` // "sha256:…", the blob
}

// PutArtifact uploads a finished disk file and tags it a-<key>.
func (s *Store) PutArtifact(ctx context.Context, a Artifact, path, format string) error {
	d, err := v1.NewHash("sha256:" + a.SHA256)
	if err != nil {
		return err
	}
	l := fileLayer{path: path, digest: d, size: a.Size, mt: types.MediaType(DiskMediaPrefix + format)}
	return s.put(ctx, artifactTagPrefix+a.Key, DiskArtifactType, l,
		map[string]string{AnnClass: a.Class, AnnArch: a.Arch, AnnFile: a.File, AnnSource: a.Source, AnnKey: a.Key, AnnSHA256: a.SHA256},
		map[string]string{annTitle: a.File})
}

// Artifact reads the artifact of key (ErrNotFound: not built yet).
func (s *Store) Artifact(ctx context.Context, key string) (Artifact, error) {
	m, err := s.manifest(ctx, artifactTagPrefix+key)
	if err != nil {
		return Artifact{}, err
	}
	if len(m.Layers) != 1 || m.ArtifactType != DiskArtifactType {
		return Artifact{}, fmt.Errorf("store: artifact %s: a manifest imgfab did not write", key)
	}
	l := m.Layers[0]
	a := Artifact{Key: key, Class: m.Annotations[AnnClass], Arch: m.Annotations[AnnArch], File: m.Annotations[AnnFile],
		Source: m.Annotations[AnnSource], SHA256: l.Digest.Hex, Size: l.Size, Digest: l.Digest.String()}
	if l.Digest.Algorithm != "sha256" || m.Annotations[AnnKey] != key {
		return Artifact{}, fmt.Errorf("store: artifact %s: a manifest imgfab did not write", key)
	}
	return a, nil
}

// Artifacts lists the stored artifacts (of one class when class is not "").
func (s *Store) Artifacts(ctx context.Context, class string) ([]Artifact, error) {
	tags, err := s.tags(ctx)
	if err != nil {
		return nil, err
	}
	var out []Artifact
	for _, t := range tags {
		key, ok := strings.CutPrefix(t, artifactTagPrefix)
		if !ok || !isID(key) {
			continue
		}
		a, err := s.Artifact(ctx, key)
		if err != nil {
			return nil, err
		}
		if class == "" || a.Class == class {
			out = append(out, a)
		}
	}
	return out, nil
}

// Blob opens the stored blob with the given sha256 (hex).
func (s *Store) Blob(ctx context.Context, sha string) (io.ReadCloser, error) {
	return s.blob(ctx, v1.Hash{Algorithm: "sha256", Hex: sha})
}

// isID reports 64 lower-case hex digits.
func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
