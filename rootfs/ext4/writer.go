package ext4

import (
	"archive/tar"
	"bytes"
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
	// Size is the filesystem size in bytes (rounded down to 4 KiB blocks). 0 means automatic: the geometry is
	// provisional (MaxSize) while data streams in, and Close shrinks the filesystem to what was used plus
	// headroom (max(25%, 64 MiB)). With Size > 0, running out of space is an error with the numbers.
	Size int64
	// MaxSize is the provisional geometry for Size==0; default 1 TiB.
	MaxSize int64
	// UUID is s_uuid (and the journal uuid), bytes in UUID-string order.
	UUID [16]byte
	// HashSeed is s_hash_seed.
	HashSeed [16]byte
	// Time is unix seconds for the superblock times, lost+found, implicit parent dirs and every crtime.
	Time int64
	// Label is s_volume_name, at most 16 bytes.
	Label string
	// NoJournal leaves out the journal (on by default).
	NoJournal bool
}

// Stats counts what a Writer wrote.
type Stats struct {
	Files, Dirs, Symlinks, Hardlinks, Devices, Fifos int
	DataBytes                                        int64 // sum of regular file sizes
	Inodes, InodesTotal                              int64 // used (including reserved 1-11) / total
	BlocksUsed, BlocksTotal                          int64
}

type extent struct {
	log  uint32 // first logical block
	len  uint32 // 1..32768
	phys int64
}

func (e extent) elen() int64 { return int64(e.len) }

type xattr struct {
	index uint8
	name  string
	value []byte
}

type dirent struct {
	name string
	n    *inode
}

// inode is the in-memory metadata of one inode. Only metadata is kept: file data goes to dst as it arrives.
type inode struct {
	mode         uint16 // i_mode: type and 07777
	ino          uint32
	nlink        uint32
	uid, gid     uint32
	size         int64
	atime        int64
	mtime        int64
	ctime        int64
	ansec, mnsec uint32
	cnsec        uint32
	major, minor uint32
	ext          []extent // data (or directory/symlink) extents
	rootIdx      []extent // index entries in the inode when depth > 0 (len unused)
	depth        uint16
	nTree        uint32 // extent tree blocks
	eaBlock      int64
	xattrs       []xattr // sorted; the first nInline are stored in the inode
	nInline      int
	link         string   // symlink target, or hardlink target of a placeholder
	children     []dirent // directories
	parent       *inode   // directories
	placeholder  bool     // unresolved hardlink
	explicit     bool
	htree        bool // directory written with an htree index
}

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

func (n *inode) isDir() bool { return n.mode&sIFMT == sIFDIR }

const bufBlocks = 1024 // 4 MiB append buffer

// Writer writes an ext4 filesystem in one pass. See the package documentation.
type Writer struct {
	dst  io.WriterAt
	opts Options
	prov geometry // provisional (Size==0) or final (Size>0) geometry
	geo  geometry // final geometry (after Close)
	auto bool

	limit    int64 // data may not reach this block
	cur      int64 // next block to allocate (before skipping)
	gaps     []run // free blocks below cur (left by contiguous allocations)
	buf      []byte
	bufStart int64
	bufN     int
	hiBlock  int64 // one past the highest block written

	root     *inode
	lf       *inode
	paths    map[string]*inode
	pending  []string // placeholder paths
	nInodes  int64    // inodes from the stream (excluding root and lost+found)
	stats    Stats
	byIno    []*inode
	err      error
	closed   bool
	size     int64
	metaFrom int64 // first block after file data
}

type run struct{ start, n int64 }

