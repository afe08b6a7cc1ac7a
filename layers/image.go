package layers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer is one input layer for Flatten.
type Layer struct {
	Name string                        // for errors: the layer digest "sha256:…" or the --layer path
	Open func() (io.ReadCloser, error) // the UNCOMPRESSED tar stream, digest verification included
}

// ImageLayers returns img's layers bottom-first. Each Layer's Open streams the blob, checks its
// sha256 and size against the manifest when the blob reaches EOF (a mismatch is a Read error naming
// the layer and both digests), and decompresses it by magic bytes: gzip, zstd, else plain tar.
// Layer media types must be OCI or Docker v2 (schema 2) tar layers; foreign and non-distributable
// layers are refused. The config blob's digest is checked here.
//
// Images from a docker-archive source have no compressed digests: their layers are checked against
// the config's diff_ids instead, and named by diff_id.
func ImageLayers(ctx context.Context, img v1.Image) ([]Layer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a, ok := img.(*archiveImage); ok {
		return archiveLayers(a)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading image media type: %w", err)
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("image manifest has unsupported media type %q", mt)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading image manifest: %w", err)
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON, "":
	default:
		// An OCI artifact (a Helm chart, a WASM module, ...), not a container image.
		return nil, fmt.Errorf("config blob %s has unsupported media type %q: not a container image", m.Config.Digest, m.Config.MediaType)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config blob %s: %w", m.Config.Digest, err)
	}
	if err := checkBlob(raw, m.Config); err != nil {
		return nil, fmt.Errorf("config blob %w", err)
	}
	out := make([]Layer, 0, len(m.Layers))
	for i, d := range m.Layers {
		switch d.MediaType {
		case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
			types.DockerLayer, types.DockerUncompressedLayer,
			"application/vnd.docker.image.rootfs.diff.tar.zstd":
		default:
			return nil, fmt.Errorf("layer %d (%s): unsupported layer media type %q", i, d.Digest, d.MediaType)
		}
		if d.Digest.Algorithm != "sha256" {
			return nil, fmt.Errorf("layer %d (%s): unsupported digest algorithm %q", i, d.Digest, d.Digest.Algorithm)
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
		}
		d := d
		nameStr := d.Digest.String()
		out = append(out, Layer{
			Name: nameStr,
			Open: func() (io.ReadCloser, error) {
				rc, err := l.Compressed()
				if err != nil {
					return nil, fmt.Errorf("layer %s: opening blob: %w", nameStr, err)
				}
				v := &verifyReader{r: rc, h: sha256.New(), layer: nameStr, want: d.Digest.Hex, size: d.Size, what: "blob"}
				return decompress(nameStr, v, rc)
			},
		})
	}
	return out, nil
}

func archiveLayers(a *archiveImage) ([]Layer, error) {
	cf, err := a.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: reading config: %w", a.file, err)
	}
	out := make([]Layer, 0, len(cf.RootFS.DiffIDs))
	for i, id := range cf.RootFS.DiffIDs {
		if id.Algorithm != "sha256" {
			return nil, fmt.Errorf("docker archive %s: layer %d: unsupported diff_id algorithm %q", a.file, i, id.Algorithm)
		}
		l, err := a.LayerByDiffID(id)
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: layer %d (%s): %w", a.file, i, id, err)
		}
		nameStr := id.String()
		want := id.Hex
		out = append(out, Layer{
			Name: nameStr,
			Open: func() (io.ReadCloser, error) {
				rc, err := l.Uncompressed()
				if err != nil {
					return nil, fmt.Errorf("layer %s: opening: %w", nameStr, err)
				}
				v := &verifyReader{r: rc, h: sha256.New(), layer: nameStr, want: want, size: -1, what: "uncompressed layer (diff_id)"}
				return decompress(nameStr, v, rc)
			},
		})
	}
	return out, nil
}

