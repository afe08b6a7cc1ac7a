package erofs

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/imgfab/imgfab/rootfs"
)

// Options configures a Writer. Every field that reaches the image comes from here, so the same options and
// the same stream give the same bytes.
type Options struct {
	// UUID is the superblock uuid.
	UUID [16]byte
	// Time is unix seconds for the superblock build_time and for implicit parent directories (and the
	// root, unless the stream has a "." entry).
	Time int64
	// Label is volume_name, at most 16 bytes.
	Label string
	// MaxSize, when not 0, is the most bytes the filesystem may take: a file whose blocks would
	// go past it, or metadata that would, fails with ErrFull (wrapped, naming the numbers).
	MaxSize int64
}

// ErrFull is the error of a filesystem that outgrew Options.MaxSize.
var ErrFull = errors.New("erofs: filesystem full")

const (
	bs         = 4096 // block size
	blkBits    = 12
	inodeSize  = 64 // extended inode
	slotSize   = 32 // nid unit
	direntSize = 12
	xhdrSize   = 12 // erofs_xattr_ibody_header
	maxLinks   = 1<<32 - 1
	maxBlocks  = 1<<32 - 1
	bufBlocks  = 256 // 1 MiB copy buffer
)

var le = binary.LittleEndian

const (
	sIFMT   = rootfs.ModeType
	sIFSOCK = rootfs.ModeSocket
	sIFLNK  = rootfs.ModeLink
	sIFREG  = rootfs.ModeReg
	sIFBLK  = rootfs.ModeBlock
	sIFDIR  = rootfs.ModeDir
	sIFCHR  = rootfs.ModeChar
	sIFIFO  = rootfs.ModeFifo
)

type xattr struct {
	index uint8
	name  string // suffix after the prefix of index
	value []byte
}

type dirent struct {
	name string
	n    *inode
}

// inode is the in-memory metadata of one inode. File data goes to dst as it arrives; only a regular file's
// or symlink's tail (< 4 KiB) that will be stored inline is kept until Close.
type inode struct {
	mode     uint16 // type and 07777
	nlink    uint32
	uid, gid uint32
	mtime    int64
	mnsec    uint32
	size     int64
	blkaddr  uint32 // first block of the block-aligned data (FLAT_PLAIN part)
	tail     []byte // inline tail (regular files, symlinks)
	inline   bool   // data layout FLAT_INLINE
	rdev     uint32
	xattrs   []xattr
	xsize    int // inline xattr area in bytes (0: none)
	link     string
	children []dirent // directories
	parent   *inode   // directories
	explicit bool
	// placeholder is an unresolved hardlink; link is its target path.
	placeholder bool

	// Set at Close.
	nid     uint64
	ino     uint32
	placed  bool
	dirBlks []int // directories: entries per dirent block, in sorted order
	dirLast int   // directories: bytes used in the last dirent block
}

func (n *inode) isDir() bool { return n.mode&sIFMT == sIFDIR }

// Writer writes an EROFS filesystem in one pass. See the package documentation.
type Writer struct {
	dst  io.WriterAt
	opts Options
	buf  []byte

	cur     int64 // next data block
	root    *inode
	paths   map[string]*inode
	pending []string // placeholder paths, in stream order
	err     error
	closed  bool
	size    int64
}

// NewWriter starts a filesystem written to dst from offset 0. File data is written from block 1 on as it
// arrives; Close writes the metadata after it and the superblock in block 0. Writes are only ever inside
// [0, Size()), and every byte in that range is written (dst need not be zeroed).
func NewWriter(dst io.WriterAt, opts Options) (*Writer, error) {
	if len(opts.Label) > 16 {
		return nil, fmt.Errorf("erofs: label %q is %d bytes, at most 16", opts.Label, len(opts.Label))
	}
	if opts.Time < 0 {
		return nil, fmt.Errorf("erofs: negative time %d", opts.Time)
	}
	w := &Writer{dst: dst, opts: opts, paths: make(map[string]*inode), cur: 1}
	w.root = &inode{mode: sIFDIR | 0755, mtime: opts.Time}
	w.root.parent = w.root
	w.paths["."] = w.root
	return w, nil
}

