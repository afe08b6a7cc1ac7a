package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// MaxSnapshotBytes caps the file contents a Snapshot keeps in memory.
const MaxSnapshotBytes = 64 << 20

// SnapshotStat is the Sys() value of a Snapshot's FileInfo: the entry's owner.
type SnapshotStat struct {
	Uid, Gid uint32
}

// Snapshot flattens ls (as Flatten does) into a small read-only in-memory tree: the metadata of
// every entry (mode, owner through a *SnapshotStat Sys() value, size, symlink targets) and the
// contents of the regular files whose name (slash-separated, relative, clean) keep accepts. The
// contents kept may total at most MaxSnapshotBytes; past that the error names the cap and the
// entry. Reading a file whose contents were not kept is an error. The tree implements fs.FS,
// fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS; Open and Stat follow symlinks inside the tree (an
// absolute target starts at its root; ".." never goes above it, as in a chroot).
func Snapshot(ctx context.Context, ls []Layer, keep func(name string) bool) (fs.FS, error) {
	rc := Flatten(ctx, ls)
	defer rc.Close()
	t := &snapFS{root: &snapNode{name: ".", mode: fs.ModeDir | 0o755, kids: map[string]*snapNode{}}}
	tr := tar.NewReader(rc)
	var kept int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading layers: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." || name == "/" {
			t.root.setMeta(hdr)
			continue
		}
		name = strings.TrimPrefix(name, "/")
		if hdr.Typeflag == tar.TypeLink {
			target := t.find(path.Clean(strings.TrimPrefix(strings.TrimPrefix(hdr.Linkname, "./"), "/")))
			if target == nil || target.mode.IsDir() {
				return nil, fmt.Errorf("snapshot: hardlink %q to %q: target not in the tree", name, hdr.Linkname)
			}
			n := t.make(name)
			*n = snapNode{name: path.Base(name), mode: target.mode, uid: target.uid, gid: target.gid,
				size: target.size, mtime: target.mtime, data: target.data, kept: target.kept}
			continue
		}
		n := t.make(name)
		n.setMeta(hdr)
		if hdr.Typeflag == tar.TypeReg && keep != nil && keep(name) {
			if kept+hdr.Size > MaxSnapshotBytes {
				return nil, fmt.Errorf("snapshot: %s: the image files read for customisation are more than the %d MiB cap", name, MaxSnapshotBytes>>20)
			}
			n.data = make([]byte, hdr.Size)
			if _, err := io.ReadFull(tr, n.data); err != nil {
				return nil, fmt.Errorf("reading layers: %s: %w", name, err)
			}
			kept += hdr.Size
			n.kept = true
		}
	}
}

type snapNode struct {
	name     string
	mode     fs.FileMode
	uid, gid uint32
	size     int64
	mtime    time.Time
	link     string
	data     []byte
	kept     bool
	kids     map[string]*snapNode
}

func (n *snapNode) setMeta(h *tar.Header) {
	fi := h.FileInfo()
	n.mode = fi.Mode()
	n.uid, n.gid = uint32(h.Uid), uint32(h.Gid)
	n.size, n.mtime, n.link = h.Size, h.ModTime, h.Linkname
	if h.Typeflag != tar.TypeReg {
		n.size = 0
	}
	if h.Typeflag == tar.TypeSymlink {
		n.size = int64(len(h.Linkname))
	}
	if n.mode.IsDir() && n.kids == nil {
		n.kids = map[string]*snapNode{}
	}
	if !n.mode.IsDir() {
		n.kids = nil
	}
}

type snapFS struct{ root *snapNode }

// make returns the node at name, creating it and its missing parents (as directories).
func (t *snapFS) make(name string) *snapNode {
	cur := t.root
	parts := strings.Split(name, "/")
	for i, c := range parts {
		if cur.kids == nil { // a parent that was not a directory: the flattener would not emit this
			cur.kids = map[string]*snapNode{}
		}
		n := cur.kids[c]
		if n == nil {
			n = &snapNode{name: c, mode: fs.ModeDir | 0o755}
			if i < len(parts)-1 {
				n.kids = map[string]*snapNode{}
			}
			cur.kids[c] = n
		}
		cur = n
	}
	return cur
}

