package erofs

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
)

// On-disk constants (include/uapi/linux/erofs_fs.h, fs/erofs/erofs_fs.h).
const (
	sbOffset          = 1024
	sbSize            = 128
	magic             = 0xE0F5E1E2
	featureCompatCsum = 0x1 // EROFS_FEATURE_COMPAT_SB_CHKSUM
	layoutFlatPlain   = 0   // EROFS_INODE_FLAT_PLAIN
	layoutFlatInline  = 2   // EROFS_INODE_FLAT_INLINE
	maxRootNid        = 1<<16 - 1
)

// EROFS_FT_* dirent file types.
const (
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSymlink = 7
)

// Close lays out inodes (with their xattrs and inline tails) in the metadata area after the data, then
// the directories' whole dirent blocks, and finally writes the superblock. After Close the filesystem
// occupies exactly Size() bytes of dst, all of them written.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("erofs: Close called twice")
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if err := w.close(); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *Writer) close() error {
	resolved, err := w.resolveHardlinks()
	if err != nil {
		return err
	}
	order, err := w.number(resolved)
	if err != nil {
		return err
	}
	metaBlk := w.cur

	// Place every inode record (inode, xattrs, inline tail) in 32-byte slots, never across a block.
	var off int64
	for _, n := range order {
		rec := int64(inodeSize + n.xsize + n.inlineLen())
		if off%bs+rec > bs {
			off = roundUp(off, bs)
		}
		n.nid = uint64(off / slotSize)
		off += roundUp(rec, slotSize)
	}
	if w.root.nid > maxRootNid {
		return fmt.Errorf("erofs: root nid %d does not fit 16 bits", w.root.nid)
	}
	dirStart := metaBlk + roundUp(off, bs)/bs
	next := dirStart
	for _, n := range order {
		if !n.isDir() {
			continue
		}
		k := int64(len(n.dirBlks))
		if n.inline {
			k--
		}
		n.blkaddr = 0
		if k > 0 {
			n.blkaddr = uint32(next)
		}
		next += k
	}
	if next > maxBlocks {
		return fmt.Errorf("erofs: image of %d blocks exceeds 2^32 blocks (16 TiB)", next)
	}
	if err := w.room(next); err != nil {
		return err
	}

	// Metadata area.
	sw := &seqWriter{dst: w.dst, off: metaBlk * bs}
	for _, n := range order {
		sw.padTo(metaBlk*bs + int64(n.nid)*slotSize)
		sw.write(n.encode())
		if n.xsize > 0 {
			sw.write(encodeXattrs(n.xattrs, n.xsize))
		}
		switch {
		case !n.inline:
		case n.isDir():
			ents := n.entries()
			first := len(ents) - n.dirBlks[len(n.dirBlks)-1]
			sw.write(dirBlock(ents[first:]))
		default:
			sw.write(n.tail)
		}
	}
	sw.padTo(dirStart * bs)
	// Whole dirent blocks.
	for _, n := range order {
		if !n.isDir() {
			continue
		}
		k := len(n.dirBlks)
		if n.inline {
			k--
		}
		if k == 0 {
			continue
		}
		ents := n.entries()
		for _, c := range n.dirBlks[:k] {
			b := dirBlock(ents[:c])
			sw.write(b)
			sw.write(zeroBlock[:bs-len(b)])
			ents = ents[c:]
		}
	}
	if err := sw.flush(); err != nil {
		return err
	}
	if sw.pos() != next*bs {
		return fmt.Errorf("erofs: internal error: wrote up to %d, expected %d", sw.pos(), next*bs)
	}

	sb := w.superblock(uint64(len(order)), uint32(next), uint32(metaBlk))
	if _, err := w.dst.WriteAt(sb, 0); err != nil {
		return fmt.Errorf("erofs: writing superblock: %w", err)
	}
	w.size = next * bs
	return nil
}

var zeroBlock [bs]byte

func roundUp(x, m int64) int64 { return (x + m - 1) / m * m }

