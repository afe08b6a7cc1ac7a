package ext4

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// This file is the one read-only fs.FS of the package. [Writer.FS] and [Open] both return a treeFS; they
// differ only in the node behind it: memNode (view.go) is an inode the Writer still holds in memory,
// diskNode (read.go) is one decoded from the device. Path walking, symlinks, FileInfo, files and
// directories are all here, so the two views behave alike.

// Stat is what FileInfo.Sys returns for entries of the FS view.
type Stat struct {
	Ino          uint32
	Nlink        uint32
	Uid, Gid     uint32
	Major, Minor uint32
}

// node is one inode as treeFS sees it.
type node interface {
	// attrs returns the i_mode, size and modification time.
	attrs() nodeAttrs
	// sys returns a new *Stat for FileInfo.Sys.
	sys() *Stat
	// lookup returns the child called name of a directory, or an error wrapping fs.ErrNotExist.
	lookup(name string) (node, error)
	// readLink returns a symlink's target.
	readLink() (string, error)
	// list returns a directory's entries but "." and "..", sorted by name.
	list() ([]namedNode, error)
	// contents returns a non-directory's bytes; the reader stops at attrs().size.
	contents() (io.ReaderAt, error)
}

// nodeAttrs is the part of an inode a FileInfo reports.
type nodeAttrs struct {
	mode  uint16 // i_mode: type and 07777
	size  int64
	mtime int64
	mnsec uint32
}

func (a nodeAttrs) isDir() bool     { return a.mode&sIFMT == sIFDIR }
func (a nodeAttrs) isSymlink() bool { return a.mode&sIFMT == sIFLNK }

// namedNode is one directory entry.
type namedNode struct {
	name string
	n    node
}

// treeFS is a read-only fs.FS over the nodes below root. root is called once per path lookup (the reader
// reads inode 2 afresh each time, so that errors surface where they happen).
type treeFS struct {
	root func() (node, error)
}

var (
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
	_ fs.ReadLinkFS = (*treeFS)(nil)
)

// maxSymlinks is how many symlinks one path lookup may follow (Linux's MAXSYMLINKS).
const maxSymlinks = 40

// resolve walks name from the root, following symlinks in every component but the last, and the last too
// when follow is set. Absolute targets restart at the root and ".." stops at it. It returns the node and its
// canonical path; errors are *fs.PathError with op.
func (t *treeFS) resolve(op, name string, follow bool) (node, string, error) {
	if !validPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	fail := func(err error) (node, string, error) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	root, err := t.root()
	if err != nil {
		return fail(err)
	}
	var todo []string
	if name != "." {
		todo = strings.Split(name, "/")
	}
	var names []string    // canonical components of the current directory
	stack := []node{root} // the nodes along names, root first
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		n := stack[len(stack)-1]
		switch c {
		case ".", "":
			continue
		case "..":
			if len(names) > 0 {
				names, stack = names[:len(names)-1], stack[:len(stack)-1]
			}
			continue
		}
		if !n.attrs().isDir() {
			return fail(errors.New("not a directory"))
		}
		child, err := n.lookup(c)
		if err != nil {
			return fail(err)
		}
		if child.attrs().isSymlink() && (len(todo) > 0 || follow) {
			links++
			if links > maxSymlinks {
				return fail(errors.New("too many levels of symbolic links"))
			}
			target, err := child.readLink()
			if err != nil {
				return fail(err)
			}
			if strings.HasPrefix(target, "/") {
				names, stack = names[:0], stack[:1]
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		names = append(names, c)
		stack = append(stack, child)
	}
	return stack[len(stack)-1], joinPath(names), nil
}

// joinPath is the path of canonical components c ("." for none).
func joinPath(c []string) string {
	if len(c) == 0 {
		return "."
	}
	return strings.Join(c, "/")
}

// childPath is the path of the entry name in the directory at dir.
func childPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
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

func (t *treeFS) Open(name string) (fs.File, error) {
	n, p, err := t.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	fi := newFileInfo(n, path.Base(p))
	if fi.a.isDir() {
		return &dirFile{fi: fi, p: p}, nil
	}
	r, err := n.contents()
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{fi: fi, sr: io.NewSectionReader(r, 0, fi.a.size)}, nil
}

func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	n, p, err := t.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return newFileInfo(n, path.Base(p)), nil
}

func (t *treeFS) Lstat(name string) (fs.FileInfo, error) {
	n, p, err := t.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return newFileInfo(n, path.Base(p)), nil
}

func (t *treeFS) ReadLink(name string) (string, error) {
	n, _, err := t.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if !n.attrs().isSymlink() {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	target, err := n.readLink()
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return target, nil
}

func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, _, err := t.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.attrs().isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	es, err := dirEntries(n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return es, nil
}

// dirEntries lists directory n as fs.DirEntry values, sorted by name.
func dirEntries(n node) ([]fs.DirEntry, error) {
	ns, err := n.list()
	if err != nil || ns == nil {
		return nil, err // an empty list stays nil or empty as the node gave it
	}
	out := make([]fs.DirEntry, len(ns))
	for i, c := range ns {
		out[i] = fs.FileInfoToDirEntry(newFileInfo(c.n, c.name))
	}
	return out, nil
}

// fileInfo is the fs.FileInfo of a node; Sys returns a *Stat.
type fileInfo struct {
	n    node
	a    nodeAttrs
	name string
}

func newFileInfo(n node, name string) *fileInfo { return &fileInfo{n: n, a: n.attrs(), name: name} }

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.a.size }
func (i *fileInfo) Mode() fs.FileMode  { return fileMode(i.a.mode) }
func (i *fileInfo) ModTime() time.Time { return time.Unix(i.a.mtime, int64(i.a.mnsec)) }
func (i *fileInfo) IsDir() bool        { return i.a.isDir() }
func (i *fileInfo) Sys() any           { return i.n.sys() }

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

// file is an open non-directory: its contents through a SectionReader of its size.
type file struct {
	fi *fileInfo
	sr *io.SectionReader
}

func (f *file) Stat() (fs.FileInfo, error)                { return f.fi, nil }
func (f *file) Read(p []byte) (int, error)                { return f.sr.Read(p) }
func (f *file) ReadAt(p []byte, off int64) (int, error)   { return f.sr.ReadAt(p, off) }
func (f *file) Seek(off int64, whence int) (int64, error) { return f.sr.Seek(off, whence) }
func (f *file) Close() error                              { return nil }

// dirFile is an open directory; its entries are listed at the first ReadDir.
type dirFile struct {
	fi      *fileInfo
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
		es, err := dirEntries(d.fi.n)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.p, Err: err}
		}
		d.entries, d.read = es, true
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
