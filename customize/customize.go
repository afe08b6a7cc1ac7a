package customize

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imgfab/imgfab/internal/safefile"
)

// MaxLayerSize caps the generated tar (and any one file read from the image): the layer is held
// in memory.
const MaxLayerSize = 64 << 20

// Config is one class's customisation. Every item may carry a Where ("imgfab.yaml:12:7") that
// prefixes its errors.
type Config struct {
	Directories []Directory
	Files       []File
	Groups      []Group
	Users       []User

	Hostname      string
	HostnameWhere string
	Timezone      string // e.g. "Europe/Paris"
	TimezoneWhere string

	Units Units
	Fstab []FstabEntry
}

// File is a file written into the image. Content holds it inline; else Source names a host file
// to copy (a regular file). Mode holds Unix permission bits (07777 at most); 0 means 0644.
//
// The owner is UID:GID, or, where User or Group is set, that name's id in the image's own
// /etc/passwd or /etc/group (e.g. www-data, whose uid differs between distributions).
type File struct {
	Path        string
	Content     []byte
	Source      string
	Mode        uint32
	UID, GID    int
	User, Group string
	Where       string
}

// Directory is a directory made (or whose mode and owner are set) in the image. Mode 0 means
// 0755.
type Directory struct {
	Path        string
	Mode        uint32
	UID, GID    int
	User, Group string // names looked up in the image, as for File
	Where       string
}

// Group is a group added to /etc/group and /etc/gshadow. A nil GID takes the first free gid
// from GID_MIN.
type Group struct {
	Name  string
	GID   *uint32
	Where string
}

// User is an account added to /etc/passwd and /etc/shadow.
type User struct {
	Name string
	// UID nil takes the first free uid from UID_MIN.
	UID *uint32
	// GID names the primary group, which must exist in the image or this Config. Nil makes a new
	// group named like the user with gid = uid.
	GID *uint32
	// Groups are supplementary groups, by name.
	Groups  []string
	Comment string // the GECOS field
	Shell   string // default /bin/sh, as Debian's useradd
	Home    string // default /home/NAME
	// SSHAuthorizedKeys are written to HOME/.ssh/authorized_keys, one a line.
	SSHAuthorizedKeys []string
	// PasswordHash is a crypt(3) hash ("$y$…", "$6$…"), or "!"/"*"; empty means "!" (locked:
	// key login only).
	PasswordHash string
	Where        string
}

// Units lists systemd units to enable, disable and mask, as systemctl would.
type Units struct {
	Enable  []Unit
	Disable []Unit
	Mask    []Unit
}

// Unit names one unit ("ssh.service", "getty@tty1.service").
type Unit struct {
	Name  string
	Where string
}

// FstabEntry is one /etc/fstab line. Options "" means "defaults".
type FstabEntry struct {
	Spec    string // "PARTUUID=…", "UUID=…", "LABEL=…", a device
	Mount   string // a mount point, or "none"/"swap" for swap
	FS      string
	Options string
	Dump    int
	Pass    int
	Where   string
}

// Result is the generated layer.
type Result struct {
	// Tar is the uncompressed layer (at most MaxLayerSize bytes).
	Tar []byte
	// Digest is "sha256:" and the hex sha256 of Tar (the layer's diff ID).
	Digest string
	// Ops lists what was done, in order, for --json and progress output.
	Ops []Op
}

// Op is one operation done by Layer.
type Op struct {
	Op     string `json:"op"`               // "file", "dir", "user", "group", "enable", "disable", "mask", "hostname", "timezone", "fstab", "link", "whiteout"
	Path   string `json:"path,omitempty"`   // the absolute path written
	Target string `json:"target,omitempty"` // a symlink's target
	Detail string `json:"detail,omitempty"`
	Where  string `json:"where,omitempty"`
}

const typeWhiteout = 'W' // an entry that removes the image's file of the same name

// entry is one path of the generated layer, named by its resolved path relative to the root.
type entry struct {
	name     string
	typ      byte // tar.TypeReg, tar.TypeDir, tar.TypeSymlink or typeWhiteout
	mode     int64
	uid, gid int
	data     []byte
	link     string
	where    string
	explicit bool // from Files/Directories: nothing else may write it
	what     string
}

type builder struct {
	ctx   context.Context
	root  fs.FS
	epoch time.Time
	over  map[string]*entry
	ops   []Op
	size  int64
	defs  map[string]string // /etc/login.defs, read once
}

