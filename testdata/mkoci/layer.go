package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/imgfab/imgfab/internal/iox"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

type compression int

const (
	compGzip compression = iota
	compZstd
	compNone
)

// fileLayer is a layer already written, compressed, to a file, with its digests computed while it was
// written. It implements v1.Layer.
type fileLayer struct {
	path   string
	comp   compression
	digest v1.Hash
	diffID v1.Hash
	size   int64
	mt     types.MediaType
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	switch l.comp {
	case compGzip:
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("layer %s: %w", l.path, err)
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	case compZstd:
		zr, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("layer %s: %w", l.path, err)
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	}
	return f, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

func mediaType(c compression, docker bool) types.MediaType {
	switch {
	case c == compZstd:
		return types.OCILayerZStd
	case c == compNone && docker:
		return types.DockerUncompressedLayer
	case c == compNone:
		return types.OCIUncompressedLayer
	case docker:
		return types.DockerLayer
	}
	return types.OCILayer
}

// packLayer tars dir into a temporary file in tmpDir, compressed with comp. The returned layer's file
// must be removed by the caller (also when an error is returned with a non-nil layer).
func packLayer(ctx context.Context, dir, tmpDir string, comp compression, docker bool, epoch int64, warn io.Writer) (*fileLayer, error) {
	f, err := os.CreateTemp(tmpDir, ".mkoci-layer-*")
	if err != nil {
		return nil, fmt.Errorf("creating temporary layer file: %w", err)
	}
	l := &fileLayer{path: f.Name(), comp: comp, mt: mediaType(comp, docker)}
	defer f.Close()

	blobHash := sha256.New()
	cw := &iox.CountWriter{W: io.MultiWriter(f, blobHash)}
	var zw io.WriteCloser
	switch comp {
	case compGzip:
		zw, err = gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	case compZstd:
		zw, err = zstd.NewWriter(cw, zstd.WithEncoderConcurrency(1))
	default:
		zw = nopCloser{cw}
	}
	if err != nil {
		return l, fmt.Errorf("starting compressor: %w", err)
	}
	diffHash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, diffHash))
	if err := writeTree(ctx, tw, dir, epoch, warn); err != nil {
		return l, err
	}
	if err := tw.Close(); err != nil {
		return l, fmt.Errorf("finishing tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return l, fmt.Errorf("finishing compression: %w", err)
	}
	if err := f.Close(); err != nil {
		return l, fmt.Errorf("closing %s: %w", f.Name(), err)
	}
	l.digest = sum(blobHash)
	l.diffID = sum(diffHash)
	l.size = cw.N
	return l, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

type devIno struct{ dev, ino uint64 }

// writeTree writes the entries under root (not root itself) to tw in sorted walk order.
func writeTree(ctx context.Context, tw *tar.Writer, root string, epoch int64, warn io.Writer) error {
	if st, err := os.Lstat(root); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", root)
	}
	links := map[devIno]string{}
	// filepath.WalkDir visits the entries of each directory in lexical order.
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		return writeEntry(tw, p, filepath.ToSlash(rel), epoch, links, warn)
	})
}

func writeEntry(tw *tar.Writer, p, rel string, epoch int64, links map[devIno]string, warn io.Writer) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("lstat %s: %w", p, err)
	}
	mtime := st.Mtim.Sec
	if epoch >= 0 && mtime > epoch {
		mtime = epoch
	}
	h := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(mtime, 0),
		Format:  tar.FormatPAX,
	}
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		key := devIno{uint64(st.Dev), st.Ino}
		if first, ok := links[key]; ok {
			h.Typeflag = tar.TypeLink
			h.Linkname = first
			return tw.WriteHeader(h)
		}
		links[key] = rel
	}
	xattrs, err := readXattrs(p)
	if err != nil {
		return err
	}
	if len(xattrs) > 0 {
		h.PAXRecords = xattrs
	}
	switch typ {
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case unix.S_IFLNK:
		h.Typeflag = tar.TypeSymlink
		if h.Linkname, err = os.Readlink(p); err != nil {
			return fmt.Errorf("readlink %s: %w", p, err)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor = int64(unix.Major(st.Rdev))
		h.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		fmt.Fprintf(warn, "mkoci: skipping socket %s (tar cannot hold sockets)\n", p)
		return nil
	case unix.S_IFREG:
		h.Typeflag = tar.TypeReg
		h.Size = st.Size
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar header of %s: %w", rel, err)
		}
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.CopyN(tw, f, st.Size); err != nil {
			return fmt.Errorf("copying %s (%d of %d bytes): %w", p, n, st.Size, err)
		}
		return nil
	default:
		return fmt.Errorf("%s: unknown file type %#o", p, typ)
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar header of %s: %w", rel, err)
	}
	return nil
}

// readXattrs returns security.capability and user.* of p (not following symlinks) as PAX records.
func readXattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err == unix.ENOTSUP || sz == 0 {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var names []string
	for _, n := range bytes.Split(buf[:sz], []byte{0}) {
		s := string(n)
		if s == "security.capability" || strings.HasPrefix(s, "user.") {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	recs := map[string]string{}
	for _, n := range names {
		vsz, err := unix.Lgetxattr(p, n, nil)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", n, p, err)
		}
		v := make([]byte, vsz)
		if vsz > 0 {
			if vsz, err = unix.Lgetxattr(p, n, v); err != nil {
				return nil, fmt.Errorf("reading xattr %s of %s: %w", n, p, err)
			}
		}
		recs["SCHILY.xattr."+n] = string(v[:vsz])
	}
	return recs, nil
}