// find looks name up without following symlinks.
func (t *snapFS) find(name string) *snapNode {
	if name == "." || name == "" {
		return t.root
	}
	cur := t.root
	for _, c := range strings.Split(name, "/") {
		if cur.kids == nil {
			return nil
		}
		if cur = cur.kids[c]; cur == nil {
			return nil
		}
	}
	return cur
}

var errSnapLoop = errors.New("too many levels of symbolic links")

// lookup resolves name through the tree's symlinks (the final one too when follow is set).
func (t *snapFS) lookup(name string, follow bool) (*snapNode, error) {
	todo := strings.Split(name, "/")
	if name == "." {
		todo = nil
	}
	var stack []*snapNode
	cur := t.root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 { // ".." of the root is the root, as in a chroot
				continue
			}
			cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
			continue
		}
		if cur.kids == nil {
			return nil, fs.ErrNotExist
		}
		n := cur.kids[c]
		if n == nil {
			return nil, fs.ErrNotExist
		}
		if n.mode&fs.ModeSymlink != 0 && (len(todo) > 0 || follow) {
			if links++; links > 40 {
				return nil, errSnapLoop
			}
			if strings.HasPrefix(n.link, "/") {
				cur, stack = t.root, nil
			}
			todo = append(strings.Split(n.link, "/"), todo...)
			continue
		}
		stack = append(stack, cur)
		cur = n
	}
	return cur, nil
}

func (t *snapFS) get(op, name string, follow bool) (*snapNode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n, err := t.lookup(name, follow)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return n, nil
}

func (t *snapFS) Open(name string) (fs.File, error) {
	n, err := t.get("open", name, true)
	if err != nil {
		return nil, err
	}
	if n.mode.IsRegular() && !n.kept && n.size > 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("contents not kept in the image snapshot")}
	}
	return &snapFile{n: n}, nil
}

func (t *snapFS) Stat(name string) (fs.FileInfo, error) {
	n, err := t.get("stat", name, true)
	if err != nil {
		return nil, err
	}
	return snapInfo{n}, nil
}

func (t *snapFS) Lstat(name string) (fs.FileInfo, error) {
	n, err := t.get("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return snapInfo{n}, nil
}

func (t *snapFS) ReadLink(name string) (string, error) {
	n, err := t.get("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return n.link, nil
}

func (t *snapFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := t.get("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	return n.entries(), nil
}

func (n *snapNode) entries() []fs.DirEntry {
	out := make([]fs.DirEntry, 0, len(n.kids))
	for _, k := range n.kids {
		out = append(out, fs.FileInfoToDirEntry(snapInfo{k}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

type snapInfo struct{ n *snapNode }

func (i snapInfo) Name() string       { return i.n.name }
func (i snapInfo) Size() int64        { return i.n.size }
func (i snapInfo) Mode() fs.FileMode  { return i.n.mode }
func (i snapInfo) ModTime() time.Time { return i.n.mtime }
func (i snapInfo) IsDir() bool        { return i.n.mode.IsDir() }
func (i snapInfo) Sys() any           { return &SnapshotStat{Uid: i.n.uid, Gid: i.n.gid} }

type snapFile struct {
	n   *snapNode
	off int
	dir []fs.DirEntry
}

func (f *snapFile) Stat() (fs.FileInfo, error) { return snapInfo{f.n}, nil }
func (f *snapFile) Close() error               { return nil }

func (f *snapFile) Read(p []byte) (int, error) {
	if f.n.mode.IsDir() {
		return 0, &fs.PathError{Op: "read", Path: f.n.name, Err: errors.New("is a directory")}
	}
	if f.off >= len(f.n.data) {
		return 0, io.EOF
	}
	k := copy(p, f.n.data[f.off:])
	f.off += k
	return k, nil
}

func (f *snapFile) ReadDir(count int) ([]fs.DirEntry, error) {
	if !f.n.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: f.n.name, Err: errors.New("not a directory")}
	}
	if f.dir == nil {
		f.dir = f.n.entries()
	}
	if count <= 0 {
		d := f.dir
		f.dir = f.dir[len(f.dir):]
		return d, nil
	}
	if len(f.dir) == 0 {
		return nil, io.EOF
	}
	k := min(count, len(f.dir))
	d := f.dir[:k]
	f.dir = f.dir[k:]
	return d, nil
}