// resolveHardlinks points every placeholder at its final target, now that the whole stream is in.
func (w *Writer) resolveHardlinks() (map[*inode]*inode, error) {
	resolved := make(map[*inode]*inode, len(w.pending))
	for _, p := range w.pending {
		ph := w.paths[p]
		t := ph
		for hops := 0; t.placeholder; hops++ {
			next, ok := w.paths[t.link]
			if !ok {
				return nil, fmt.Errorf("erofs: hardlink %q: target %q is not in the stream", p, t.link)
			}
			if hops > len(w.pending) {
				return nil, fmt.Errorf("erofs: hardlink %q: loop through %q", p, t.link)
			}
			t = next
		}
		if t.isDir() {
			return nil, fmt.Errorf("erofs: hardlink %q: target %q is a directory", p, ph.link)
		}
		if uint64(t.nlink)+uint64(ph.nlink) > maxLinks {
			return nil, fmt.Errorf("erofs: hardlink %q: target %q has too many links", p, ph.link)
		}
		if ph != t {
			t.nlink += ph.nlink
			ph.nlink = 0
		}
		resolved[ph] = t
		w.paths[p] = t
	}
	return resolved, nil
}

// number sorts directories by name, counts directory links, splits directories into dirent blocks and
// returns the inodes in nid order: the root, then a sorted walk in which each directory's children are
// numbered together before descending into its subdirectories.
func (w *Writer) number(resolved map[*inode]*inode) ([]*inode, error) {
	var order []*inode
	visit := func(n *inode) {
		if !n.placed {
			n.placed = true
			n.ino = uint32(len(order) + 1)
			order = append(order, n)
		}
	}
	var walk func(d *inode) error
	walk = func(d *inode) error {
		sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
		nlink := uint64(2)
		for i := range d.children {
			c := &d.children[i]
			if r, ok := resolved[c.n]; ok {
				c.n = r
			}
			if c.n.isDir() {
				nlink++
			}
			visit(c.n)
		}
		if nlink > maxLinks {
			return fmt.Errorf("erofs: directory with %d subdirectories", nlink-2)
		}
		d.nlink = uint32(nlink)
		d.splitDir()
		for _, c := range d.children {
			if c.n.isDir() {
				if err := walk(c.n); err != nil {
					return err
				}
			}
		}
		return nil
	}
	visit(w.root)
	if err := walk(w.root); err != nil {
		return nil, err
	}
	return order, nil
}

// entries is a directory's dirents with "." and "..", sorted by name bytes (as the kernel's binary search
// in erofs_namei expects).
func (n *inode) entries() []dirent {
	ents := make([]dirent, 0, len(n.children)+2)
	ents = append(ents, dirent{".", n}, dirent{"..", n.parent})
	ents = append(ents, n.children...)
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	return ents
}

// splitDir fills dirent blocks greedily (each block holds its dirents, then their names) and decides
// whether the last block is stored inline after the inode.
func (n *inode) splitDir() {
	n.dirBlks = n.dirBlks[:0]
	cnt, used := 0, 0
	for _, e := range n.entries() {
		sz := direntSize + len(e.name)
		if used+sz > bs {
			n.dirBlks = append(n.dirBlks, cnt)
			cnt, used = 0, 0
		}
		cnt++
		used += sz
	}
	n.dirBlks = append(n.dirBlks, cnt)
	n.dirLast = used
	n.size = int64(len(n.dirBlks)-1)*bs + int64(used)
	n.inline = used < bs && inodeSize+n.xsize+used <= bs
}

// inlineLen is the number of data bytes stored after the inode and its xattrs.
func (n *inode) inlineLen() int {
	switch {
	case !n.inline:
		return 0
	case n.isDir():
		return n.dirLast
	default:
		return len(n.tail)
	}
}

// dirBlock encodes one dirent block's used bytes: the 12-byte dirents, then the names.
func dirBlock(ents []dirent) []byte {
	size := 0
	for _, e := range ents {
		size += direntSize + len(e.name)
	}
	b := make([]byte, direntSize*len(ents), size)
	nameoff := len(b)
	for i, e := range ents {
		d := b[i*direntSize:]
		le.PutUint64(d, e.n.nid)
		le.PutUint16(d[8:], uint16(nameoff))
		d[10] = fileType(e.n.mode)
		nameoff += len(e.name)
	}
	for _, e := range ents {
		b = append(b, e.name...)
	}
	return b
}

