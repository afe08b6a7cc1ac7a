package ext4

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
)

// This file is a read-only ext2/3/4 reader: Open gives an fs.FS over any filesystem made by mke2fs or
// by our Writer. Byte offsets are from the kernel's Documentation/filesystems/ext4 ([doc:super],
// [doc:group_descr], [doc:inodes], [doc:ifork], [doc:directory], [doc:blockmap]) as summarised in
// docs/EXT4.md §3–§7. The input is untrusted: every block number and size is checked against the
// device before it is used, every loop is bounded and nothing is allocated from an unchecked size.
// Path walking, symlinks and the fs.File types are shared with Writer.FS (fs.go); this file supplies
// diskNode, the node decoded from the device.

// Info is what Probe reads from a superblock.
type Info struct {
	UUID       [16]byte // s_uuid, in the order the UUID string is written
	Label      string   // s_volume_name
	BlockSize  int64
	Blocks     int64 // s_blocks_count
	FreeBlocks int64 // s_free_blocks_count
	Inodes     uint32
	FreeInodes uint32
	// Feature words (compat, incompat, ro_compat).
	Compat, Incompat, ROCompat uint32
}

// UUIDString formats UUID as 8-4-4-4-12 lower-case hex.
func (i Info) UUIDString() string {
	u := i.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

const (
	sbOffset = 1024     // the superblock is always at byte 1024 [doc:super]
	sbMagic  = 0xEF53   // s_magic at 0x38
	extMagic = 0xF30A   // extent header magic [doc:ifork]
	rootIno2 = 2        // the root directory's inode [doc:special_inodes]
	maxDepth = 5        // the kernel's EXT4_MAX_EXTENT_DEPTH
	maxDir   = 32 << 20 // largest directory the reader accepts (about 500,000 entries; bounds the work of one lookup)
	maxLink  = 4096     // PATH_MAX: longest symlink target
	// Feature bits [doc:super].
	incFiletype = 0x2
	incExtents  = 0x40
	inc64bit    = 0x80
	incMetaBg   = 0x10
	incInline   = 0x8000
	incCompress = 0x1
	roSparse    = 0x1
	compSparse2 = 0x200
	// Inode flags [doc:inodes] (i_flags at 0x20).
	flExtents = 0x80000
	flInline  = 0x10000000
)

// Probe reads and checks the superblock of the ext2/3/4 filesystem in r[0:size).
func Probe(r io.ReaderAt, size int64) (Info, error) {
	f, err := newReadFS(r, size)
	if err != nil {
		return Info{}, err
	}
	return f.info, nil
}

// Open returns a read-only view of the ext2/3/4 filesystem in r[0:size). It implements fs.FS,
// fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS; Open, Stat and ReadDir follow symlinks inside the tree
// (absolute targets against the filesystem's root, ".." never above it, at most 40 links), Lstat and
// ReadLink do not. FileInfo.Sys returns a *Stat. It reads extent-mapped files (any depth) and
// indirect-mapped ones (ext2/ext3), linear and hashed directories (read linearly), fast and slow
// symlinks; inline data is an error. Checksums and the journal are ignored. r is read with ReadAt only,
// concurrently safe if r is; nothing is cached.
func Open(r io.ReaderAt, size int64) (fs.FS, error) {
	f, err := newReadFS(r, size)
	if err != nil {
		return nil, err
	}
	root, err := f.inode(rootIno2)
	if err != nil {
		return nil, err
	}
	if root.mode&sIFMT != sIFDIR {
		return nil, fmt.Errorf("ext4: root inode 2 has mode %#o, not a directory", root.mode)
	}
	return &treeFS{root: f.root}, nil
}

// readFS is the state Open derives from the superblock.
type readFS struct {
	r         io.ReaderAt
	size      int64 // device size
	info      Info
	bs        int64 // block size
	blocks    int64
	firstData int64 // s_first_data_block
	bpg, ipg  int64 // blocks and inodes per group
	groups    int64
	inodeSize int64
	descSize  int64
	firstMeta int64 // s_first_meta_bg
	backupBgs [2]int64
}

// readAt reads exactly len(p) bytes at off, which must lie inside the device; what (a format for
// args) names the structure in errors.
func (f *readFS) readAt(p []byte, off int64, what string, args ...any) error {
	if len(args) > 0 && (off < 0 || off > f.size || int64(len(p)) > f.size-off) {
		what = fmt.Sprintf(what, args...)
	}
	if off < 0 || off > f.size || int64(len(p)) > f.size-off {
		return fmt.Errorf("ext4: %s: bytes [%d, +%d) lie outside the %d-byte device", what, off, len(p), f.size)
	}
	n, err := f.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if len(args) > 0 {
		what = fmt.Sprintf(what, args...)
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("ext4: %s: reading %d bytes at %d: %w", what, len(p), off, err)
}

func newReadFS(r io.ReaderAt, size int64) (*readFS, error) {
	f := &readFS{r: r, size: size}
	sb := make([]byte, 1024)
	if size < sbOffset+1024 {
		return nil, fmt.Errorf("ext4: device of %d bytes is too small for a superblock (needs 2048)", size)
	}
	if err := f.readAt(sb, sbOffset, "superblock"); err != nil {
		return nil, err
	}
	// [doc:super]: s_magic at 0x38.
	if m := le.Uint16(sb[0x38:]); m != sbMagic {
		return nil, fmt.Errorf("ext4: bad superblock magic %#04x at byte %d (want %#04x)", m, sbOffset+0x38, sbMagic)
	}
	in := &f.info
	in.Compat, in.Incompat, in.ROCompat = le.Uint32(sb[0x5C:]), le.Uint32(sb[0x60:]), le.Uint32(sb[0x64:])
	if in.Incompat&incCompress != 0 {
		return nil, errors.New("ext4: compressed filesystems (incompat 0x1) are not supported")
	}
	logBS := le.Uint32(sb[0x18:]) // s_log_block_size: block size = 1024 << n
	if logBS > 6 {
		return nil, fmt.Errorf("ext4: superblock s_log_block_size %d at byte %d: block size over 64 KiB", logBS, sbOffset+0x18)
	}
	f.bs = 1024 << logBS
	in.BlockSize = f.bs
	f.blocks = int64(le.Uint32(sb[0x04:])) // s_blocks_count_lo
	in.FreeBlocks = int64(le.Uint32(sb[0x0C:]))
	is64 := in.Incompat&inc64bit != 0
	if is64 {
		f.blocks |= int64(le.Uint32(sb[0x150:])) << 32 // s_blocks_count_hi
		in.FreeBlocks |= int64(le.Uint32(sb[0x158:])) << 32
	}
	if f.blocks <= 0 || f.blocks > size/f.bs {
		return nil, fmt.Errorf("ext4: superblock s_blocks_count %d × %d-byte blocks = %d bytes, the device has %d",
			f.blocks, f.bs, f.blocks*f.bs, size)
	}
	in.Blocks = f.blocks
	in.Inodes, in.FreeInodes = le.Uint32(sb[0x00:]), le.Uint32(sb[0x10:])
	f.firstData = int64(le.Uint32(sb[0x14:]))
	f.bpg = int64(le.Uint32(sb[0x20:]))
	f.ipg = int64(le.Uint32(sb[0x28:]))
	if f.firstData >= f.blocks || f.bpg < 8 || f.bpg > 8*f.bs || f.ipg == 0 || f.ipg > 8*f.bs {
		return nil, fmt.Errorf("ext4: superblock first data block %d, blocks per group %d, inodes per group %d do not fit %d-byte blocks",
			f.firstData, f.bpg, f.ipg, f.bs)
	}
	f.groups = (f.blocks - f.firstData + f.bpg - 1) / f.bpg
	if int64(in.Inodes) > f.ipg*f.groups || in.Inodes < rootIno2 {
		return nil, fmt.Errorf("ext4: superblock s_inodes_count %d, but %d groups × %d inodes per group", in.Inodes, f.groups, f.ipg)
	}
	f.inodeSize = 128
	if le.Uint32(sb[0x4C:]) >= 1 { // s_rev_level: dynamic revision has s_inode_size at 0x58
		f.inodeSize = int64(le.Uint16(sb[0x58:]))
	}
	if f.inodeSize < 128 || f.inodeSize > f.bs || f.inodeSize&(f.inodeSize-1) != 0 {
		return nil, fmt.Errorf("ext4: superblock s_inode_size %d at byte %d is not a power of two in [128, %d]", f.inodeSize, sbOffset+0x58, f.bs)
	}
	f.descSize = 32
	if is64 {
		f.descSize = int64(le.Uint16(sb[0xFE:])) // s_desc_size
		if f.descSize < 64 || f.descSize > 1024 || f.descSize&(f.descSize-1) != 0 {
			return nil, fmt.Errorf("ext4: superblock s_desc_size %d at byte %d is not a power of two in [64, 1024]", f.descSize, sbOffset+0xFE)
		}
	}
	f.firstMeta = int64(le.Uint32(sb[0x104:]))
	f.backupBgs = [2]int64{int64(le.Uint32(sb[0x24C:])), int64(le.Uint32(sb[0x250:]))}
	copy(in.UUID[:], sb[0x68:0x78])
	in.Label = cString(sb[0x78:0x88])
	return f, nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// groupHasSuper reports whether group g holds a superblock backup [doc:super, "sparse_super"].
func (f *readFS) groupHasSuper(g int64) bool {
	switch {
	case g == 0:
		return true
	case f.info.Compat&compSparse2 != 0:
		return g == f.backupBgs[0] || g == f.backupBgs[1]
	case f.info.ROCompat&roSparse == 0:
		return true
	}
	return hasSuper(g)
}

// descOffset is the byte offset of group g's descriptor [doc:group_descr; doc:blockgroup "meta_bg"].
func (f *readFS) descOffset(g int64) int64 {
	perBlock := f.bs / f.descSize
	mg := g / perBlock
	if f.info.Incompat&incMetaBg != 0 && mg >= f.firstMeta {
		first := mg * perBlock // the meta group's descriptors sit in its first group, after a backup superblock
		blk := f.firstData + first*f.bpg
		if f.groupHasSuper(first) {
			blk++
		}
		return blk*f.bs + (g%perBlock)*f.descSize
	}
	return (f.firstData+1+mg)*f.bs + (g%perBlock)*f.descSize
}

// rinode is the part of an inode the reader uses [doc:inodes].
type rinode struct {
	ino      uint32
	mode     uint16
	uid, gid uint32
	size     int64
	mtime    int64
	mnsec    uint32
	nlink    uint32
	flags    uint32
	blocks   uint64 // i_blocks, 512-byte units (huge_file ignored: only used to tell fast symlinks)
	fileACL  uint64
	iblock   [60]byte
}

func (f *readFS) inode(ino uint32) (*rinode, error) {
	if ino < 1 || ino > f.info.Inodes {
		return nil, fmt.Errorf("ext4: inode %d out of range [1, %d]", ino, f.info.Inodes)
	}
	g, idx := int64(ino-1)/f.ipg, int64(ino-1)%f.ipg
	d := make([]byte, 0x2C)
	if err := f.readAt(d[:min(f.descSize, 0x2C)], f.descOffset(g), "group %d descriptor", g); err != nil {
		return nil, err
	}
	// [doc:group_descr]: bg_inode_table_lo at 0x08, _hi at 0x28 (64-byte descriptors).
	table := int64(le.Uint32(d[0x08:]))
	if f.descSize >= 64 {
		table |= int64(le.Uint32(d[0x28:])) << 32
	}
	if table <= 0 || table >= f.blocks {
		return nil, fmt.Errorf("ext4: group %d inode table at block %d, outside the %d-block filesystem", g, table, f.blocks)
	}
	b := make([]byte, min(f.inodeSize, 0xA0))
	if err := f.readAt(b, table*f.bs+idx*f.inodeSize, "inode %d", ino); err != nil {
		return nil, err
	}
	n := &rinode{ino: ino}
	n.mode = le.Uint16(b[0x00:])
	n.uid = uint32(le.Uint16(b[0x02:])) | uint32(le.Uint16(b[0x78:]))<<16
	n.gid = uint32(le.Uint16(b[0x18:])) | uint32(le.Uint16(b[0x7A:]))<<16
	n.size = int64(uint64(le.Uint32(b[0x04:])) | uint64(le.Uint32(b[0x6C:]))<<32)
	n.nlink = uint32(le.Uint16(b[0x1A:]))
	n.blocks = uint64(le.Uint32(b[0x1C:])) | uint64(le.Uint16(b[0x74:]))<<32
	n.flags = le.Uint32(b[0x20:])
	n.fileACL = uint64(le.Uint32(b[0x68:])) | uint64(le.Uint16(b[0x76:]))<<32
	copy(n.iblock[:], b[0x28:0x64])
	n.mtime = int64(int32(le.Uint32(b[0x10:])))
	// i_extra_isize at 0x80; i_mtime_extra at 0x88: epoch bits 0-1, nanoseconds << 2 (EXT4.md §5).
	if len(b) >= 0x8C && 0x80+int(le.Uint16(b[0x80:])) >= 0x8C {
		x := le.Uint32(b[0x88:])
		n.mtime += int64(x&3) << 32
		n.mnsec = min(x>>2, 999999999)
	}
	if n.size < 0 || n.size > f.bs<<32 {
		return nil, fmt.Errorf("ext4: inode %d size %d beyond what %d-byte blocks can map", ino, n.size, f.bs)
	}
	return n, nil
}

// fastSymlink reports whether a symlink's target is stored in i_block (EXT4.md §5).
func (f *readFS) fastSymlink(n *rinode) bool {
	if n.flags&(flExtents|flInline) != 0 || n.size >= 60 {
		return false
	}
	eaBlocks := uint64(0)
	if n.fileACL != 0 {
		eaBlocks = uint64(f.bs / 512)
	}
	return n.blocks <= eaBlocks
}

// mapBlock maps logical block lb of n: it returns the physical block (0 for a hole) and how many blocks
// from lb on map contiguously (at least 1).
func (f *readFS) mapBlock(n *rinode, lb int64) (int64, int64, error) {
	if n.flags&flInline != 0 {
		return 0, 0, fmt.Errorf("ext4: inode %d has inline data, which is not supported", n.ino)
	}
	if n.flags&flExtents != 0 {
		return f.mapExtent(n, lb)
	}
	return f.mapIndirect(n, lb)
}

// mapExtent walks the extent tree [doc:ifork]: header (magic 0x0, entries 0x2, max 0x4, depth 0x6),
// then 12-byte index entries (ei_block 0x0, ei_leaf_lo 0x4, ei_leaf_hi 0x8) or leaves (ee_block 0x0,
// ee_len 0x4, ee_start_hi 0x6, ee_start_lo 0x8).
func (f *readFS) mapExtent(n *rinode, lb int64) (int64, int64, error) {
	node := n.iblock[:]
	depth := -1
	limit := int64(1) << 32 // where the subtree being searched ends (the next index entry's start)
	for level := 0; ; level++ {
		if len(node) < 12 || le.Uint16(node[0:]) != extMagic {
			return 0, 0, fmt.Errorf("ext4: inode %d extent tree level %d: bad header magic", n.ino, level)
		}
		entries, d := int(le.Uint16(node[2:])), int(le.Uint16(node[6:]))
		if depth >= 0 && d != depth-1 || d > maxDepth {
			return 0, 0, fmt.Errorf("ext4: inode %d extent tree level %d: depth %d (parent depth %d, max %d)", n.ino, level, d, depth, maxDepth)
		}
		depth = d
		if 12+12*entries > len(node) {
			return 0, 0, fmt.Errorf("ext4: inode %d extent tree level %d: %d entries do not fit %d bytes", n.ino, level, entries, len(node))
		}
		// The last entry starting at or before lb, and where the next one starts.
		i := -1
		next := limit
		for k := 0; k < entries; k++ {
			start := int64(le.Uint32(node[12+12*k:]))
			if start > lb {
				next = min(start, limit)
				break
			}
			i = k
		}
		if i < 0 {
			return 0, next - lb, nil // hole before the first entry
		}
		e := node[12+12*i:]
		if d == 0 {
			start := int64(le.Uint32(e[0:]))
			length := int64(le.Uint16(e[4:]))
			uninit := length > 32768 // EXT4.md §6: lengths above 32768 are uninitialised
			if uninit {
				length -= 32768
			}
			phys := int64(le.Uint16(e[6:]))<<32 | int64(le.Uint32(e[8:]))
			if lb >= start+length {
				return 0, next - lb, nil // hole after this extent
			}
			if !uninit && (phys < 0 || phys >= f.blocks || length > f.blocks-phys) {
				return 0, 0, fmt.Errorf("ext4: inode %d extent (logical %d, %d blocks) maps blocks [%d, +%d) outside the %d-block filesystem",
					n.ino, start, length, phys, length, f.blocks)
			}
			if uninit {
				return 0, start + length - lb, nil
			}
			return phys + lb - start, start + length - lb, nil
		}
		limit = next
		child := int64(le.Uint16(e[8:]))<<32 | int64(le.Uint32(e[4:]))
		if child <= f.firstData || child >= f.blocks {
			return 0, 0, fmt.Errorf("ext4: inode %d extent index (level %d) points at block %d outside the %d-block filesystem", n.ino, level, child, f.blocks)
		}
		buf := make([]byte, f.bs)
		if err := f.readAt(buf, child*f.bs, "inode %d extent block %d", n.ino, child); err != nil {
			return 0, 0, err
		}
		node = buf
	}
}

// mapIndirect follows the ext2/ext3 block map [doc:blockmap]: i_block[0..11] direct, [12] indirect,
// [13] double, [14] triple indirect; each pointer block holds bs/4 little-endian block numbers.
func (f *readFS) mapIndirect(n *rinode, lb int64) (int64, int64, error) {
	per := f.bs / 4
	ptr := func(blk int64, idx int64) (int64, error) {
		if blk == 0 {
			return 0, nil
		}
		if blk >= f.blocks {
			return 0, fmt.Errorf("ext4: inode %d indirect block %d outside the %d-block filesystem", n.ino, blk, f.blocks)
		}
		var b [4]byte
		if err := f.readAt(b[:], blk*f.bs+idx*4, "inode %d indirect block %d", n.ino, blk); err != nil {
			return 0, err
		}
		return int64(le.Uint32(b[:])), nil
	}
	var path []int64 // indexes below the i_block slot
	slot := lb
	switch {
	case lb < 12:
	case lb-12 < per:
		slot, path = 12, []int64{lb - 12}
	case lb-12-per < per*per:
		x := lb - 12 - per
		slot, path = 13, []int64{x / per, x % per}
	case lb-12-per-per*per < per*per*per:
		x := lb - 12 - per - per*per
		slot, path = 14, []int64{x / (per * per), x / per % per, x % per}
	default:
		return 0, 1, nil
	}
	blk := int64(le.Uint32(n.iblock[4*slot:]))
	for _, idx := range path {
		var err error
		if blk, err = ptr(blk, idx); err != nil {
			return 0, 0, err
		}
	}
	if blk >= f.blocks {
		return 0, 0, fmt.Errorf("ext4: inode %d logical block %d maps to block %d outside the %d-block filesystem", n.ino, lb, blk, f.blocks)
	}
	return blk, 1, nil
}

// contents reads a file's bytes through its block map; holes read as zeros.
type contents struct {
	f *readFS
	n *rinode
}

func (c *contents) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("ext4: negative offset")
	}
	if off >= c.n.size {
		return 0, io.EOF
	}
	want := len(p)
	p = p[:min(int64(len(p)), c.n.size-off)]
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		lb := pos / c.f.bs
		phys, run, err := c.f.mapBlock(c.n, lb)
		if err != nil {
			return done, err
		}
		k := int(min(int64(len(p)-done), run*c.f.bs-pos%c.f.bs))
		if phys == 0 {
			clear(p[done : done+k])
		} else if err := c.f.readAt(p[done:done+k], phys*c.f.bs+pos%c.f.bs, "inode %d data", c.n.ino); err != nil {
			return done, err
		}
		done += k
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}

// eachEntry calls fn for every live entry of directory n except "." and "..", in on-disk order, until fn
// returns false [doc:directory]: inode 0x0, rec_len 0x4, name_len 0x6 (u8 with filetype, else u16),
// file_type 0x7, name 0x8. htree index blocks look like one empty entry spanning the block (EXT4.md §7).
func (f *readFS) eachEntry(n *rinode, fn func(name string, ino uint32, typ uint8) bool) error {
	if n.size%f.bs != 0 || n.size > maxDir {
		return fmt.Errorf("ext4: directory inode %d has size %d (want a multiple of %d up to %d)", n.ino, n.size, f.bs, maxDir)
	}
	blk := make([]byte, f.bs)
	for b := int64(0); b < n.size/f.bs; b++ {
		phys, _, err := f.mapBlock(n, b)
		if err != nil {
			return err
		}
		if phys == 0 { // the kernel refuses holes in directories too
			return fmt.Errorf("ext4: directory inode %d has a hole at block %d", n.ino, b)
		}
		if err := f.readAt(blk, phys*f.bs, "directory inode %d block %d", n.ino, b); err != nil {
			return err
		}
		for off := int64(0); off < f.bs; {
			e := blk[off:]
			if len(e) < 8 {
				return fmt.Errorf("ext4: directory inode %d block %d offset %d: truncated entry", n.ino, b, off)
			}
			ino := le.Uint32(e[0:])
			rl := int64(le.Uint16(e[4:]))
			if f.bs == 65536 && (rl == 65535 || rl == 0) { // ext4_rec_len_from_disk
				rl = 65536
			} else {
				rl = rl&65532 | (rl&3)<<16
			}
			nameLen := int64(e[6])
			typ := e[7]
			if f.info.Incompat&incFiletype == 0 {
				nameLen, typ = int64(le.Uint16(e[6:])), 0
			}
			if rl < 8 || rl%4 != 0 || off+rl > f.bs || 8+nameLen > rl {
				return fmt.Errorf("ext4: directory inode %d block %d offset %d: rec_len %d, name_len %d do not fit the %d-byte block",
					n.ino, b, off, rl, nameLen, f.bs)
			}
			off += rl
			if ino == 0 {
				continue
			}
			name := string(e[8 : 8+nameLen])
			if name == "." || name == ".." {
				continue
			}
			if name == "" || strings.ContainsAny(name, "/\x00") {
				return fmt.Errorf("ext4: directory inode %d block %d offset %d: invalid name %q", n.ino, b, off-rl, name)
			}
			if ino > f.info.Inodes {
				return fmt.Errorf("ext4: directory inode %d entry %q: inode %d beyond s_inodes_count %d", n.ino, name, ino, f.info.Inodes)
			}
			if !fn(name, ino, typ) {
				return nil
			}
		}
	}
	return nil
}

func (f *readFS) lookup(dir *rinode, name string) (*rinode, error) {
	var found uint32
	if err := f.eachEntry(dir, func(nm string, ino uint32, _ uint8) bool {
		if nm == name {
			found = ino
			return false
		}
		return true
	}); err != nil {
		return nil, err
	}
	if found == 0 {
		return nil, fs.ErrNotExist
	}
	return f.inode(found)
}

func (f *readFS) readLink(n *rinode) (string, error) {
	if n.size > maxLink {
		return "", fmt.Errorf("ext4: symlink inode %d target of %d bytes (max %d)", n.ino, n.size, maxLink)
	}
	if f.fastSymlink(n) {
		return string(n.iblock[:n.size]), nil
	}
	b := make([]byte, n.size)
	if _, err := (&contents{f: f, n: n}).ReadAt(b, 0); err != nil && err != io.EOF {
		return "", err
	}
	return string(b), nil
}

// root is the node of inode 2, read afresh for every path lookup.
func (f *readFS) root() (node, error) {
	n, err := f.inode(rootIno2)
	if err != nil {
		return nil, err
	}
	return &diskNode{f: f, n: n}, nil
}

// diskNode is a node of the FS that Open returns: an inode read from the device.
type diskNode struct {
	f *readFS
	n *rinode
}

func (d *diskNode) attrs() nodeAttrs {
	return nodeAttrs{mode: d.n.mode, size: d.n.size, mtime: d.n.mtime, mnsec: d.n.mnsec}
}

// sys decodes device numbers from i_block (EXT4.md §5).
func (d *diskNode) sys() *Stat {
	n := d.n
	st := &Stat{Ino: n.ino, Nlink: n.nlink, Uid: n.uid, Gid: n.gid}
	if t := n.mode & sIFMT; t == sIFCHR || t == sIFBLK {
		if old := le.Uint32(n.iblock[0:]); old != 0 {
			st.Major, st.Minor = old>>8&0xFF, old&0xFF
		} else {
			x := le.Uint32(n.iblock[4:])
			st.Major, st.Minor = x>>8&0xFFF, x&0xFF|x>>12&0xFFF00
		}
	}
	return st
}

func (d *diskNode) lookup(name string) (node, error) {
	c, err := d.f.lookup(d.n, name)
	if err != nil {
		return nil, err
	}
	return &diskNode{f: d.f, n: c}, nil
}

func (d *diskNode) readLink() (string, error) { return d.f.readLink(d.n) }

// list reads each entry's inode as it lists it, then sorts by name.
func (d *diskNode) list() ([]namedNode, error) {
	var out []namedNode
	var ierr error
	err := d.f.eachEntry(d.n, func(name string, ino uint32, _ uint8) bool {
		c, err := d.f.inode(ino)
		if err != nil {
			ierr = fmt.Errorf("entry %q: %w", name, err)
			return false
		}
		out = append(out, namedNode{name, &diskNode{f: d.f, n: c}})
		return true
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b namedNode) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// contents refuses inline data, which mapBlock cannot read.
func (d *diskNode) contents() (io.ReaderAt, error) {
	if d.n.flags&flInline != 0 {
		return nil, fmt.Errorf("inode %d has inline data, which is not supported", d.n.ino)
	}
	return &contents{f: d.f, n: d.n}, nil
}
