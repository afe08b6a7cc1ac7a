package layers

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/imgfab/imgfab/internal/safefile"

	"golang.org/x/sys/unix"
)

// ExtraLayer makes a layer from a host path (--layer): a directory or a tar file (plain, gzip or
// zstd, detected by magic bytes). The layer's Name is path.
//
// A directory is walked in sorted order: entries become root:root with their modes kept, mtimes
// clamped to epoch (min(mtime, epoch), whole seconds), symlinks stay symlinks, files with several
// links become tar hardlinks (detected by device and inode), sockets are skipped, and ".wh." files
// are whiteouts as in any layer. The directory itself (the root) is not emitted, nor are host xattrs.
func ExtraLayer(p string, epoch time.Time) (Layer, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return Layer{}, fmt.Errorf("extra layer %s: %w", p, err)
	}
	if fi.IsDir() {
		return Layer{Name: p, Open: func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeDirTar(pw, p, epoch)) }()
			return pr, nil
		}}, nil
	}
	if !fi.Mode().IsRegular() {
		return Layer{}, fmt.Errorf("extra layer %s: neither a directory nor a regular file (mode %v)", p, fi.Mode())
	}
	return Layer{Name: p, Open: func() (io.ReadCloser, error) {
		f, _, err := safefile.Open(p, "extra layer")
		if err != nil {
			return nil, err
		}
		return decompress(p, f, f)
	}}, nil
}

type inodeKey struct{ dev, ino uint64 }

func writeDirTar(w io.Writer, root string, epoch time.Time) error {
	tw := tar.NewWriter(w)
	links := make(map[inodeKey]string)
	buf := make([]byte, 128<<10)
	var walk func(rel string) error
	walk = func(rel string) error {
		dir := filepath.Join(root, rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("extra layer %s: reading directory %s: %w", root, dir, err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			name := e.Name()
			if rel != "" {
				name = rel + "/" + name
			}
			full := filepath.Join(root, name)
			fi, err := os.Lstat(full)
			if err != nil {
				return fmt.Errorf("extra layer %s: %w", root, err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("extra layer %s: no stat data for %s", root, full)
			}
			mt := fi.ModTime()
			if mt.After(epoch) {
				mt = epoch
			}
			h := &tar.Header{
				Name:    name,
				Mode:    int64(st.Mode & 07777),
				ModTime: mt.Truncate(time.Second),
				Format:  tar.FormatPAX,
			}
			m := fi.Mode()
			switch {
			case m.IsDir():
				h.Typeflag = tar.TypeDir
			case m&fs.ModeSymlink != 0:
				h.Typeflag = tar.TypeSymlink
				if h.Linkname, err = os.Readlink(full); err != nil {
					return fmt.Errorf("extra layer %s: %w", root, err)
				}
			case m.IsRegular():
				k := inodeKey{uint64(st.Dev), uint64(st.Ino)}
				if first, ok := links[k]; ok && st.Nlink > 1 {
					h.Typeflag, h.Linkname = tar.TypeLink, first
				} else {
					if st.Nlink > 1 {
						links[k] = name
					}
					h.Typeflag, h.Size = tar.TypeReg, fi.Size()
				}
			case m&fs.ModeNamedPipe != 0:
				h.Typeflag = tar.TypeFifo
			case m&fs.ModeDevice != 0:
				h.Typeflag = tar.TypeBlock
				if m&fs.ModeCharDevice != 0 {
					h.Typeflag = tar.TypeChar
				}
				h.Devmajor, h.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
			default: // sockets and anything else have no place in an image
				continue
			}
			if err := tw.WriteHeader(h); err != nil {
				return fmt.Errorf("extra layer %s: writing %s: %w", root, name, err)
			}
			if h.Typeflag == tar.TypeReg {
				if err := copyFile(tw, full, h.Size, buf); err != nil {
					return fmt.Errorf("extra layer %s: %w", root, err)
				}
			}
			if h.Typeflag == tar.TypeDir {
				if err := walk(name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return err
	}
	return tw.Close()
}

func copyFile(w io.Writer, name string, size int64, buf []byte) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(f, size), buf)
	if err != nil {
		return fmt.Errorf("copying %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("copying %s: file shrank from %d to %d bytes while reading", name, size, n)
	}
	return nil
}