// Size is the size of the filesystem in bytes, a multiple of 4096. Before Close it is 0.
func (w *Writer) Size() int64 { return w.size }

func splitPath(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

func checkPath(name string) error {
	if err := rootfs.CheckPath(name); err != nil {
		return fmt.Errorf("erofs: %w", err)
	}
	return nil
}

// dir returns the directory at path, creating it (and its parents) implicitly.
func (w *Writer) dir(path string) (*inode, error) {
	if n, ok := w.paths[path]; ok {
		if !n.isDir() {
			return nil, fmt.Errorf("erofs: %q is not a directory but has entries below it", path)
		}
		return n, nil
	}
	pd, base := splitPath(path)
	parent, err := w.dir(pd)
	if err != nil {
		return nil, err
	}
	n := &inode{mode: sIFDIR | 0755, mtime: w.opts.Time, parent: parent}
	parent.children = append(parent.children, dirent{base, n})
	w.paths[path] = n
	return n, nil
}

func (w *Writer) setMeta(n *inode, hdr *tar.Header) error {
	n.mode = n.mode&sIFMT | uint16(hdr.Mode&07777)
	if hdr.Uid < 0 || int64(hdr.Uid) > 1<<32-1 || hdr.Gid < 0 || int64(hdr.Gid) > 1<<32-1 {
		return fmt.Errorf("erofs: uid/gid %d/%d out of range", hdr.Uid, hdr.Gid)
	}
	n.uid, n.gid = uint32(hdr.Uid), uint32(hdr.Gid)
	if mt := hdr.ModTime; mt.IsZero() {
		n.mtime, n.mnsec = w.opts.Time, 0
	} else {
		n.mtime, n.mnsec = mt.Unix(), uint32(mt.Nanosecond())
	}
	// A time before 1970 is stored as its two's complement: the kernel reads i_mtime as a signed
	// 64-bit time (fs/erofs/inode.c), as mkfs.erofs writes it.
	xs, size, err := parseXattrs(hdr)
	if err != nil {
		return err
	}
	n.xattrs, n.xsize = xs, size
	return nil
}

// Add adds one entry of a tar stream; see the package documentation for what is accepted.
func (w *Writer) Add(hdr *tar.Header, body io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("erofs: Add after Close")
	}
	name := hdr.Name
	if err := checkPath(name); err != nil {
		return err
	}
	mode, err := rootfs.EntryMode(hdr)
	if err != nil {
		return fmt.Errorf("erofs: %w", err)
	}
	if old, ok := w.paths[name]; ok {
		if mode == sIFDIR && hdr.Typeflag == tar.TypeDir && old.isDir() {
			if err := w.setMeta(old, hdr); err != nil {
				return fmt.Errorf("%w (entry %q)", err, name)
			}
			old.explicit = true
			return nil
		}
		if old.isDir() && len(old.children) > 0 {
			return fmt.Errorf("erofs: entry %q: non-directory entry for a directory that has entries", name)
		}
		return fmt.Errorf("erofs: entry %q: duplicate entry", name)
	}
	if name == "." {
		return fmt.Errorf("erofs: entry \".\": root must be a directory")
	}
	pd, base := splitPath(name)
	parent, err := w.dir(pd)
	if err != nil {
		return fmt.Errorf("%w (adding %q)", err, name)
	}
	if hdr.Typeflag == tar.TypeLink {
		n := &inode{link: hdr.Linkname, placeholder: true}
		if t, ok := w.paths[hdr.Linkname]; ok && !t.placeholder {
			if t.isDir() {
				return fmt.Errorf("erofs: hardlink %q: target %q is a directory", name, hdr.Linkname)
			}
			n = t
		} else {
			w.pending = append(w.pending, name)
		}
		if n.nlink >= maxLinks {
			return fmt.Errorf("erofs: hardlink %q: target %q has too many links", name, hdr.Linkname)
		}
		n.nlink++
		parent.children = append(parent.children, dirent{base, n})
		w.paths[name] = n
		return nil
	}
	n := &inode{mode: mode, nlink: 1}
	if err := w.setMeta(n, hdr); err != nil {
		return fmt.Errorf("%w (entry %q)", err, name)
	}
	switch mode {
	case sIFDIR:
		n.parent = parent
		n.explicit = true
	case sIFLNK:
		n.link = hdr.Linkname
		if err := w.placeData(n, []byte(hdr.Linkname)); err != nil {
			w.err = fmt.Errorf("%w (symlink %q)", err, name)
			return w.err
		}
		n.size = int64(len(hdr.Linkname))
	case sIFCHR, sIFBLK:
		maj, mnr := uint32(hdr.Devmajor), uint32(hdr.Devminor)
		n.rdev = mnr&0xff | maj<<8 | (mnr&^0xff)<<12
	case sIFREG:
		if hdr.Size < 0 {
			return fmt.Errorf("erofs: entry %q: negative size %d", name, hdr.Size)
		}
		if err := w.writeData(n, hdr.Size, body); err != nil {
			w.err = fmt.Errorf("%w (file %q)", err, name)
			return w.err
		}
	}
	parent.children = append(parent.children, dirent{base, n})
	w.paths[name] = n
	return nil
}

