package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgfab/imgfab/internal/safefile"
)

// A `docker save` tarball is read through an index of its members, made in one pass over the tar
// headers: a member is then opened in constant time (go-containerregistry's tarball package reads
// the tar from its start for every layer opened and parses the config for every layer looked up:
// O(n²) for n layers).

// tarMember is where a member's data lies in the archive.
type tarMember struct {
	off, size int64
	typ       byte
	link      string
	sparse    bool // its data is not its content
}

type tarIndex struct {
	file    string
	members map[string]tarMember // by cleaned name; the first of duplicates
}

// indexTar reads the headers of the tar in f (data is skipped by seeking).
func indexTar(ctx context.Context, f *os.File, file string) (*tarIndex, error) {
	ix := &tarIndex{file: file, members: make(map[string]tarMember)}
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		h, err := tr.Next()
		if err == io.EOF {
			return ix, nil
		}
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: reading tar: %w", file, err)
		}
		// archive/tar reads whole 512-byte blocks and nothing ahead: the file offset is where the
		// member's data begins.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: %w", file, err)
		}
		name := cleanMember(h.Name)
		if _, dup := ix.members[name]; !dup {
			sparse := h.Typeflag == tar.TypeGNUSparse
			for k := range h.PAXRecords {
				sparse = sparse || strings.HasPrefix(k, "GNU.sparse.")
			}
			ix.members[name] = tarMember{off: off, size: h.Size, typ: h.Typeflag, link: h.Linkname, sparse: sparse}
		}
	}
}

func cleanMember(s string) string { return strings.TrimPrefix(path.Clean("/"+s), "/") }

// lookup finds member n, following symlinks and hardlinks inside the archive (at most 8).
func (ix *tarIndex) lookup(n string) (tarMember, error) {
	want := n
	for hops := 0; ; hops++ {
		m, ok := ix.members[cleanMember(n)]
		if !ok {
			return tarMember{}, fmt.Errorf("docker archive %s: file %s not found in the archive", ix.file, shortQ(want))
		}
		switch m.typ {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			if m.sparse {
				return tarMember{}, fmt.Errorf("docker archive %s: file %s is a sparse file: not supported here", ix.file, shortQ(want))
			}
			return m, nil
		case tar.TypeSymlink, tar.TypeLink:
			if hops >= 8 {
				return tarMember{}, fmt.Errorf("docker archive %s: file %s: more than 8 links", ix.file, shortQ(want))
			}
			if m.typ == tar.TypeSymlink {
				n = path.Join(path.Dir(cleanMember(n)), m.link)
			} else {
				n = m.link
			}
		default:
			return tarMember{}, fmt.Errorf("docker archive %s: file %s is not a regular file (type %q)", ix.file, shortQ(want), m.typ)
		}
	}
}

// open opens member n.
func (ix *tarIndex) open(n string) (io.ReadCloser, error) {
	m, err := ix.lookup(n)
	if err != nil {
		return nil, err
	}
	f, _, err := safefile.Open(ix.file, "docker archive")
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, m.off, m.size), f}, nil
}

// read reads member n whole, refusing one of more than limit bytes.
func (ix *tarIndex) read(n string, limit int64) ([]byte, error) {
	m, err := ix.lookup(n)
	if err != nil {
		return nil, err
	}
	if m.size > limit {
		return nil, fmt.Errorf("docker archive %s: %s has %d bytes, more than the %d allowed", ix.file, shortQ(n), m.size, limit)
	}
	rc, err := ix.open(n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: reading %s: %w", ix.file, shortQ(n), err)
	}
	if int64(len(b)) != m.size {
		return nil, fmt.Errorf("docker archive %s: %s truncated: %d of %d bytes", ix.file, shortQ(n), len(b), m.size)
	}
	return b, nil
}

// archiveImage is an image read from a `docker save` tarball. Its layers are checked against the
// config's diff_ids (ImageLayers would otherwise have to gzip every layer to compute a manifest).
// A docker archive holds no registry manifest: its Digest is the config's digest (Docker's image
// ID). Manifest, RawManifest, Size, Layers and LayerByDigest, which imgfab does not use, come from
// go-containerregistry's tarball package.
type archiveImage struct {
	file    string
	tag     *name.Tag
	ix      *tarIndex
	layers  []string  // member names, bottom first
	diffIDs []v1.Hash // checked, one per layer
	config  []byte
	cfgHash v1.Hash

	once sync.Once
	ggcr v1.Image
	gerr error
}

