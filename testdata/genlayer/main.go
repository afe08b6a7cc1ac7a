// Command genlayer writes big synthetic container images, as OCI image layouts, for the scale
// benchmark (testdata/bench-scale.sh). Every layer is an uncompressed tar streamed straight to its
// blob file while its digest is computed: nothing of the content is held in memory, and runs of zero
// bytes are left as holes in the blob file (so a 16 GiB sparse file costs no disk space). Each image
// also holds the fake kernel and loader `imgfab build` needs.
//
//	go run ./testdata/genlayer -o DIR -tag TAG CASE [-size N] [-n N]
//
// CASE is one of:
//
//	sparse  one file /big.sparse of -size bytes (default 16 GiB): 4 MiB of data at the start and
//	        4 MiB at the end, zeros in between
//	dir     one directory /many holding -n entries (default 200,000): small files (24 bytes each),
//	        every 10th a symlink
//	big     one file /big.bin of -size bytes (default 4 GiB) of non-zero pseudo-random data (a fast
//	        xorshift stream, not crypto)
//	layers  -n layers (default 500); layer i adds 4 files (/l/NNN/a..d), overwrites 2 files of
//	        earlier layers, whites out one of them (.wh.), and every 50th layer makes the directory
//	        /opq opaque (.wh..wh..opq) and refills it
//
// Output is deterministic: the same arguments give byte-identical layouts. genlayer refuses a
// non-empty DIR.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var mtime = time.Unix(1650000000, 0)

func main() {
	out := flag.String("o", "", "output directory (an OCI image layout; must be empty or absent)")
	tag := flag.String("tag", "scale", "org.opencontainers.image.ref.name of the image")
	size := flag.Int64("size", 0, "file size in bytes (sparse, big)")
	n := flag.Int("n", 0, "entries (dir) or layers (layers)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: genlayer -o DIR [-tag TAG] [-size N] [-n N] sparse|dir|big|layers\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, *tag, flag.Arg(0), *size, *n); err != nil {
		fmt.Fprintf(os.Stderr, "genlayer: %v\n", err)
		os.Exit(1)
	}
}

func run(out, tag, kind string, size int64, n int) error {
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s is not empty", out)
	}
	if err := os.MkdirAll(filepath.Join(out, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	lw := &layout{dir: out}
	var err error
	switch kind {
	case "sparse":
		if size == 0 {
			size = 16 << 30
		}
		err = lw.layer(func(tw *tar.Writer) error {
			return writeFile(tw, "big.sparse", size, func(w io.Writer) error {
				const data = 4 << 20
				if size < 2*data {
					return fmt.Errorf("sparse: -size %d is under 8 MiB", size)
				}
				if err := pattern(w, 1, data); err != nil {
					return err
				}
				if err := zeros(w, size-2*data); err != nil {
					return err
				}
				return pattern(w, 2, data)
			})
		}, true)
	case "dir":
		if n == 0 {
			n = 200000
		}
		err = lw.layer(func(tw *tar.Writer) error {
			if err := tw.WriteHeader(dirHdr("many/")); err != nil {
				return err
			}
			for i := range n {
				name := fmt.Sprintf("many/entry-%07d", i)
				if i%10 == 9 {
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name,
						Linkname: fmt.Sprintf("entry-%07d", i-1), Mode: 0o777, ModTime: mtime}); err != nil {
						return err
					}
					continue
				}
				body := fmt.Sprintf("file %07d of %07d\n", i, n) // 24 bytes
				if err := writeFile(tw, name, int64(len(body)), func(w io.Writer) error {
					_, err := io.WriteString(w, body)
					return err
				}); err != nil {
					return err
				}
			}
			return nil
		}, true)
	case "big":
		if size == 0 {
			size = 4 << 30
		}
		err = lw.layer(func(tw *tar.Writer) error {
			return writeFile(tw, "big.bin", size, func(w io.Writer) error { return pattern(w, 3, size) })
		}, true)
	case "layers":
		if n == 0 {
			n = 500
		}
		for i := 0; i < n && err == nil; i++ {
			err = lw.layer(func(tw *tar.Writer) error { return manyLayer(tw, i) }, i == 0)
		}
	default:
		return fmt.Errorf("unknown case %q (want sparse, dir, big or layers)", kind)
	}
	if err != nil {
		return err
	}
	return lw.finish(tag)
}