func fileType(mode uint16) uint8 {
	switch mode & sIFMT {
	case sIFREG:
		return ftReg
	case sIFDIR:
		return ftDir
	case sIFCHR:
		return ftChr
	case sIFBLK:
		return ftBlk
	case sIFIFO:
		return ftFifo
	case sIFLNK:
		return ftSymlink
	}
	return 0
}

// encode is the 64-byte extended inode (struct erofs_inode_extended).
func (n *inode) encode() []byte {
	b := make([]byte, inodeSize)
	layout := uint16(layoutFlatPlain)
	if n.inline {
		layout = layoutFlatInline
	}
	le.PutUint16(b[0:], 1|layout<<1) // i_format: extended, data layout
	if n.xsize > 0 {
		le.PutUint16(b[2:], uint16((n.xsize-xhdrSize)/4+1)) // i_xattr_icount
	}
	le.PutUint16(b[4:], n.mode)
	le.PutUint64(b[8:], uint64(n.size))
	switch n.mode & sIFMT {
	case sIFCHR, sIFBLK:
		le.PutUint32(b[16:], n.rdev)
	case sIFREG, sIFDIR, sIFLNK:
		le.PutUint32(b[16:], n.blkaddr)
	}
	le.PutUint32(b[20:], n.ino)
	le.PutUint32(b[24:], n.uid)
	le.PutUint32(b[28:], n.gid)
	le.PutUint64(b[32:], uint64(n.mtime))
	le.PutUint32(b[40:], n.mnsec)
	le.PutUint32(b[44:], n.nlink)
	return b
}

// encodeXattrs is the inline xattr area: erofs_xattr_ibody_header (no shared xattrs), then the entries,
// each 4-byte aligned.
func encodeXattrs(xs []xattr, size int) []byte {
	b := make([]byte, xhdrSize, size)
	for _, x := range xs {
		e := len(b)
		b = append(b, uint8(len(x.name)), x.index, 0, 0)
		le.PutUint16(b[e+2:], uint16(len(x.value)))
		b = append(b, x.name...)
		b = append(b, x.value...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

// superblock is block 0: 1024 zero bytes, struct erofs_super_block, zeros to the end of the block.
func (w *Writer) superblock(inos uint64, blocks, metaBlk uint32) []byte {
	blk := make([]byte, bs)
	s := blk[sbOffset : sbOffset+sbSize]
	le.PutUint32(s[0:], magic)
	le.PutUint32(s[8:], featureCompatCsum)
	s[12] = blkBits
	le.PutUint16(s[14:], uint16(w.root.nid))
	le.PutUint64(s[16:], inos)
	le.PutUint64(s[24:], uint64(w.opts.Time))
	le.PutUint32(s[36:], blocks)
	le.PutUint32(s[40:], metaBlk)
	copy(s[48:64], w.opts.UUID[:])
	copy(s[64:80], w.opts.Label)
	// The kernel's crc32c(~0, sb, blksz - 1024) has no final inversion; Go's Checksum inverts.
	le.PutUint32(s[4:], ^crc32.Checksum(blk[sbOffset:], crc32.MakeTable(crc32.Castagnoli)))
	return blk
}

// seqWriter writes consecutive bytes to dst through a buffer; gaps are written as zeros.
type seqWriter struct {
	dst io.WriterAt
	off int64 // absolute offset of buf[0]
	buf []byte
	err error
}

func (s *seqWriter) pos() int64 { return s.off + int64(len(s.buf)) }

func (s *seqWriter) padTo(p int64) {
	if p < s.pos() && s.err == nil {
		s.err = fmt.Errorf("erofs: internal error: layout goes back from %d to %d", s.pos(), p)
	}
	for s.pos() < p {
		s.write(zeroBlock[:min(p-s.pos(), bs)])
	}
}

func (s *seqWriter) write(p []byte) {
	s.buf = append(s.buf, p...)
	if len(s.buf) >= 1<<20 {
		s.flush()
	}
}

func (s *seqWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	if len(s.buf) > 0 {
		if _, err := s.dst.WriteAt(s.buf, s.off); err != nil {
			s.err = fmt.Errorf("erofs: writing metadata at %d: %w", s.off, err)
			return s.err
		}
		s.off += int64(len(s.buf))
		s.buf = s.buf[:0]
	}
	return nil
}