// archiveManifest is one image of manifest.json.
type archiveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func resolveArchive(ctx context.Context, s string) (v1.Image, error) {
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
	// Refuse a FIFO or device before reading (an open of a FIFO blocks).
	f, _, err := safefile.Open(file, "docker archive")
	if err != nil {
		return nil, err
	}
	ix, err := indexTar(ctx, f, file)
	f.Close()
	if err != nil {
		return nil, err
	}
	mb, err := ix.read("manifest.json", maxManifestBytes)
	if err != nil {
		return nil, err
	}
	var ms []archiveManifest
	if err := json.Unmarshal(mb, &ms); err != nil {
		return nil, fmt.Errorf("docker archive %s: parsing manifest.json: %w", file, err)
	}
	var m *archiveManifest
	if tag == nil {
		if len(ms) != 1 {
			var tags []string
			for _, d := range ms {
				tags = append(tags, d.RepoTags...)
			}
			return nil, fmt.Errorf("docker archive %s holds %d images; name one with docker-archive:%s:REPO:TAG (tags: %s)",
				file, len(ms), file, listOrNone(tags))
		}
		m = &ms[0]
	} else {
	find:
		for i := range ms {
			for _, rt := range ms[i].RepoTags {
				if t, err := name.NewTag(rt); err == nil && t.Name() == tag.Name() {
					m = &ms[i]
					break find
				}
			}
		}
		if m == nil {
			return nil, fmt.Errorf("docker archive %s: tag %s not found in the archive", file, tag)
		}
	}
	if len(m.Layers) > MaxLayers {
		return nil, fmt.Errorf("docker archive %s: manifest.json lists %d layers, more than the %d allowed", file, len(m.Layers), MaxLayers)
	}
	cfg, err := ix.read(m.Config, maxConfigBytes)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cfg)
	got := hex.EncodeToString(sum[:])
	// Check the config against the digest in its file name ("<hex>.json" or "blobs/sha256/<hex>").
	if want := strings.TrimSuffix(path.Base(m.Config), ".json"); len(want) == 64 && lowerHex(want) && got != want {
		return nil, fmt.Errorf("docker archive %s: config %s: digest mismatch: want sha256:%s, got sha256:%s", file, m.Config, want, got)
	}
	diffIDs, err := parseDiffIDs(cfg)
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: config %s: %w", file, m.Config, err)
	}
	if len(diffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("docker archive %s: config %s has %d diff_ids, manifest.json lists %d layers", file, m.Config, len(diffIDs), len(m.Layers))
	}
	for i, l := range m.Layers {
		if _, err := ix.lookup(l); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, diffIDs[i], err)
		}
	}
	return &archiveImage{file: file, tag: tag, ix: ix, layers: m.Layers, diffIDs: diffIDs, config: cfg,
		cfgHash: v1.Hash{Algorithm: "sha256", Hex: got}}, nil
}

func (a *archiveImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }
func (a *archiveImage) Digest() (v1.Hash, error)            { return a.cfgHash, nil }
func (a *archiveImage) ConfigName() (v1.Hash, error)        { return a.cfgHash, nil }
func (a *archiveImage) RawConfigFile() ([]byte, error)      { return a.config, nil }

func (a *archiveImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(a.config))
}

func (a *archiveImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for i, d := range a.diffIDs {
		if d == h {
			return &archiveLayer{a: a, n: i}, nil
		}
	}
	return nil, fmt.Errorf("docker archive %s: no layer with diff_id %s", a.file, h)
}

// fallback is go-containerregistry's image of the archive, for the methods imgfab does not use.
func (a *archiveImage) fallback() (v1.Image, error) {
	a.once.Do(func() { a.ggcr, a.gerr = tarball.ImageFromPath(a.file, a.tag) })
	return a.ggcr, a.gerr
}

func (a *archiveImage) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(a.layers))
	for i := range a.layers {
		out[i] = &archiveLayer{a: a, n: i}
	}
	return out, nil
}

func (a *archiveImage) Size() (int64, error) {
	g, err := a.fallback()
	if err != nil {
		return 0, err
	}
	return g.Size()
}

func (a *archiveImage) Manifest() (*v1.Manifest, error) {
	g, err := a.fallback()
	if err != nil {
		return nil, err
	}
	return g.Manifest()
}

func (a *archiveImage) RawManifest() ([]byte, error) {
	g, err := a.fallback()
	if err != nil {
		return nil, err
	}
	return g.RawManifest()
}

func (a *archiveImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	g, err := a.fallback()
	if err != nil {
		return nil, err
	}
	return g.LayerByDigest(h)
}

// archiveLayer is layer n of an archiveImage: its Uncompressed stream is the member, decompressed
// if it is compressed, checked against the diff_id at EOF.
type archiveLayer struct {
	a *archiveImage
	n int
}

var errNoCompressed = errors.New("a docker archive layer has no compressed form here")

func (l *archiveLayer) Digest() (v1.Hash, error)            { return v1.Hash{}, errNoCompressed }
func (l *archiveLayer) Compressed() (io.ReadCloser, error)  { return nil, errNoCompressed }
func (l *archiveLayer) Size() (int64, error)                { return 0, errNoCompressed }
func (l *archiveLayer) DiffID() (v1.Hash, error)            { return l.a.diffIDs[l.n], nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (l *archiveLayer) Uncompressed() (io.ReadCloser, error) {
	id := l.a.diffIDs[l.n]
	nameStr := id.String()
	rc, err := l.a.ix.open(l.a.layers[l.n])
	if err != nil {
		return nil, fmt.Errorf("layer %s: opening: %w", nameStr, err)
	}
	d, err := decompress(nameStr, rc, rc)
	if err != nil {
		return nil, err
	}
	v := &verifyReader{r: d, h: sha256.New(), layer: nameStr, want: id.Hex, size: -1, what: "uncompressed layer (diff_id)"}
	return struct {
		io.Reader
		io.Closer
	}{v, d}, nil
}

func archiveLayers(a *archiveImage) ([]Layer, error) {
	out := make([]Layer, len(a.layers))
	for i := range a.layers {
		l := &archiveLayer{a: a, n: i}
		out[i] = Layer{Name: a.diffIDs[i].String(), Open: l.Uncompressed}
	}
	return out, nil
}