func checkBlob(b []byte, d v1.Descriptor) error {
	if d.Digest.Algorithm != "sha256" {
		return fmt.Errorf("%s: unsupported digest algorithm %q", d.Digest, d.Digest.Algorithm)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != d.Digest.Hex {
		return fmt.Errorf("%s: digest mismatch: want %s, got sha256:%s", d.Digest, d.Digest, got)
	}
	if d.Size != int64(len(b)) {
		return fmt.Errorf("%s: size mismatch: manifest says %d bytes, blob has %d", d.Digest, d.Size, len(b))
	}
	return nil
}

// DigestError reports a blob whose bytes do not match the digest or size it was named by.
type DigestError struct {
	Layer     string // layer name
	Want, Got string // "sha256:…"; Got is empty for a size mismatch
	WantSize  int64
	GotSize   int64
	What      string // "blob" or "uncompressed layer (diff_id)"
}

func (e *DigestError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("layer %s: %s size mismatch: manifest says %d bytes, blob has %d", e.Layer, e.What, e.WantSize, e.GotSize)
	}
	return fmt.Sprintf("layer %s: %s digest mismatch: want %s, got %s", e.Layer, e.What, e.Want, e.Got)
}

// verifyReader hashes and counts what passes through; at EOF it checks size and digest and
// returns a *DigestError instead of io.EOF on a mismatch.
type verifyReader struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	size  int64 // -1: unknown
	want  string
	layer string
	what  string
	done  bool
	err   error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.done {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if n > 0 {
		v.h.Write(p[:n])
		v.n += int64(n)
		if v.size >= 0 && v.n > v.size {
			v.done = true
			v.err = &DigestError{Layer: v.layer, What: v.what, WantSize: v.size, GotSize: v.n}
			return 0, v.err
		}
	}
	if err == io.EOF {
		v.done = true
		v.err = io.EOF
		if v.size >= 0 && v.n != v.size {
			v.err = &DigestError{Layer: v.layer, What: v.what, WantSize: v.size, GotSize: v.n}
		} else if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.err = &DigestError{Layer: v.layer, What: v.what, Want: "sha256:" + v.want, Got: "sha256:" + got}
		}
		return n, v.err
	} else if err != nil {
		err = fmt.Errorf("layer %s: reading %s: %w", v.layer, v.what, err)
	}
	return n, err
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress returns the uncompressed stream of r (detected by magic bytes) that, at EOF, drains
// r to its own EOF so that r's verification runs; closer closes the underlying blob.
func decompress(layer string, r io.Reader, closer io.Closer) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		closer.Close()
		return nil, fmt.Errorf("layer %s: reading magic bytes: %w", layer, err)
	}
	d := &decompressed{layer: layer, raw: br, closer: closer}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			closer.Close()
			return nil, fmt.Errorf("layer %s: opening gzip stream: %w", layer, err)
		}
		d.r, d.kind, d.dec = zr, "gzip", zr
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			closer.Close()
			return nil, fmt.Errorf("layer %s: opening zstd stream: %w", layer, err)
		}
		d.r, d.kind, d.zdec = zr, "zstd", zr
	default:
		d.r, d.kind = br, "tar"
	}
	return d, nil
}

type decompressed struct {
	layer  string
	kind   string
	r      io.Reader
	raw    io.Reader
	closer io.Closer
	dec    io.Closer
	zdec   *zstd.Decoder
	done   bool
	err    error
}

func (d *decompressed) Read(p []byte) (int, error) {
	if d.done {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if err == io.EOF {
		d.done = true
		// Drain the blob so its digest is checked (trailing bytes are hashed too).
		if _, derr := io.Copy(io.Discard, d.raw); derr != nil {
			d.err = derr
		} else {
			d.err = io.EOF
		}
		return n, d.err
	}
	if err != nil {
		var de *DigestError
		if errors.As(err, &de) {
			d.done, d.err = true, err
			return n, err
		}
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("layer %s: %s stream truncated: %w", d.layer, d.kind, err)
		} else if d.kind != "tar" {
			err = fmt.Errorf("layer %s: decompressing %s: %w", d.layer, d.kind, err)
		}
		d.done, d.err = true, err
	}
	return n, err
}

func (d *decompressed) Close() error {
	if d.dec != nil {
		d.dec.Close()
	}
	if d.zdec != nil {
		d.zdec.Close()
	}
	return d.closer.Close()
}
