package ext4

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Stat is what FileInfo.Sys returns for entries of the FS view.
type Stat struct {
	Ino          uint32
	Nlink        uint32
	Uid, Gid     uint32
	Major, Minor uint32
}

// FS returns a read-only view of the written tree (valid after Close; dst must also implement io.ReaderAt).
// It implements fs.FS, fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS. Open, Stat and ReadDir follow symlinks
// inside the tree; file contents are read from dst through the extents.
func (w *Writer) FS() (fs.FS, error) {
	if !w.closed || w.err != nil || w.size == 0 {
		return nil, errors.New("ext4: FS needs a successfully closed Writer")
	}
	r, ok := w.dst.(io.ReaderAt)
	if !ok {
		return nil, errors.New("ext4: FS needs dst to implement io.ReaderAt")
	}
	return &view{w: w, r: r}, nil
}

type view struct {
	w *Writer
	r io.ReaderAt
}

var (
	_ fs.ReadDirFS  = (*view)(nil)
	_ fs.StatFS     = (*view)(nil)
	_ fs.ReadLinkFS = (*view)(nil)
)

const maxSymlinks = 40

// resolve walks name from the root, following symlinks in every component but the last, and the last too
// when follow is set. It returns the inode and its canonical path.
func (v *view) resolve(op, name string, follow bool) (*inode, string, error) {
	if !validPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	var todo []string
	if name != "." {
		todo = strings.Split(name, "/")
	}
	var cur []string // canonical components of the current directory
	n := v.w.root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".", "":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			n = v.w.paths[joinPath(cur)]
			continue
		}
		if !n.isDir() {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.New("not a directory")}
		}
		p := joinPath(append(cur, c))
		child, ok := v.w.paths[p]
		if !ok {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if child.mode&sIFMT == sIFLNK && (len(todo) > 0 || follow) {
			links++
			if links > maxSymlinks {
				return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.New("too many levels of symbolic links")}
			}
			t := child.link
			if strings.HasPrefix(t, "/") {
				cur = cur[:0]
				n = v.w.root
			}
			todo = append(strings.Split(t, "/"), todo...)
			continue
		}
		cur = append(cur, c)
		n = child
	}
	return n, joinPath(cur), nil
}

func joinPath(c []string) string {
	if len(c) == 0 {
		return "."
	}
	return strings.Join(c, "/")
}

func (v *view) Open(name string) (fs.File, error) {
	n, p, err := v.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	fi := &info{n: n, name: path.Base(p)}
	if n.isDir() {
		return &dirFile{v: v, fi: fi, p: p}, nil
	}
	return &file{fi: fi, sr: io.NewSectionReader(&extReader{v: v, n: n}, 0, n.size)}, nil
}

func (v *view) Stat(name string) (fs.FileInfo, error) {
	n, p, err := v.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return &info{n: n, name: path.Base(p)}, nil
}

func (v *view) Lstat(name string) (fs.FileInfo, error) {
	n, p, err := v.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return &info{n: n, name: path.Base(p)}, nil
}

func (v *view) ReadLink(name string) (string, error) {
	n, _, err := v.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode&sIFMT != sIFLNK {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return n.link, nil
}

func (v *view) ReadDir(name string) ([]fs.DirEntry, error) {
	n, _, err := v.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	return dirEntries(n), nil
}

func dirEntries(n *inode) []fs.DirEntry {
	out := make([]fs.DirEntry, len(n.children)) // children are sorted by name at Close
	for i, c := range n.children {
		out[i] = fs.FileInfoToDirEntry(&info{n: c.n, name: c.name})
	}
	return out
}

type info struct {
	n    *inode
	name string
}

func (i *info) Name() string      { return i.name }
func (i *info) Size() int64       { return i.n.size }
func (i *info) Mode() fs.FileMode { return fileMode(i.n.mode) }

// fileMode is the fs.FileMode of an i_mode: permission and setuid/setgid/sticky bits, and the type.
func fileMode(mode uint16) fs.FileMode {
	m := fs.FileMode(mode & 0777)
	if mode&04000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&02000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&01000 != 0 {
		m |= fs.ModeSticky
	}
	switch mode & sIFMT {
	case sIFDIR:
		m |= fs.ModeDir
	case sIFLNK:
		m |= fs.ModeSymlink
	case sIFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case sIFBLK:
		m |= fs.ModeDevice
	case sIFIFO:
		m |= fs.ModeNamedPipe
	case sIFSOCK:
		m |= fs.ModeSocket
	case sIFREG:
	default:
		m |= fs.ModeIrregular
	}
	return m
}
func (i *info) ModTime() time.Time { return time.Unix(i.n.mtime, int64(i.n.mnsec)) }
func (i *info) IsDir() bool        { return i.n.isDir() }
func (i *info) Sys() any {
	return &Stat{Ino: i.n.ino, Nlink: i.n.nlink, Uid: i.n.uid, Gid: i.n.gid, Major: i.n.major, Minor: i.n.minor}
}

// extReader reads a file's bytes from dst through its extents; holes read as zeros.
type extReader struct {
	v *view
	n *inode
}

func (e *extReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	ext := e.n.ext
	for done < len(p) {
		pos := off + int64(done)
		lb := pos / bs
		// First extent ending after lb.
		i := sort.Search(len(ext), func(i int) bool { return int64(ext[i].log)+ext[i].elen() > lb })
		want := len(p) - done
		if i == len(ext) || int64(ext[i].log) > lb {
			// Hole up to the next extent (or the end).
			holeEnd := int64(1) << 62
			if i < len(ext) {
				holeEnd = int64(ext[i].log) * bs
			}
			k := int(min(int64(want), holeEnd-pos))
			clear(p[done : done+k])
			done += k
			continue
		}
		x := ext[i]
		extEnd := (int64(x.log) + x.elen()) * bs
		k := int(min(int64(want), extEnd-pos))
		phys := x.phys*bs + pos - int64(x.log)*bs
		m, err := e.v.r.ReadAt(p[done:done+k], phys)
		done += m
		if err != nil && !(err == io.EOF && m == k) {
			return done, err
		}
	}
	return done, nil
}

type file struct {
	fi *info
	sr *io.SectionReader
}

func (f *file) Stat() (fs.FileInfo, error)                { return f.fi, nil }
func (f *file) Read(p []byte) (int, error)                { return f.sr.Read(p) }
func (f *file) ReadAt(p []byte, off int64) (int, error)   { return f.sr.ReadAt(p, off) }
func (f *file) Seek(off int64, whence int) (int64, error) { return f.sr.Seek(off, whence) }
func (f *file) Close() error                              { return nil }

type dirFile struct {
	v       *view
	fi      *info
	p       string
	entries []fs.DirEntry
	read    bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.p, Err: errors.New("is a directory")}
}
func (d *dirFile) Close() error { return nil }

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		d.entries, d.read = dirEntries(d.fi.n), true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.entries))
	out := d.entries[:k]
	d.entries = d.entries[k:]
	return out, nil
}

// validPath is fs.ValidPath without the UTF-8 rule: ext4 names are bytes, and fs.WalkDir must be able to
// open every name ReadDir returns.
func validPath(name string) bool {
	if name == "." {
		return true
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}