// Layer builds the customisation layer for c over the image tree root (read-only), with every
// mtime (and shadow's last-change day) taken from epoch.
func Layer(ctx context.Context, root fs.FS, c Config, epoch time.Time) (Result, error) {
	if epoch.Before(time.Unix(0, 0)) {
		return Result{}, fmt.Errorf("customize: epoch %s is before 1970", epoch.UTC().Format(time.RFC3339))
	}
	b := &builder{ctx: ctx, root: root, epoch: epoch.Truncate(time.Second), over: map[string]*entry{}}
	steps := []struct {
		name string
		fn   func(Config) error
	}{
		{"directories", b.directories},
		{"files", b.files},
		{"users", b.accounts},
		{"hostname", b.hostname},
		{"timezone", b.timezone},
		{"units", b.units},
		{"fstab", b.fstab},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("customize: %s: %w", s.name, err)
		}
		if err := s.fn(c); err != nil {
			return Result{}, err
		}
	}
	data, err := b.tar()
	if err != nil {
		return Result{}, err
	}
	sum := sha256.Sum256(data)
	return Result{Tar: data, Digest: "sha256:" + hex.EncodeToString(sum[:]), Ops: b.ops}, nil
}

func prefix(where string) string {
	if where == "" {
		return "customize: "
	}
	return where + ": "
}

// ItemError is an item of the Config that does not fit the image (a unit it lacks, a uid it
// already has, …), at the item's Where: the fix is in the class file, and the CLI reports it as
// an error in that file.
type ItemError struct {
	Where string // "imgfab.yaml:12:7"
	Msg   string
}

func (e *ItemError) Error() string { return e.Where + ": " + e.Msg }

// errorf is an *ItemError for an item with a position, else a plain error.
func errorf(where, format string, args ...any) error {
	if where == "" {
		return fmt.Errorf(prefix(where)+format, args...)
	}
	return &ItemError{Where: where, Msg: fmt.Sprintf(format, args...)}
}

// checkPath validates an absolute path from the Config and returns it relative to the root.
func checkPath(where, what, p string) (string, error) {
	switch {
	case p == "":
		return "", errorf(where, "%s: empty path", what)
	case strings.IndexByte(p, 0) >= 0:
		return "", errorf(where, "%s %q: NUL in path", what, p)
	case !strings.HasPrefix(p, "/"):
		return "", errorf(where, "%s %s: not an absolute path", what, p)
	case len(p) > 4095:
		return "", errorf(where, "%s: path of %d bytes (at most 4095)", what, len(p))
	}
	for _, c := range strings.Split(p[1:], "/") {
		if c == ".." {
			return "", errorf(where, "%s %s: \"..\" in path", what, p)
		}
		if strings.HasPrefix(c, ".wh.") {
			return "", errorf(where, "%s %s: a name starting with .wh. is an OCI whiteout", what, p)
		}
		if len(c) > 255 {
			return "", errorf(where, "%s %s: a name of %d bytes (at most 255)", what, p, len(c))
		}
	}
	if path.Clean(p) != p {
		return "", errorf(where, "%s %s: not a clean path (want %s)", what, p, path.Clean(p))
	}
	if p == "/" {
		return "", errorf(where, "%s: the root directory itself", what)
	}
	return p[1:], nil
}

func (b *builder) op(o Op) { b.ops = append(b.ops, o) }

// charge counts n bytes of file data (and a header) against the cap.
func (b *builder) charge(where, p string, n int64) error {
	b.size += 512 + (n+511)&^511
	if b.size+1024 > MaxLayerSize {
		return errorf(where, "%s: the layer would exceed %d MiB (customisation is held in memory; ship large files as a layer)", p, MaxLayerSize>>20)
	}
	return nil
}

// put adds e to the layer, refusing a second writer of an explicit path.
func (b *builder) put(e *entry) error {
	if old, ok := b.over[e.name]; ok {
		switch {
		case old.typ == tar.TypeDir && e.typ == tar.TypeDir && !e.explicit:
			return nil // an implied parent of a directory already made
		case old.typ == tar.TypeDir && e.typ == tar.TypeDir && !old.explicit:
			// an explicit directory settles an implied one
		case old.explicit || e.explicit:
			return errorf(e.where, "%s (%s) is also written by %s (%s)", "/"+e.name, e.what, whereOr(old.where), old.what)
		}
	}
	if err := b.charge(e.where, "/"+e.name, int64(len(e.data))); err != nil {
		return err
	}
	b.over[e.name] = e
	return nil
}