// room checks that blocks blocks fit Options.MaxSize.
func (w *Writer) room(blocks int64) error {
	if w.opts.MaxSize > 0 && blocks*bs > w.opts.MaxSize {
		return fmt.Errorf("%w: %d bytes needed, %d allowed", ErrFull, blocks*bs, w.opts.MaxSize)
	}
	return nil
}

// writeBlocks writes whole blocks at block blk.
func (w *Writer) writeBlocks(p []byte, blk int64) error {
	if _, err := w.dst.WriteAt(p, blk*bs); err != nil {
		return fmt.Errorf("erofs: writing blocks %d-%d: %w", blk, blk+int64(len(p))/bs-1, err)
	}
	return nil
}

// writeData appends the whole blocks of a regular file at the data cursor and keeps its tail for Close
// (or, if the tail cannot be inline, writes it as one more block).
func (w *Writer) writeData(n *inode, size int64, body io.Reader) error {
	if size > 0 && body == nil {
		return fmt.Errorf("erofs: no body for %d bytes", size)
	}
	full := size / bs
	if w.cur+full+1 > maxBlocks {
		return fmt.Errorf("erofs: file of %d bytes does not fit: the image would exceed 2^32 blocks (16 TiB)", size)
	}
	if err := w.room(w.cur + full); err != nil {
		return err
	}
	n.size = size
	n.blkaddr = uint32(w.cur)
	if w.buf == nil {
		w.buf = make([]byte, bufBlocks*bs)
	}
	read := int64(0)
	for left := full; left > 0; {
		k := min(left, bufBlocks)
		p := w.buf[:k*bs]
		if _, err := io.ReadFull(body, p); err != nil {
			return bodyErr(err, read, size)
		}
		if err := w.writeBlocks(p, w.cur); err != nil {
			return err
		}
		w.cur += k
		left -= k
		read += k * bs
	}
	if t := size - read; t > 0 {
		tail := make([]byte, t)
		if _, err := io.ReadFull(body, tail); err != nil {
			return bodyErr(err, read, size)
		}
		if err := w.placeTail(n, tail); err != nil {
			return err
		}
	}
	if full == 0 && (n.inline || size == 0) {
		n.blkaddr = 0 // no block-aligned data
	}
	return nil
}

func bodyErr(err error, read, size int64) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("erofs: short body: fewer than %d bytes after %d", size, read)
	}
	return fmt.Errorf("erofs: reading file body: %w", err)
}

