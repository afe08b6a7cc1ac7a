package layers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/imgfab/imgfab/internal/inflate"

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
// layers are refused, as is an image of more than MaxLayers layers. The config blob's digest is
// checked here (for images from Resolve, by Resolve already).
//
// Images from a docker-archive source have no compressed digests: their layers are checked against
// the config's diff_ids instead, and named by diff_id.
//
// For images from Resolve, the work is linear in the number of layers: each layer's blob is opened
// by digest in constant time. Other v1.Image implementations are asked for each layer with
// LayerByDigest, which may cost more.
func ImageLayers(ctx context.Context, img v1.Image) ([]Layer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch im := img.(type) {
	case *archiveImage:
		return archiveLayers(im)
	case *ociImage:
		return im.src2layers(ctx)
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
	if err := checkConfigType(m); err != nil {
		return nil, err
	}
	if len(m.Layers) > MaxLayers {
		return nil, fmt.Errorf("image has %d layers, more than the %d allowed", len(m.Layers), MaxLayers)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config blob %s: %w", m.Config.Digest, err)
	}
	if err := checkBlob(raw, m.Config); err != nil {
		return nil, fmt.Errorf("config blob %w", err)
	}
	return manifestLayers(m, func(i int, d v1.Descriptor) (func() (io.ReadCloser, error), error) {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		return l.Compressed, nil
	})
}

// src2layers lists the layers of an image from Resolve: blobs opened by digest through its source.
func (i *ociImage) src2layers(ctx context.Context) ([]Layer, error) {
	if err := checkConfigType(i.m); err != nil {
		return nil, err
	}
	return manifestLayers(i.m, func(_ int, d v1.Descriptor) (func() (io.ReadCloser, error), error) {
		return func() (io.ReadCloser, error) { return i.src.blob(ctx, d) }, nil
	})
}

// manifestLayers checks m's layer descriptors and makes a Layer of each; open gives the function
// that opens layer i's blob.
func manifestLayers(m *v1.Manifest, open func(i int, d v1.Descriptor) (func() (io.ReadCloser, error), error)) ([]Layer, error) {
	if len(m.Layers) > MaxLayers {
		return nil, fmt.Errorf("image has %d layers, more than the %d allowed", len(m.Layers), MaxLayers)
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
		if d.Size < 0 {
			return nil, fmt.Errorf("layer %d (%s): negative size %d", i, d.Digest, d.Size)
		}
		blob, err := open(i, d)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
		}
		nameStr := d.Digest.String()
		want, size := d.Digest.Hex, d.Size
		out = append(out, Layer{
			Name: nameStr,
			Open: func() (io.ReadCloser, error) {
				rc, err := blob()
				if err != nil {
					return nil, fmt.Errorf("layer %s: opening blob: %w", nameStr, err)
				}
				h := newAsyncSHA256()
				v := &verifyReader{r: rc, h: h, layer: nameStr, want: want, size: size, what: "blob"}
				return decompress(nameStr, v, closeFunc(func() error { h.stop(); return rc.Close() }))
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
	r io.Reader
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
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
	} else if err != nil && !strings.HasPrefix(err.Error(), "layer "+v.layer+":") {
		err = fmt.Errorf("layer %s: reading %s: %w", v.layer, v.what, err)
	}
	return n, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress returns the uncompressed stream of r (detected by magic bytes) that, at EOF, drains
// r to its own EOF so that r's verification runs; closer closes the underlying blob.
func decompress(layer string, r io.Reader, closer io.Closer) (io.ReadCloser, error) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		closer.Close()
		return nil, fmt.Errorf("layer %s: reading magic bytes: %w", layer, err)
	}
	d := &decompressed{layer: layer, raw: br, br: br, closer: closer}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := inflate.NewReader(br)
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

// readers recycles the 256 KiB read buffers of layer streams: an image of many small layers
// would otherwise spend most of its time clearing new buffers.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 256<<10) }}

type decompressed struct {
	br     *bufio.Reader // returned to readers by Close
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

// Close closes the blob first — a gzip decoder goroutine blocked reading it (internal/inflate
// reads ahead) then returns — then the decoder, which waits for that goroutine, and only then
// gives the read buffer back to the pool: no goroutine reads a buffer another layer was given.
func (d *decompressed) Close() error {
	err := d.closer.Close()
	if d.dec != nil {
		d.dec.Close()
	}
	if d.zdec != nil {
		d.zdec.Close()
	}
	if d.br != nil {
		d.br.Reset(nil)
		readers.Put(d.br)
		d.br, d.raw, d.r = nil, eofReader{}, eofReader{}
	}
	return err
}