func whereOr(w string) string {
	if w == "" {
		return "this configuration"
	}
	return w
}

// place resolves the parent of the Config path rel (relative to the root) through the tree's
// symlinks, making missing parents (0755 root:root), and returns the resolved name for the entry.
func (b *builder) place(where, rel string) (string, error) {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return base, nil
	}
	canon, missing, err := b.resolve(dir, true)
	if err != nil {
		return "", errorf(where, "/%s: %v", rel, err)
	}
	if len(missing) == 0 {
		n, _, err := b.lstat(canon)
		if err != nil {
			return "", errorf(where, "/%s: %v", rel, err)
		}
		if n.kind != kDir {
			return "", errorf(where, "/%s: parent /%s is not a directory in the image", rel, canon)
		}
	}
	cur := canon
	for _, m := range missing {
		cur = join(cur, m)
		if err := b.put(&entry{name: cur, typ: tar.TypeDir, mode: 0o755, where: where, what: "a parent directory"}); err != nil {
			return "", err
		}
		b.op(Op{Op: "dir", Path: "/" + cur, Detail: "parent, 0755 root:root", Where: where})
	}
	return join(cur, base), nil
}

func join(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

func (b *builder) directories(c Config) error {
	for _, d := range c.Directories {
		rel, err := checkPath(d.Where, "directory", d.Path)
		if err != nil {
			return err
		}
		mode, err := checkMode(d.Where, d.Mode, 0o755)
		if err != nil {
			return err
		}
		name, err := b.place(d.Where, rel)
		if err != nil {
			return err
		}
		if n, ok, err := b.lstat(name); err != nil {
			return errorf(d.Where, "directory %s: %v", d.Path, err)
		} else if ok && n.kind != kDir {
			return errorf(d.Where, "directory %s: the image has a %s there", d.Path, n.kindName())
		}
		uid, gid, err := b.owner(d.Where, d.UID, d.GID, d.User, d.Group)
		if err != nil {
			return err
		}
		d.UID, d.GID = uid, gid
		if err := b.put(&entry{name: name, typ: tar.TypeDir, mode: mode, uid: d.UID, gid: d.GID, where: d.Where, explicit: true, what: "directories"}); err != nil {
			return err
		}
		b.op(Op{Op: "dir", Path: "/" + name, Detail: fmt.Sprintf("%04o %d:%d", mode, d.UID, d.GID), Where: d.Where})
	}
	return nil
}

func checkMode(where string, m, def uint32) (int64, error) {
	if m == 0 {
		return int64(def), nil
	}
	if m > 0o7777 {
		return 0, errorf(where, "mode %o: more than permission bits (at most 07777)", m)
	}
	return int64(m), nil
}

func (b *builder) files(c Config) error {
	for _, f := range c.Files {
		rel, err := checkPath(f.Where, "file", f.Path)
		if err != nil {
			return err
		}
		mode, err := checkMode(f.Where, f.Mode, 0o644)
		if err != nil {
			return err
		}
		if f.UID < 0 || f.GID < 0 {
			return errorf(f.Where, "file %s: negative owner %d:%d", f.Path, f.UID, f.GID)
		}
		data := f.Content
		if f.Source != "" {
			if len(f.Content) > 0 {
				return errorf(f.Where, "file %s: both content and source", f.Path)
			}
			data, err = readSource(f.Where, f.Source, MaxLayerSize-b.size)
			if err != nil {
				return err
			}
		}
		name, err := b.place(f.Where, rel)
		if err != nil {
			return err
		}
		if n, ok, err := b.lstat(name); err != nil {
			return errorf(f.Where, "file %s: %v", f.Path, err)
		} else if ok && n.kind == kDir {
			return errorf(f.Where, "file %s: the image has a directory there", f.Path)
		}
		uid, gid, err := b.owner(f.Where, f.UID, f.GID, f.User, f.Group)
		if err != nil {
			return err
		}
		f.UID, f.GID = uid, gid
		if err := b.put(&entry{name: name, typ: tar.TypeReg, mode: mode, uid: f.UID, gid: f.GID, data: data, where: f.Where, explicit: true, what: "files"}); err != nil {
			return err
		}
		b.op(Op{Op: "file", Path: "/" + name, Detail: fmt.Sprintf("%d bytes, %04o %d:%d", len(data), mode, f.UID, f.GID), Where: f.Where})
	}
	return nil
}

// owner is uid:gid, with user and group, when named, looked up in the image's /etc/passwd and
// /etc/group.
func (b *builder) owner(where string, uid, gid int, user, group string) (int, int, error) {
	var err error
	if user != "" {
		if uid, err = b.imageID(where, "/etc/passwd", "user", user); err != nil {
			return 0, 0, err
		}
	}
	if group != "" {
		if gid, err = b.imageID(where, "/etc/group", "group", group); err != nil {
			return 0, 0, err
		}
	}
	return uid, gid, nil
}

// imageID is the id (third field) of name in the image's account database p.
func (b *builder) imageID(where, p, what, name string) (int, error) {
	d, err := b.loadDB(where, p, true)
	if err != nil {
		return 0, err
	}
	id := -1
	d.each(func(f []string, _ int) {
		if id < 0 && len(f) > 2 && f[0] == name {
			if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				id = int(n)
			}
		}
	})
	if id < 0 {
		return 0, errorf(where, "owner: no %s %q in the image's %s", what, name, p)
	}
	return id, nil
}