// placeData stores data shorter than a block (a symlink target) inline or in one data block.
func (w *Writer) placeData(n *inode, data []byte) error {
	n.blkaddr = uint32(w.cur)
	if err := w.placeTail(n, data); err != nil {
		return err
	}
	if n.inline {
		n.blkaddr = 0
	}
	return nil
}

// placeTail keeps a tail (1..4095 bytes) for inline storage if inode, xattrs and tail fit one block;
// otherwise it writes it zero-padded as the next data block (the file is then FLAT_PLAIN).
func (w *Writer) placeTail(n *inode, tail []byte) error {
	if inodeSize+n.xsize+len(tail) <= bs {
		n.tail, n.inline = tail, true
		return nil
	}
	if err := w.room(w.cur + 1); err != nil {
		return err
	}
	if w.cur+1 > maxBlocks {
		return errors.New("erofs: the image would exceed 2^32 blocks (16 TiB)")
	}
	blk := make([]byte, bs)
	copy(blk, tail)
	if err := w.writeBlocks(blk, w.cur); err != nil {
		return err
	}
	w.cur++
	return nil
}

// parseXattrs converts SCHILY.xattr.* PAX records to EROFS inline xattr entries, sorted by (index, name),
// and returns the size of the inline xattr area (header included; 0 without xattrs).
func parseXattrs(hdr *tar.Header) ([]xattr, int, error) {
	var keys []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, 0, nil
	}
	sort.Strings(keys)
	xs := make([]xattr, 0, len(keys))
	for _, k := range keys {
		full := strings.TrimPrefix(k, "SCHILY.xattr.")
		v := []byte(hdr.PAXRecords[k])
		var x xattr
		switch {
		case full == "system.posix_acl_access" || full == "system.posix_acl_default":
			x.index = 2
			if full == "system.posix_acl_default" {
				x.index = 3
			}
			if err := checkACL(v); err != nil {
				return nil, 0, fmt.Errorf("erofs: xattr %s: %w", full, err)
			}
		case strings.HasPrefix(full, "user."):
			x.index, x.name = 1, full[5:]
		case strings.HasPrefix(full, "trusted."):
			x.index, x.name = 4, full[8:]
		case strings.HasPrefix(full, "security."):
			x.index, x.name = 6, full[9:]
		default:
			return nil, 0, fmt.Errorf("erofs: xattr %q: unsupported namespace", full)
		}
		if x.index != 2 && x.index != 3 && x.name == "" {
			return nil, 0, fmt.Errorf("erofs: xattr %q: empty name", full)
		}
		if len(x.name) > 255 {
			return nil, 0, fmt.Errorf("erofs: xattr %q: name longer than 255 bytes", full)
		}
		x.value = v
		xs = append(xs, x)
	}
	sort.SliceStable(xs, func(i, j int) bool {
		if xs[i].index != xs[j].index {
			return xs[i].index < xs[j].index
		}
		return xs[i].name < xs[j].name
	})
	size := xhdrSize
	for _, x := range xs {
		size += xattrEntrySize(x)
	}
	// The inode, its xattrs and any inline tail are kept inside one block.
	if inodeSize+size > bs {
		return nil, 0, fmt.Errorf("erofs: xattrs need %d bytes, at most %d fit next to the inode in one block", size, bs-inodeSize)
	}
	return xs, size, nil
}

func xattrEntrySize(x xattr) int { return (4 + len(x.name) + len(x.value) + 3) &^ 3 }

// checkACL checks a VFS POSIX ACL xattr value (version 2, 8-byte entries); EROFS stores it as is.
func checkACL(v []byte) error {
	if len(v) < 4 || (len(v)-4)%8 != 0 || le.Uint32(v) != 2 {
		return fmt.Errorf("malformed POSIX ACL of %d bytes", len(v))
	}
	for i := 4; i < len(v); i += 8 {
		switch tag := le.Uint16(v[i:]); tag {
		case 0x01, 0x02, 0x04, 0x08, 0x10, 0x20:
		default:
			return fmt.Errorf("POSIX ACL entry with unknown tag 0x%x", tag)
		}
	}
	return nil
}