// manyLayer is layer i of the "layers" case.
func manyLayer(tw *tar.Writer, i int) error {
	if i == 0 {
		for _, d := range []string{"l/", "opq/"} {
			if err := tw.WriteHeader(dirHdr(d)); err != nil {
				return err
			}
		}
	}
	if err := tw.WriteHeader(dirHdr(fmt.Sprintf("l/%03d/", i))); err != nil {
		return err
	}
	body := func(tag string) func(io.Writer) error {
		return func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "%-63s\n", tag)
			return err
		}
	}
	for _, c := range "abcd" {
		name := fmt.Sprintf("l/%03d/%c", i, c)
		if err := writeFile(tw, name, 64, body(name+" v0")); err != nil {
			return err
		}
	}
	if i > 0 {
		// Overwrite a and b of two earlier layers, white out c of a third.
		for k, j := range []int{(i*37 + 11) % i, (i*53 + 5) % i} {
			name := fmt.Sprintf("l/%03d/%c", j, "ab"[k])
			if err := writeFile(tw, name, 64, body(fmt.Sprintf("%s v%d", name, i))); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("l/%03d/.wh.c", (i*31+17)%i),
			Mode: 0o644, ModTime: mtime}); err != nil {
			return err
		}
	}
	if i%50 == 0 {
		if i > 0 {
			if err := tw.WriteHeader(dirHdr("opq/")); err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "opq/.wh..wh..opq", Mode: 0o644,
				ModTime: mtime}); err != nil {
				return err
			}
		}
		for k := range 20 {
			name := fmt.Sprintf("opq/f%02d", k)
			if err := writeFile(tw, name, 64, body(fmt.Sprintf("%s from layer %d", name, i))); err != nil {
				return err
			}
		}
	}
	return nil
}

func dirHdr(name string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime}
}

func writeFile(tw *tar.Writer, name string, size int64, body func(io.Writer) error) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size,
		ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	return body(tw)
}

// pattern writes n bytes of an xorshift64 stream seeded with seed (never a whole zero block).
func pattern(w io.Writer, seed uint64, n int64) error {
	buf := make([]byte, 1<<20)
	x := seed*0x9e3779b97f4a7c15 | 1
	for n > 0 {
		for i := 0; i < len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			binary.LittleEndian.PutUint64(buf[i:], x)
		}
		m := min(int64(len(buf)), n)
		if _, err := w.Write(buf[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

func zeros(w io.Writer, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		m := min(int64(len(buf)), n)
		if _, err := w.Write(buf[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// bootEntries is the fake kernel and loader every image needs for `imgfab build` to succeed.
func bootEntries(tw *tar.Writer) error {
	for _, d := range []string{"boot/", "usr/", "usr/lib/", "usr/lib/systemd/", "usr/lib/systemd/boot/", "usr/lib/systemd/boot/efi/"} {
		if err := tw.WriteHeader(dirHdr(d)); err != nil {
			return err
		}
	}
	for _, f := range [][2]string{
		{"boot/vmlinuz-1.0", "not really a kernel"},
		{"boot/initrd.img-1.0", "not really an initrd"},
		{"usr/lib/systemd/boot/efi/systemd-bootx64.efi", "MZ not really systemd-boot"},
	} {
		body := f[1]
		if err := writeFile(tw, f[0], int64(len(body)), func(w io.Writer) error {
			_, err := io.WriteString(w, body)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// layout accumulates the blobs of one image.
type layout struct {
	dir    string
	layers []v1.Descriptor
}

// holeWriter writes to a file, seeking over whole 4 KiB blocks of zeros instead of writing them,
// and hashes everything.
type holeWriter struct {
	f   *os.File
	h   hash.Hash
	off int64
}

func (w *holeWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	n := len(p)
	for len(p) > 0 {
		m := min(len(p), 4096)
		if w.off%4096 == 0 && m == 4096 && allZero(p[:m]) {
			w.off += int64(m)
			p = p[m:]
			continue
		}
		if _, err := w.f.WriteAt(p[:m], w.off); err != nil {
			return 0, err
		}
		w.off += int64(m)
		p = p[m:]
	}
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// layer writes one uncompressed tar layer made by fill (after the boot entries when boot is set).
func (l *layout) layer(fill func(*tar.Writer) error, boot bool) error {
	tmp, err := os.CreateTemp(filepath.Join(l.dir, "blobs", "sha256"), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	hw := &holeWriter{f: tmp, h: sha256.New()}
	bw := bufio.NewWriterSize(hw, 1<<20)
	tw := tar.NewWriter(bw)
	if boot {
		if err := bootEntries(tw); err != nil {
			return err
		}
	}
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Truncate(hw.off); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(hw.h.Sum(nil))}
	if err := os.Rename(tmp.Name(), filepath.Join(l.dir, "blobs", "sha256", d.Hex)); err != nil {
		return err
	}
	l.layers = append(l.layers, v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: hw.off, Digest: d})
	return nil
}

func (l *layout) blob(mt types.MediaType, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	sum := sha256.Sum256(b)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", d.Hex), b, 0o644); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: d}, nil
}

// finish writes the config, manifest, index.json and oci-layout.
func (l *layout) finish(tag string) error {
	if len(l.layers) == 0 {
		return errors.New("no layers")
	}
	cf := v1.ConfigFile{Architecture: "amd64", OS: "linux", Created: v1.Time{Time: mtime.UTC()},
		RootFS: v1.RootFS{Type: "layers"}}
	for _, d := range l.layers {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, d.Digest) // uncompressed: diff_id = digest
	}
	cd, err := l.blob(types.OCIConfigJSON, cf)
	if err != nil {
		return err
	}
	md, err := l.blob(types.OCIManifestSchema1, v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: cd, Layers: l.layers})
	if err != nil {
		return err
	}
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{md}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.dir, "index.json"), idx, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}