func readSource(where, p string, room int64) ([]byte, error) {
	f, fi, err := safefile.Open(p, "source file")
	if err != nil {
		return nil, errorf(where, "%v", err)
	}
	defer f.Close()
	if fi.Size() > room {
		return nil, errorf(where, "source file %s: %d bytes, over what is left of the %d MiB layer cap", p, fi.Size(), MaxLayerSize>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, room+1))
	if err != nil {
		return nil, errorf(where, "reading source file %s: %v", p, err)
	}
	if int64(len(data)) > room {
		return nil, errorf(where, "source file %s grew over what is left of the %d MiB layer cap", p, MaxLayerSize>>20)
	}
	return data, nil
}

// writeGenerated replaces (or creates) the file at the resolved name with data, keeping the
// image's mode and owner when it has the file, else using mode/uid/gid.
func (b *builder) writeGenerated(where, what, name string, data []byte, mode int64, uid, gid int) error {
	if n, ok, err := b.lstat(name); err != nil {
		return errorf(where, "%s /%s: %v", what, name, err)
	} else if ok && n.kind == kFile {
		mode, uid, gid = unixMode(n.mode), n.uid, n.gid
	} else if ok && n.kind == kDir {
		return errorf(where, "%s: /%s is a directory in the image", what, name)
	}
	if old, ok := b.over[name]; ok && !old.explicit {
		delete(b.over, name) // rewritten by a later step: count it once
		b.size -= 512 + (int64(len(old.data))+511)&^511
	}
	return b.put(&entry{name: name, typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, data: data, where: where, what: what})
}

func unixMode(m fs.FileMode) int64 {
	u := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// tar writes the layer: entries sorted by name, parents first.
func (b *builder) tar() ([]byte, error) {
	names := make([]string, 0, len(b.over))
	for n := range b.over {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	buf.Grow(int(b.size + 1024))
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		if err := b.ctx.Err(); err != nil {
			return nil, fmt.Errorf("customize: writing the layer: %w", err)
		}
		e := b.over[n]
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: b.epoch, Format: tar.FormatUSTAR}
		switch e.typ {
		case tar.TypeDir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case tar.TypeReg:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		case tar.TypeSymlink:
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		case typeWhiteout:
			dir, base := path.Split(e.name)
			h.Typeflag, h.Name, h.Mode = tar.TypeReg, dir+".wh."+base, 0o644
		}
		if len(h.Name) > 100 && !ustarSplits(h.Name) || len(h.Linkname) > 100 {
			h.Format = tar.FormatPAX // USTAR cannot hold it; PAX records only the long name
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("customize: writing /%s to the layer: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil && e.typ == tar.TypeReg {
			return nil, fmt.Errorf("customize: writing /%s to the layer: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("customize: closing the layer: %w", err)
	}
	if buf.Len() > MaxLayerSize {
		return nil, fmt.Errorf("customize: the layer is %d bytes, over the %d MiB cap", buf.Len(), MaxLayerSize>>20)
	}
	return buf.Bytes(), nil
}

// ustarSplits reports whether a name fits USTAR's prefix (155) + name (100) fields.
func ustarSplits(name string) bool {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' && i <= 155 && len(name)-i-1 <= 100 && len(name)-i-1 > 0 {
			return true
		}
	}
	return false
}
