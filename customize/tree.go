package customize

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"syscall"
)

const maxLinks = 40

type kind int

const (
	kFile kind = iota
	kDir
	kLink
	kOther
)

// node is what lstat finds at a resolved name: in the layer being built, else in the image.
type node struct {
	kind     kind
	link     string
	mode     fs.FileMode
	uid, gid int
	e        *entry // non-nil when the layer has it
}

func (n node) kindName() string {
	switch n.kind {
	case kFile:
		return "file"
	case kDir:
		return "directory"
	case kLink:
		return "symlink (to " + n.link + ")"
	}
	return "special file"
}

// lstat looks name (resolved, relative) up without following a final symlink.
func (b *builder) lstat(name string) (node, bool, error) {
	if e, ok := b.over[name]; ok {
		switch e.typ {
		case typeWhiteout:
			return node{}, false, nil
		case tar.TypeDir:
			return node{kind: kDir, mode: fs.ModeDir | fs.FileMode(e.mode&0o777), uid: e.uid, gid: e.gid, e: e}, true, nil
		case tar.TypeSymlink:
			return node{kind: kLink, link: e.link, mode: fs.ModeSymlink | 0o777, e: e}, true, nil
		default:
			return node{kind: kFile, mode: fs.FileMode(e.mode & 0o777), uid: e.uid, gid: e.gid, e: e}, true, nil
		}
	}
	var fi fs.FileInfo
	var err error
	rl, hasLinks := b.root.(fs.ReadLinkFS)
	if hasLinks {
		fi, err = rl.Lstat(name)
	} else {
		fi, err = fs.Stat(b.root, name)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return node{}, false, nil
	}
	if err != nil {
		return node{}, false, err
	}
	n := node{mode: fi.Mode()}
	n.uid, n.gid = owner(fi)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		n.kind = kLink
		if n.link, err = rl.ReadLink(name); err != nil {
			return node{}, false, err
		}
	case fi.IsDir():
		n.kind = kDir
	case fi.Mode().IsRegular():
		n.kind = kFile
	default:
		n.kind = kOther
	}
	return n, true, nil
}

// owner is the uid and gid of an image file, when its FS says: FileInfo.Sys is a struct (or a
// pointer to one) with unsigned Uid and Gid fields, as ext4.Stat and syscall.Stat_t are. Read by
// reflection so that this package needs no FS implementation.
func owner(fi fs.FileInfo) (int, int) {
	v := reflect.ValueOf(fi.Sys())
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, 0
	}
	u, g := v.FieldByName("Uid"), v.FieldByName("Gid")
	if !u.IsValid() || !g.IsValid() || !u.CanUint() || !g.CanUint() {
		return 0, 0
	}
	return int(u.Uint()), int(g.Uint())
}

var errLoop = errors.New("too many levels of symbolic links")

// resolve walks name (relative to the root) through the tree's symlinks, as the booted system
// would: an absolute target starts again at the root. It follows a final symlink when follow is
// set. It returns the resolved existing part and the missing components after it (none when the
// whole path exists). A symlink that climbs above the root is refused.
func (b *builder) resolve(name string, follow bool) (string, []string, error) {
	var todo []string
	if name != "." && name != "" {
		todo = strings.Split(name, "/")
	}
	var cur []string
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", nil, fmt.Errorf("a symlink on the way leads above the image root (refused)")
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := strings.Join(append(cur, c), "/")
		n, ok, err := b.lstat(p)
		if err != nil {
			return "", nil, err
		}
		if !ok {
			rest := append([]string{c}, todo...)
			var miss []string
			for _, r := range rest {
				switch r {
				case "", ".":
				case "..":
					return "", nil, fmt.Errorf("/%s does not exist", p)
				default:
					miss = append(miss, r)
				}
			}
			return joinC(cur), miss, nil
		}
		if n.kind == kLink && (len(todo) > 0 || follow) {
			links++
			if links > maxLinks {
				return "", nil, fmt.Errorf("/%s: %w", name, errLoop)
			}
			if strings.HasPrefix(n.link, "/") {
				cur = cur[:0]
			}
			todo = append(strings.Split(n.link, "/"), todo...)
			continue
		}
		if n.kind != kDir && len(todo) > 0 {
			return "", nil, fmt.Errorf("/%s is not a directory", p)
		}
		cur = append(cur, c)
	}
	return joinC(cur), nil, nil
}

func joinC(c []string) string {
	if len(c) == 0 {
		return "."
	}
	return strings.Join(c, "/")
}

// readFile reads the file at name (relative), following symlinks inside the tree. ok is false
// when it does not exist.
func (b *builder) readFile(name string) ([]byte, string, bool, error) {
	canon, miss, err := b.resolve(name, true)
	if err != nil {
		return nil, "", false, err
	}
	if len(miss) > 0 {
		return nil, "", false, nil
	}
	n, _, err := b.lstat(canon)
	if err != nil {
		return nil, "", false, err
	}
	if n.kind != kFile {
		return nil, canon, false, fmt.Errorf("/%s is a %s, not a file", name, n.kindName())
	}
	if n.e != nil {
		return n.e.data, canon, true, nil
	}
	fi, err := fs.Stat(b.root, canon)
	if err != nil {
		return nil, "", false, err
	}
	if fi.Size() > MaxLayerSize {
		return nil, "", false, fmt.Errorf("/%s: %d bytes, over the %d MiB cap", name, fi.Size(), MaxLayerSize>>20)
	}
	data, err := fs.ReadFile(b.root, canon)
	if err != nil {
		return nil, "", false, err
	}
	return data, canon, true, nil
}

// readDir lists a resolved directory of the image (not the layer's additions).
func (b *builder) readDir(canon string) ([]fs.DirEntry, error) {
	ents, err := fs.ReadDir(b.root, canon)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}
