// Package hostile generates the hostile-input corpus: broken and malicious images, each with the
// outcome imgfab build must reach (see Cases and testdata/README.md). Nothing is checked in: every
// input is made from code into a directory the caller owns. assemble/corpus_test.go runs them (through assemble.Run).
package hostile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
)

// E is one tar entry, or raw bytes spliced into the stream as they are.
type E struct {
	Hdr  tar.Header
	Body string
	Raw  []byte
}

var mtime = time.Unix(1600000000, 0)

func Reg(name, body string) E {
	return E{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: mtime}, Body: body}
}
func Dir(name string) E {
	return E{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime}}
}
func Sym(name, target string) E {
	return E{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: mtime}}
}
func Link(name, target string) E {
	return E{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: mtime}}
}

// Boot is what a tree needs for imgfab build to succeed: a fake kernel, initrd and systemd-boot.
func Boot() []E {
	return []E{
		Dir("boot/"), Reg("boot/vmlinuz-1.0", "not really a kernel"), Reg("boot/initrd.img-1.0", "not really an initrd"),
		Dir("usr/"), Dir("usr/lib/"), Dir("usr/lib/systemd/"), Dir("usr/lib/systemd/boot/"), Dir("usr/lib/systemd/boot/efi/"),
		Reg("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "MZ not really systemd-boot"),
	}
}

// Tar writes the entries; Raw entries are appended as they are (the caller keeps 512-byte
// alignment). The end-of-archive marker is written unless the last entry is Raw with end=false.
func Tar(ents ...E) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		if e.Raw != nil {
			tw.Flush()
			buf.Write(e.Raw)
			continue
		}
		h := e.Hdr
		if h.Format == 0 && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			panic(fmt.Sprintf("hostile: tar header %q: %v", h.Name, err))
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			panic(fmt.Sprintf("hostile: tar body %q: %v", h.Name, err))
		}
	}
	if err := tw.Close(); err != nil {
		panic(fmt.Sprintf("hostile: closing tar: %v", err))
	}
	return buf.Bytes()
}

// RawHeader is a ustar header block with the given size field (12 bytes, octal or base-256) and
// typeflag; linkname may be empty.
func RawHeader(name string, typ byte, size [12]byte, linkname string) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], size[:])
	copy(b[136:148], "13000000000\x00")
	b[156] = typ
	copy(b[157:257], linkname)
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// Octal is a size field in octal.
func Octal(n int64) (f [12]byte) {
	copy(f[:], fmt.Sprintf("%011o\x00", n))
	return
}

// Base256 is a size field in GNU base-256 (two's complement for negative numbers).
func Base256(n int64) (f [12]byte) {
	for i := 11; i >= 4; i-- {
		f[i] = byte(n)
		n >>= 8
	}
	if n < 0 || f[4]&0x80 != 0 {
		for i := 0; i < 4; i++ {
			f[i] = 0xff
		}
	}
	f[0] |= 0x80
	return
}

// Pad pads b to a multiple of 512 bytes.
func Pad(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// PaxRecord is one "LEN KEY=VALUE\n" record with a correct length.
func PaxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for {
		s := strconv.Itoa(n)
		if len(s)+len(rec) == n {
			return s + rec
		}
		n = len(s) + len(rec)
	}
}

// Pax is a raw PAX extended header ('x') carrying records, ready to precede a header.
func Pax(records string) []byte {
	return append(RawHeader("PaxHeaders/x", 'x', Octal(int64(len(records))), ""), Pad([]byte(records))...)
}

