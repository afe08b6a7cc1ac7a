package ext4

import (
	"errors"
	"io"
	"io/fs"
	"sort"
)

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
	v := &view{w: w, r: r}
	root := &memNode{v: v, n: w.root, path: "."}
	return &treeFS{root: func() (node, error) { return root, nil }}, nil
}

// view is what the nodes of a closed Writer's FS share: the Writer and dst to read file bytes from.
type view struct {
	w *Writer
	r io.ReaderAt
}

// memNode is a node of Writer.FS: an in-memory inode and its canonical path, the key into w.paths.
type memNode struct {
	v    *view
	n    *inode
	path string
}

func (m *memNode) attrs() nodeAttrs {
	return nodeAttrs{mode: m.n.mode, size: m.n.size, mtime: m.n.mtime, mnsec: m.n.mnsec}
}

func (m *memNode) sys() *Stat {
	n := m.n
	return &Stat{Ino: n.ino, Nlink: n.nlink, Uid: n.uid, Gid: n.gid, Major: n.major, Minor: n.minor}
}

func (m *memNode) lookup(name string) (node, error) {
	p := childPath(m.path, name)
	child, ok := m.v.w.paths[p]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return &memNode{v: m.v, n: child, path: p}, nil
}

func (m *memNode) readLink() (string, error) { return m.n.link, nil }

// list returns the children, which Close sorted by name.
func (m *memNode) list() ([]namedNode, error) {
	out := make([]namedNode, len(m.n.children))
	for i, c := range m.n.children {
		out[i] = namedNode{c.name, &memNode{v: m.v, n: c.n, path: childPath(m.path, c.name)}}
	}
	return out, nil
}

func (m *memNode) contents() (io.ReaderAt, error) { return &extReader{r: m.v.r, n: m.n}, nil }

// extReader reads a file's bytes from dst through its extents; holes read as zeros.
type extReader struct {
	r io.ReaderAt
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
		m, err := e.r.ReadAt(p[done:done+k], phys)
		done += m
		if err != nil && !(err == io.EOF && m == k) {
			return done, err
		}
	}
	return done, nil
}