// NewWriter starts a filesystem occupying dst[0:size). dst is typically an io.NewOffsetWriter-like window
// onto a sparse *os.File: blocks never written must read as zeros. Writes are only ever inside [0, final size).
func NewWriter(dst io.WriterAt, opts Options) (*Writer, error) {
	if len(opts.Label) > 16 {
		return nil, fmt.Errorf("ext4: label %q is %d bytes, at most 16", opts.Label, len(opts.Label))
	}
	if opts.Size < 0 || opts.MaxSize < 0 {
		return nil, fmt.Errorf("ext4: negative size %d / max size %d", opts.Size, opts.MaxSize)
	}
	w := &Writer{dst: dst, opts: opts, paths: make(map[string]*inode), buf: make([]byte, bufBlocks*bs)}
	var err error
	if opts.Size > 0 {
		w.prov, err = newGeometry(opts.Size/bs, 0, false)
		if err != nil {
			return nil, err
		}
		meta := 2*w.prov.groups + w.prov.groups*w.prov.itb
		if !opts.NoJournal {
			j := journalBlocks(w.prov.blocks)
			meta += j + treeBlocks(int(ceilDiv(j, bpg))+2)
		}
		w.limit = w.prov.blocks - meta
	} else {
		w.auto = true
		maxSize := opts.MaxSize
		if maxSize == 0 {
			maxSize = 1 << 40
		}
		w.prov, err = newGeometry(maxSize/bs, 0, false)
		if err != nil {
			return nil, err
		}
		w.limit = w.prov.blocks
	}
	t := opts.Time
	w.root = &inode{mode: sIFDIR | 0755, atime: t, mtime: t, ctime: t, ino: rootIno}
	w.root.parent = w.root
	w.lf = &inode{mode: sIFDIR | 0700, atime: t, mtime: t, ctime: t, ino: lostFoundIno, parent: w.root}
	w.root.children = append(w.root.children, dirent{"lost+found", w.lf})
	w.paths["."] = w.root
	w.paths["lost+found"] = w.lf
	return w, nil
}

// ErrFull is wrapped by the errors that report a filesystem too small for its content.
var ErrFull = errors.New("filesystem full")

func (w *Writer) fullError() error {
	return fmt.Errorf("ext4: %w: %d MiB of file data written, filesystem is %d MiB",
		ErrFull, w.stats.DataBytes>>20, w.prov.blocks*bs>>20)
}

// nextFree returns the first block at or after c outside the provisional superblock/GDT ranges.
func (w *Writer) nextFree(c int64) int64 {
	g := c / bpg
	if e := w.prov.superEnd(g); c < e {
		return e
	}
	return c
}

// flush writes the append buffer.
func (w *Writer) flush() error {
	if w.bufN == 0 {
		return nil
	}
	n := int64(w.bufN)
	w.bufN = 0
	if err := w.writeBlocks(w.buf[:n*bs], w.bufStart); err != nil {
		return err
	}
	return nil
}

func (w *Writer) writeBlocks(p []byte, blk int64) error {
	if _, err := w.dst.WriteAt(p, blk*bs); err != nil {
		return fmt.Errorf("ext4: writing blocks %d-%d: %w", blk, blk+int64(len(p))/bs-1, err)
	}
	if e := blk + int64(len(p)+bs-1)/bs; e > w.hiBlock {
		w.hiBlock = e
	}
	return nil
}