func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func Zstd(b []byte) []byte {
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// Media types.
const (
	OCIManifest = "application/vnd.oci.image.manifest.v1+json"
	OCIIndex    = "application/vnd.oci.image.index.v1+json"
	OCIConfig   = "application/vnd.oci.image.config.v1+json"
	OCILayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Layer is one layer blob of an Image.
type Layer struct {
	Blob      []byte // as stored (compressed or not)
	MediaType string // default OCILayer
	Missing   bool   // the blob file is not written
	Digest    string // the descriptor's digest instead of the blob's ("sha256:…")
	DiffID    string // the config's diff_id instead of the real one
}

// Image describes an OCI layout (or a docker-archive) holding one image.
type Image struct {
	Layers       []Layer
	ConfigType   string // default OCIConfig
	Arch         string // default amd64
	Index        bool   // wrap the manifest in an index (with the platform) below index.json
	ConfigDigest string // the manifest's config digest instead of the blob's
	// Nest wraps the manifest in Nest levels of indexes below index.json, each holding FanOut
	// entries (default 1) that all name the level below: a small input that names a lot.
	Nest, FanOut int
	// Archive writes a `docker save` tarball (manifest.json, config, uncompressed layer tars)
	// instead of an OCI layout; the layers are then named by diff_id.
	Archive bool
}

// L makes a gzip layer of a tar of the entries.
func L(ents ...E) Layer { return Layer{Blob: Gzip(Tar(ents...))} }

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

type desc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    map[string]string `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Write writes the image as an OCI layout into dir (created) and returns the build SOURCE.
func (im Image) Write(dir string) (string, []string, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", nil, err
	}
	put := func(b []byte) (string, error) {
		d := digest(b)
		return d, os.WriteFile(filepath.Join(blobs, d[len("sha256:"):]), b, 0o644)
	}
	arch := im.Arch
	if arch == "" {
		arch = "amd64"
	}
	if im.Archive {
		return im.writeArchive(dir)
	}
	var layers []desc
	var diffIDs, digests []string
	written := map[string]bool{}
	for _, l := range im.Layers {
		d := digest(l.Blob)
		if l.Digest != "" {
			d = l.Digest // the blob is stored under this name, its bytes do not match it
		}
		if !l.Missing && !written[d] {
			written[d] = true
			if err := os.WriteFile(filepath.Join(blobs, d[len("sha256:"):]), l.Blob, 0o644); err != nil {
				return "", nil, err
			}
		}
		mt := l.MediaType
		if mt == "" {
			mt = OCILayer
		}
		digests = append(digests, d)
		layers = append(layers, desc{MediaType: mt, Digest: d, Size: int64(len(l.Blob))})
		if l.DiffID != "" {
			diffIDs = append(diffIDs, l.DiffID)
		} else {
			diffIDs = append(diffIDs, d) // not checked for OCI layouts; a stand-in
		}
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux", "created": "2022-04-15T05:20:00Z",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		"config": map[string]any{},
	})
	cd, err := put(cfg)
	if err != nil {
		return "", nil, err
	}
	ct := im.ConfigType
	if ct == "" {
		ct = OCIConfig
	}
	if im.ConfigDigest != "" {
		cd = im.ConfigDigest
	}
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": OCIManifest,
		"config": desc{MediaType: ct, Digest: cd, Size: int64(len(cfg))},
		"layers": layers,
	})
	md, err := put(man)
	if err != nil {
		return "", nil, err
	}
	top := desc{MediaType: OCIManifest, Digest: md, Size: int64(len(man)),
		Platform: map[string]string{"os": "linux", "architecture": arch}}
	if im.Index {
		idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": OCIIndex, "manifests": []desc{top}})
		id, err := put(idx)
		if err != nil {
			return "", nil, err
		}
		top = desc{MediaType: OCIIndex, Digest: id, Size: int64(len(idx))}
	}
	for n := 0; n < im.Nest; n++ {
		k := max(im.FanOut, 1)
		ents := make([]desc, k)
		for i := range ents {
			ents[i] = top
		}
		idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": OCIIndex, "manifests": ents})
		id, err := put(idx)
		if err != nil {
			return "", nil, err
		}
		top = desc{MediaType: OCIIndex, Digest: id, Size: int64(len(idx))}
	}
	top.Annotations = map[string]string{"org.opencontainers.image.ref.name": "hostile"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": OCIIndex, "manifests": []desc{top}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return "", nil, err
	}
	return "oci:" + dir + ":hostile", digests, nil
}

// WriteIndex writes an OCI layout whose index.json names (tag "hostile") an index of the given
// entries; each entry is put as a blob by put, which returns its descriptor. It returns the build
// SOURCE.
func WriteIndex(dir string, entries func(put func(mediaType string, b []byte) (map[string]any, error)) ([]map[string]any, error)) (string, []string, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", nil, err
	}
	put := func(mt string, b []byte) (map[string]any, error) {
		d := digest(b)
		if err := os.WriteFile(filepath.Join(blobs, d[len("sha256:"):]), b, 0o644); err != nil {
			return nil, err
		}
		return map[string]any{"mediaType": mt, "digest": d, "size": len(b)}, nil
	}
	ents, err := entries(put)
	if err != nil {
		return "", nil, err
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": OCIIndex, "manifests": ents})
	top, err := put(OCIIndex, idx)
	if err != nil {
		return "", nil, err
	}
	top["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "hostile"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": OCIIndex, "manifests": []any{top}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return "", nil, err
	}
	return "oci:" + dir + ":hostile", nil, nil
}

// writeArchive writes the image as a `docker save` tarball: manifest.json, the config as
// "<hex>.json", each layer as "<diff_id hex>/layer.tar" (uncompressed). Layer.Digest is unused;
// Layer.DiffID replaces the real diff_id in the config.
func (im Image) writeArchive(dir string) (string, []string, error) {
	arch := im.Arch
	if arch == "" {
		arch = "amd64"
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	var diffIDs, files []string
	written := map[string]bool{}
	for _, l := range im.Layers {
		raw := l.Blob
		if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				return "", nil, err
			}
			if raw, err = io.ReadAll(zr); err != nil {
				return "", nil, err
			}
		}
		d := digest(raw)
		f := d[len("sha256:"):] + "/layer.tar"
		if l.DiffID != "" {
			d = l.DiffID
		}
		diffIDs = append(diffIDs, d)
		files = append(files, f)
		if !l.Missing && !written[f] {
			written[f] = true
			if err := add(f, raw); err != nil {
				return "", nil, err
			}
		}
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux", "created": "2022-04-15T05:20:00Z",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		"config": map[string]any{},
	})
	cf := digest(cfg)[len("sha256:"):] + ".json"
	if err := add(cf, cfg); err != nil {
		return "", nil, err
	}
	mf, _ := json.Marshal([]map[string]any{{"Config": cf, "RepoTags": []string{"hostile:latest"}, "Layers": files}})
	if err := add("manifest.json", mf); err != nil {
		return "", nil, err
	}
	if err := tw.Close(); err != nil {
		return "", nil, err
	}
	file := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		return "", nil, err
	}
	return "docker-archive:" + file, diffIDs, nil
}