// room makes the append buffer ready to take up to n blocks starting at physical block p and returns how
// many it can take (at least 1).
func (w *Writer) room(p int64, n int64) (int64, error) {
	if w.bufN > 0 && (p != w.bufStart+int64(w.bufN) || w.bufN == bufBlocks) {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	if w.bufN == 0 {
		w.bufStart = p
	}
	if free := int64(bufBlocks - w.bufN); n > free {
		n = free
	}
	return n, nil
}

// appendBlock allocates one block at the cursor and returns its number and its (zeroed) buffer; the block
// is written at the next flush.
func (w *Writer) appendBlock() (int64, []byte, error) {
	p := w.nextFree(w.cur)
	if p >= w.prov.blocks {
		return 0, nil, fmt.Errorf("ext4: %w writing metadata: %d MiB of file data, filesystem is %d MiB",
			ErrFull, w.stats.DataBytes>>20, w.prov.blocks*bs>>20)
	}
	if _, err := w.room(p, 1); err != nil {
		return 0, nil, err
	}
	b := w.buf[w.bufN*bs : (w.bufN+1)*bs]
	clear(b)
	w.bufN++
	w.cur = p + 1
	return p, b, nil
}

func addExtent(ext []extent, l uint32, p int64) []extent {
	if k := len(ext); k > 0 {
		e := &ext[k-1]
		if int64(e.log)+e.elen() == int64(l) && e.phys+e.elen() == p && p%bpg != 0 && e.elen() < bpg {
			e.len++
			return ext
		}
	}
	return append(ext, extent{log: l, len: 1, phys: p})
}

func splitPath(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

func checkPath(name string) error {
	if err := rootfs.CheckPath(name); err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	return nil
}

// dir returns the directory at path, creating it (and its parents) implicitly.
func (w *Writer) dir(path string) (*inode, error) {
	if n, ok := w.paths[path]; ok {
		if !n.isDir() {
			return nil, fmt.Errorf("ext4: %q is not a directory but has entries below it", path)
		}
		return n, nil
	}
	pd, base := splitPath(path)
	parent, err := w.dir(pd)
	if err != nil {
		return nil, err
	}
	t := w.opts.Time
	n := &inode{mode: sIFDIR | 0755, atime: t, mtime: t, ctime: t, parent: parent}
	if err := w.countInode(); err != nil {
		return nil, err
	}
	parent.children = append(parent.children, dirent{base, n})
	w.paths[path] = n
	w.stats.Dirs++
	return n, nil
}

func (w *Writer) countInode() error {
	w.nInodes++
	if !w.auto && w.nInodes+firstIno-1 > w.prov.inodes() {
		return fmt.Errorf("ext4: out of inodes: %d needed, filesystem of %d MiB has %d",
			w.nInodes+firstIno-1, w.prov.blocks*bs>>20, w.prov.inodes())
	}
	return nil
}

func (w *Writer) setMeta(n *inode, hdr *tar.Header) error {
	n.mode = n.mode&sIFMT | uint16(hdr.Mode&07777)
	n.uid, n.gid = uint32(hdr.Uid), uint32(hdr.Gid)
	mt := hdr.ModTime
	if mt.IsZero() {
		n.mtime, n.mnsec = w.opts.Time, 0
	} else {
		n.mtime, n.mnsec = mt.Unix(), uint32(mt.Nanosecond())
	}
	n.atime, n.ansec = n.mtime, n.mnsec
	n.ctime, n.cnsec = n.mtime, n.mnsec
	if !hdr.AccessTime.IsZero() {
		n.atime, n.ansec = hdr.AccessTime.Unix(), uint32(hdr.AccessTime.Nanosecond())
	}
	if !hdr.ChangeTime.IsZero() {
		n.ctime, n.cnsec = hdr.ChangeTime.Unix(), uint32(hdr.ChangeTime.Nanosecond())
	}
	xs, inl, err := parseXattrs(hdr)
	if err != nil {
		return err
	}
	n.xattrs, n.nInline = xs, inl
	return nil
}

// Add adds one entry of a tar stream; see the package documentation for what is accepted.
func (w *Writer) Add(hdr *tar.Header, body io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("ext4: Add after Close")
	}
	name := hdr.Name
	if err := checkPath(name); err != nil {
		return err
	}
	mode, err := rootfs.EntryMode(hdr)
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	if old, ok := w.paths[name]; ok {
		if mode == sIFDIR && old.isDir() {
			if err := w.setMeta(old, hdr); err != nil {
				return err
			}
			old.explicit = true
			return nil
		}
		if old.isDir() && len(old.children) > 0 {
			return fmt.Errorf("ext4: entry %q: non-directory entry for a directory that has entries", name)
		}
		return fmt.Errorf("ext4: entry %q: duplicate entry", name)
	}
	if name == "." {
		return fmt.Errorf("ext4: entry \".\": root must be a directory")
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
				return fmt.Errorf("ext4: hardlink %q: target %q is a directory", name, hdr.Linkname)
			}
			n = t
		} else {
			w.pending = append(w.pending, name)
		}
		if n.nlink >= maxLinks {
			return fmt.Errorf("ext4: hardlink %q: target %q has more than %d links", name, hdr.Linkname, maxLinks)
		}
		n.nlink++
		parent.children = append(parent.children, dirent{base, n})
		w.paths[name] = n
		w.stats.Hardlinks++
		return nil
	}
	n := &inode{mode: mode, nlink: 1}
	if err := w.setMeta(n, hdr); err != nil {
		return fmt.Errorf("%w (entry %q)", err, name)
	}
	if err := w.countInode(); err != nil {
		return err
	}
	switch mode {
	case sIFDIR:
		n.parent = parent
		n.explicit = true
		n.nlink = 0
		w.stats.Dirs++
	case sIFLNK:
		n.link = hdr.Linkname
		n.size = int64(len(n.link))
		w.stats.Symlinks++
	case sIFCHR, sIFBLK:
		n.major, n.minor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
		w.stats.Devices++
	case sIFIFO:
		w.stats.Fifos++
	case sIFREG:
		w.stats.Files++
		if hdr.Size < 0 {
			return fmt.Errorf("ext4: entry %q: negative size %d", name, hdr.Size)
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

// writeData appends the body of a regular file at the cursor; all-zero blocks become holes.
func (w *Writer) writeData(n *inode, size int64, body io.Reader) error {
	if size >= 1<<44 {
		return fmt.Errorf("ext4: file of %d bytes is larger than 16 TiB", size)
	}
	n.size = size
	if size > 0 && body == nil {
		return fmt.Errorf("ext4: no body for %d bytes", size)
	}
	remaining := size
	var logical uint32
	for remaining > 0 {
		p := w.nextFree(w.cur)
		want := ceilDiv(remaining, bs)
		if end := (p/bpg + 1) * bpg; want > end-p {
			want = end - p
		}
		if want > w.limit-p {
			want = w.limit - p
		}
		if want <= 0 {
			return w.fullError()
		}
		k, err := w.room(p, want)
		if err != nil {
			return err
		}
		region := w.buf[w.bufN*bs : (int64(w.bufN)+k)*bs]
		nb := min(remaining, k*bs)
		if _, err := io.ReadFull(body, region[:nb]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("ext4: short body: %d of %d bytes", size-remaining, size)
			}
			return fmt.Errorf("ext4: reading file body: %w", err)
		}
		clear(region[nb:])
		remaining -= nb
		kept := int64(0)
		for i := int64(0); i < k; i++ {
			blk := region[i*bs : (i+1)*bs]
			if bytes.Equal(blk, zeroBlock[:]) {
				logical++
				continue
			}
			if kept != i {
				copy(region[kept*bs:(kept+1)*bs], blk)
			}
			n.ext = addExtent(n.ext, logical, p+kept)
			kept++
			logical++
		}
		w.bufN += int(kept)
		w.cur = p + kept
		w.stats.DataBytes += nb
	}
	return nil
}

// parseXattrs converts SCHILY.xattr.* PAX records to on-disk xattrs, sorted by (index, name length, name)
// (EXT4.md §8), and returns how many go in the inode.
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
			d, err := aclToDisk(v)
			if err != nil {
				return nil, 0, fmt.Errorf("ext4: xattr %s: %w", full, err)
			}
			v = d
		case strings.HasPrefix(full, "user."):
			x.index, x.name = 1, full[5:]
		case strings.HasPrefix(full, "trusted."):
			x.index, x.name = 4, full[8:]
		case strings.HasPrefix(full, "security."):
			x.index, x.name = 6, full[9:]
		default:
			return nil, 0, fmt.Errorf("ext4: xattr %q: unsupported namespace", full)
		}
		if len(x.name) > 255 {
			return nil, 0, fmt.Errorf("ext4: xattr %q: name longer than 255 bytes", full)
		}
		x.value = v
		xs = append(xs, x)
	}
	sort.SliceStable(xs, func(i, j int) bool {
		a, b := xs[i], xs[j]
		if a.index != b.index {
			return a.index < b.index
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return a.name < b.name
	})
	// In-inode area: 96 bytes = magic + entries + 4-byte terminator + values (EXT4.md §8).
	used, inl := 8, 0
	for _, x := range xs {
		need := eaEntrySize(x) + int(roundUp(int64(len(x.value)), 4))
		if used+need > inodeSize-160 {
			break
		}
		used += need
		inl++
	}
	blk := 32 + 4
	for _, x := range xs[inl:] {
		blk += eaEntrySize(x) + int(roundUp(int64(len(x.value)), 4))
	}
	if inl < len(xs) && blk > bs {
		return nil, 0, fmt.Errorf("ext4: xattrs need %d bytes, more than one %d-byte block", blk, bs)
	}
	return xs, inl, nil
}

func eaEntrySize(x xattr) int { return int(roundUp(int64(16+len(x.name)), 4)) }

// aclToDisk converts a VFS POSIX ACL (version 2, 8-byte entries) to the ext4 on-disk form (EXT4.md §8).
func aclToDisk(v []byte) ([]byte, error) {
	if len(v) < 4 || (len(v)-4)%8 != 0 || le.Uint32(v) != 2 {
		return nil, fmt.Errorf("malformed POSIX ACL of %d bytes", len(v))
	}
	out := make([]byte, 4, len(v))
	le.PutUint32(out, 1)
	for i := 4; i < len(v); i += 8 {
		tag := le.Uint16(v[i:])
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, le.Uint16(v[i+2:]))
		switch tag {
		case 0x01, 0x04, 0x10, 0x20: // USER_OBJ, GROUP_OBJ, MASK, OTHER
		case 0x02, 0x08: // USER, GROUP
			out = le.AppendUint32(out, le.Uint32(v[i+4:]))
		default:
			return nil, fmt.Errorf("POSIX ACL entry with unknown tag 0x%x", tag)
		}
	}
	return out, nil
}
