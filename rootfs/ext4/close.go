package ext4

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// tail is the placement of the metadata that follows the data: bitmaps, inode tables and the journal.
type tail struct {
	bb, ib, it []int64 // per group: block bitmap, inode bitmap, inode table start
	jext       []extent
	jtree      []int64
	gaps       []run
	end        int64
}

// Close writes inode tables, directories, bitmaps, group descriptors, superblocks (primary and backups) and
// the journal. After Close the filesystem occupies exactly Size() bytes of dst (its last block is written).
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("ext4: Close called twice")
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

// close runs the steps of Close in order; each step is one method below.
func (w *Writer) close() error {
	seed := crcRaw(0xFFFFFFFF, w.opts.UUID[:])
	resolved, err := w.resolveHardlinks()
	if err != nil {
		return err
	}
	w.numberInodes(resolved)
	maxIno := int64(len(w.byIno) - 1)
	if err := w.writeMetadata(seed); err != nil {
		return err
	}
	geo, t, err := w.finalGeometry(maxIno)
	if err != nil {
		return err
	}
	w.geo = geo
	jn, err := w.writeJournal(geo, t, seed)
	if err != nil {
		return err
	}
	gdt, tot, err := w.writeGroups(geo, t, maxIno, seed)
	if err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.writeSuperblocks(geo, w.superblock(geo, tot.freeBlocks, tot.freeInodes, jn), gdt); err != nil {
		return err
	}
	w.size = geo.blocks * bs
	w.stats.Inodes = maxIno
	w.stats.InodesTotal = geo.inodes()
	w.stats.BlocksTotal = geo.blocks
	w.stats.BlocksUsed = tot.usedBlocks
	return nil
}

// resolveHardlinks (step 1) points every placeholder at its final target, now that the whole stream is in.
func (w *Writer) resolveHardlinks() (map[*inode]*inode, error) {
	resolved := make(map[*inode]*inode, len(w.pending))
	for _, p := range w.pending {
		ph := w.paths[p]
		t := ph
		for hops := 0; t.placeholder; hops++ {
			next, ok := w.paths[t.link]
			if !ok {
				return nil, fmt.Errorf("ext4: hardlink %q: target %q is not in the stream", p, t.link)
			}
			if hops > len(w.pending) {
				return nil, fmt.Errorf("ext4: hardlink %q: loop through %q", p, t.link)
			}
			t = next
		}
		if t.isDir() {
			return nil, fmt.Errorf("ext4: hardlink %q: target %q is a directory", p, ph.link)
		}
		t.nlink += ph.nlink
		if t.nlink > maxLinks {
			return nil, fmt.Errorf("ext4: hardlink %q: target %q has %d links, more than %d", p, ph.link, t.nlink, maxLinks)
		}
		resolved[ph] = t
		w.paths[p] = t
	}
	return resolved, nil
}

// numberInodes (step 2) sorts directories by name and numbers inodes in a sorted tree walk into w.byIno:
// root 2, lost+found 11, the rest from 12.
func (w *Writer) numberInodes(resolved map[*inode]*inode) {
	byIno := make([]*inode, firstIno, firstIno+w.nInodes)
	byIno[rootIno], byIno[lostFoundIno] = w.root, w.lf
	w.byIno = numberDir(w.root, resolved, byIno)
}

// numberDir numbers d's children (after d's earlier siblings), sets d's link count, then recurses into its
// subdirectories; it returns byIno with the new inodes appended.
func numberDir(d *inode, resolved map[*inode]*inode, byIno []*inode) []*inode {
	for i := range d.children {
		if t, ok := resolved[d.children[i].n]; ok {
			d.children[i].n = t
		}
	}
	sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
	sub := uint32(0)
	for _, c := range d.children {
		if c.n.ino == 0 {
			c.n.ino = uint32(len(byIno))
			byIno = append(byIno, c.n)
		}
		if c.n.isDir() {
			sub++
		}
	}
	d.nlink = 2 + sub
	if d.nlink > maxLinks {
		d.nlink = 1 // dir_nlink (EXT4.md §9)
	}
	for _, c := range d.children {
		if c.n.isDir() {
			byIno = numberDir(c.n, resolved, byIno)
		}
	}
	return byIno
}

// writeMetadata (step 3) appends directory blocks, slow symlinks, extent trees and EA blocks after the data.
func (w *Writer) writeMetadata(seed uint32) error {
	w.metaFrom = w.cur
	for _, n := range w.byIno {
		if n == nil {
			continue
		}
		if err := w.writeInodeMeta(n, seed); err != nil {
			return err
		}
	}
	return nil
}

// writeInodeMeta appends the blocks of one inode that live outside it: directory or slow symlink blocks,
// then its extent tree (more than 4 extents), then its EA block (xattrs that do not fit in the inode).
func (w *Writer) writeInodeMeta(n *inode, seed uint32) error {
	switch n.mode & sIFMT {
	case sIFDIR:
		if err := w.writeDir(n, seed); err != nil {
			return err
		}
	case sIFLNK:
		if len(n.link) >= 60 {
			p, b, err := w.appendBlock()
			if err != nil {
				return err
			}
			copy(b, n.link)
			n.ext = []extent{{log: 0, len: 1, phys: p}}
		}
	}
	if len(n.ext) > 4 {
		var err error
		n.rootIdx, n.depth, n.nTree, err = buildTree(n.ino, n.ext, seed, w.appendBlock)
		if err != nil {
			return err
		}
	}
	if n.nInline < len(n.xattrs) {
		p, b, err := w.appendBlock()
		if err != nil {
			return err
		}
		n.eaBlock = p
		putEABlock(b, n.xattrs[n.nInline:], p, seed)
	}
	return nil
}

// finalGeometry (step 4) fixes the final geometry and places bitmaps, inode tables and the journal; it
// fails when maxIno inodes or the placed metadata do not fit.
func (w *Writer) finalGeometry(maxIno int64) (geometry, tail, error) {
	var geo geometry
	var t tail
	if w.auto {
		var err error
		geo, t, err = w.autoGeometry(maxIno + maxIno/4)
		if err != nil {
			return geometry{}, tail{}, err
		}
	} else {
		geo = w.prov
		t = w.layoutTail(geo, w.cur)
	}
	if maxIno > geo.inodes() {
		return geometry{}, tail{}, fmt.Errorf("ext4: out of inodes: %d needed, filesystem of %d MiB has %d", maxIno, geo.blocks*bs>>20, geo.inodes())
	}
	if t.end > geo.blocks {
		return geometry{}, tail{}, fmt.Errorf("ext4: %w: %d MiB of file data and %d MiB of metadata, filesystem is %d MiB",
			ErrFull, w.stats.DataBytes>>20, (t.end-w.metaFrom)*bs>>20, geo.blocks*bs>>20)
	}
	return geo, t, nil
}

// writeJournal (step 5) makes the journal inode 8 and writes the jbd2 superblock in its first block; the
// rest stays zero (EXT4.md §10). It returns nil without a journal.
func (w *Writer) writeJournal(geo geometry, t tail, seed uint32) (*inode, error) {
	if w.opts.NoJournal {
		return nil, nil
	}
	T := w.opts.Time
	J := journalBlocks(geo.blocks)
	jn := &inode{mode: sIFREG | 0600, nlink: 1, ino: journalIno, size: J * bs, atime: T, mtime: T, ctime: T, ext: t.jext}
	if len(t.jext) > 4 {
		k := 0
		alloc := func() (int64, []byte, error) {
			p := t.jtree[k]
			k++
			b, err := w.slotAt(p)
			return p, b, err
		}
		var err error
		jn.rootIdx, jn.depth, jn.nTree, err = buildTree(journalIno, t.jext, seed, alloc)
		if err != nil {
			return nil, err
		}
	}
	b, err := w.slotAt(t.jext[0].phys)
	if err != nil {
		return nil, err
	}
	be.PutUint32(b[0x0:], 0xC03B3998) // jbd2 magic
	be.PutUint32(b[0x4:], 4)          // superblock v2
	be.PutUint32(b[0xC:], bs)
	be.PutUint32(b[0x10:], uint32(J))
	be.PutUint32(b[0x14:], 1) // first log block
	be.PutUint32(b[0x18:], 1) // sequence
	copy(b[0x30:0x40], w.opts.UUID[:])
	be.PutUint32(b[0x40:], 1) // nr_users
	w.byIno[journalIno] = jn
	return jn, nil
}

// totals are the filesystem-wide counts step 6 gathers for the superblock and Stats.
type totals struct {
	freeBlocks, freeInodes, usedBlocks int64
}

// groupCounts is what step 6 works out about one block group for its descriptor.
type groupCounts struct {
	first  int64 // first inode number of the group
	usedIn int64 // inodes in use: a prefix of the group
	dirs   int64
	used   int64 // blocks in use
	bbCsum uint32
	ibCsum uint32
}

// writeGroups (step 6) writes every group's inode table, block and inode bitmaps, and returns the encoded
// group descriptors with the totals.
func (w *Writer) writeGroups(geo geometry, t tail, maxIno int64, seed uint32) ([]byte, totals, error) {
	gdt := make([]byte, geo.gdt*bs)
	ipg := int64(geo.ipg)
	gaps := append(w.gaps, t.gaps...)
	var tot totals
	bm := make([]byte, bs)
	for g := int64(0); g < geo.groups; g++ {
		gr := w.groupInodes(g, ipg, maxIno)
		if err := w.writeInodeTable(t.it[g], gr, seed); err != nil {
			return nil, totals{}, err
		}
		var err error
		if gr.used, gr.bbCsum, err = w.writeBlockBitmap(bm, geo, g, t, gaps, seed); err != nil {
			return nil, totals{}, err
		}
		if gr.ibCsum, err = w.writeInodeBitmap(bm, t.ib[g], gr.usedIn, ipg, seed); err != nil {
			return nil, totals{}, err
		}
		free := geo.groupBlocks(g) - gr.used
		tot.freeBlocks += free
		tot.usedBlocks += gr.used
		tot.freeInodes += ipg - gr.usedIn
		putDescriptor(gdt[g*descSize:(g+1)*descSize], geo, g, t, gr, free, seed)
	}
	return gdt, tot, nil
}

// groupInodes finds group g's inodes, [g*ipg+1, g*ipg+ipg]: how many are in use and how many are directories.
func (w *Writer) groupInodes(g, ipg, maxIno int64) groupCounts {
	gr := groupCounts{first: g*ipg + 1}
	if maxIno >= gr.first {
		gr.usedIn = min(maxIno-gr.first+1, ipg)
	}
	for i := int64(0); i < gr.usedIn; i++ {
		ino := gr.first + i
		if ino < int64(len(w.byIno)) && w.byIno[ino] != nil && w.byIno[ino].isDir() {
			gr.dirs++
		}
	}
	return gr
}

// writeInodeTable writes the blocks of a group's inode table, starting at block it, that hold used inodes;
// the rest stays a hole.
func (w *Writer) writeInodeTable(it int64, gr groupCounts, seed uint32) error {
	for blk := int64(0); blk*inodesPerBlock < gr.usedIn; blk++ {
		b, err := w.slotAt(it + blk)
		if err != nil {
			return err
		}
		for k := int64(0); k < inodesPerBlock; k++ {
			ino := gr.first + blk*inodesPerBlock + k
			if ino < int64(len(w.byIno)) && w.byIno[ino] != nil {
				encodeInode(b[k*inodeSize:(k+1)*inodeSize], w.byIno[ino], w.opts.Time, seed)
			}
		}
	}
	return nil
}

// writeBlockBitmap builds group g's block bitmap in bm and writes it (EXT4.md §4): allocated = [group start,
// end of allocation) minus the provisional sb/GDT range and gaps, plus this geometry's sb/GDT range; padding
// past the end of the filesystem is 1. It returns the blocks in use and the bitmap checksum.
func (w *Writer) writeBlockBitmap(bm []byte, geo geometry, g int64, t tail, gaps []run, seed uint32) (int64, uint32, error) {
	clear(bm)
	gs := g * bpg
	gb := geo.groupBlocks(g)
	setBits(bm, 0, min(t.end-gs, gb))
	clearBits(bm, 0, w.prov.superEnd(g)-gs)
	setBits(bm, 0, geo.superEnd(g)-gs)
	for _, r := range gaps {
		clearBits(bm, r.start-gs, r.start+r.n-gs)
	}
	used := popcount(bm)
	setBits(bm, gb, bpg)
	csum := crcRaw(seed, bm)
	b, err := w.slotAt(t.bb[g])
	if err != nil {
		return 0, 0, err
	}
	copy(b, bm)
	return used, csum, nil
}

// writeInodeBitmap builds a group's inode bitmap in bm and writes it at block ib: used inodes are a prefix
// of the group; bits ipg..32767 are padding. It returns the checksum.
func (w *Writer) writeInodeBitmap(bm []byte, ib, usedIn, ipg int64, seed uint32) (uint32, error) {
	clear(bm)
	setBits(bm, 0, usedIn)
	setBits(bm, ipg, bpg)
	csum := crcRaw(seed, bm[:ipg/8])
	b, err := w.slotAt(ib)
	if err != nil {
		return 0, err
	}
	copy(b, bm)
	return csum, nil
}

// putDescriptor encodes group g's descriptor into d (EXT4.md §4).
func putDescriptor(d []byte, geo geometry, g int64, t tail, gr groupCounts, free int64, seed uint32) {
	ipg := int64(geo.ipg)
	put32x2(d, 0x00, 0x20, t.bb[g])
	put32x2(d, 0x04, 0x24, t.ib[g])
	put32x2(d, 0x08, 0x28, t.it[g])
	put16x2(d, 0x0C, 0x2C, free)
	put16x2(d, 0x0E, 0x2E, ipg-gr.usedIn)
	put16x2(d, 0x10, 0x30, gr.dirs)
	flags := uint16(0x4) // ITABLE_ZEROED
	if gr.usedIn == 0 {
		flags |= 0x1 // INODE_UNINIT
	}
	if gr.used == 0 && g != geo.groups-1 {
		flags |= 0x2 // BLOCK_UNINIT
	}
	le.PutUint16(d[0x12:], flags)
	put16x2(d, 0x18, 0x38, int64(gr.bbCsum))
	put16x2(d, 0x1A, 0x3A, int64(gr.ibCsum))
	put16x2(d, 0x1C, 0x32, ipg-gr.usedIn) // itable_unused
	c := crcRaw(crcU32(seed, uint32(g)), d)
	le.PutUint16(d[0x1E:], uint16(c))
}

// writeSuperblocks (step 7) writes the superblock sb and the descriptors gdt, primary and backups (EXT4.md §2,
// §3), then the filesystem's last block if nothing reached it, so that dst is exactly Size() bytes.
func (w *Writer) writeSuperblocks(geo geometry, sb, gdt []byte) error {
	blk := make([]byte, bs+len(gdt))
	copy(blk[bs:], gdt)
	for g := int64(0); g < geo.groups; g++ {
		if !hasSuper(g) {
			continue
		}
		clear(blk[:bs])
		if g == 0 {
			copy(blk[1024:2048], sb)
		} else {
			s := blk[:1024]
			copy(s, sb)
			le.PutUint16(s[0x5A:], uint16(g)) // s_block_group_nr
			le.PutUint16(s[0x3A:], 0)         // s_state: backups have VALID cleared
			le.PutUint32(s[0x3FC:], crcRaw(0xFFFFFFFF, s[:0x3FC]))
		}
		if err := w.writeBlocks(blk, g*bpg); err != nil {
			return err
		}
	}
	if w.hiBlock < geo.blocks {
		if err := w.writeBlocks(zeroBlock[:], geo.blocks-1); err != nil {
			return err
		}
	}
	return nil
}

// autoGeometry picks the final block count for Size==0: used blocks plus max(25%, 64 MiB) headroom, rounded
// up to a MiB, the last group grown to a useful size, capped at the provisional geometry. Every final sb/GDT
// range is inside a provisional one (same group numbers, smaller GDT), so no data sits where it must go.
func (w *Writer) autoGeometry(minInodes int64) (geometry, tail, error) {
	end := w.cur
	for iter := 0; iter < 100; iter++ {
		F := roundUp(end+max(end/4, 16384), 256)
		// At most 32768 inodes per group: enough groups for minInodes.
		if ng := ceilDiv(minInodes, bpg); ceilDiv(F, bpg) < ng {
			F = (ng-1)*bpg + 4096
		}
		capped := F >= w.prov.blocks
		var g geometry
		var err error
		if !capped {
			g, err = newGeometry(F, minInodes, true)
			if err != nil {
				return geometry{}, tail{}, err
			}
		}
		if capped || g.blocks > w.prov.blocks {
			g, capped = w.prov, true
		}
		t := w.layoutTail(g, w.cur)
		if t.end <= g.blocks && (capped || roundUp(t.end+max(t.end/4, 16384), 256) <= g.blocks) {
			return g, t, nil
		}
		if capped {
			return geometry{}, tail{}, fmt.Errorf("ext4: %w: %d MiB of file data and %d MiB of metadata, maximum size is %d MiB",
				ErrFull, w.stats.DataBytes>>20, (t.end-w.metaFrom)*bs>>20, w.prov.blocks*bs>>20)
		}
		end = max(end+1, t.end)
	}
	return geometry{}, tail{}, errors.New("ext4: automatic size did not converge")
}

// layoutTail places, from block cur on, the block bitmaps, inode bitmaps, inode tables (each contiguous) and
// the journal, skipping provisional sb/GDT ranges. It writes nothing.
func (w *Writer) layoutTail(g geometry, cur int64) tail {
	var t tail
	one := func() int64 {
		p := w.nextFree(cur)
		cur = p + 1
		return p
	}
	t.bb = make([]int64, g.groups)
	t.ib = make([]int64, g.groups)
	t.it = make([]int64, g.groups)
	for i := range t.bb {
		t.bb[i] = one()
	}
	for i := range t.ib {
		t.ib[i] = one()
	}
	for i := range t.it {
		p := w.nextFree(cur)
		for {
			ng := (p/bpg + 1) * bpg
			if p+g.itb > ng && w.prov.superEnd(ng/bpg) > ng {
				t.gaps = append(t.gaps, run{p, ng - p})
				p = w.prov.superEnd(ng / bpg)
				continue
			}
			break
		}
		t.it[i] = p
		cur = p + g.itb
	}
	if !w.opts.NoJournal {
		rem := journalBlocks(g.blocks)
		var log int64
		for rem > 0 {
			p := w.nextFree(cur)
			n := min(rem, (p/bpg+1)*bpg-p)
			t.jext = append(t.jext, extent{log: uint32(log), len: uint32(n), phys: p})
			cur, rem, log = p+n, rem-n, log+n
		}
		for k := treeBlocks(len(t.jext)); k > 0; k-- {
			t.jtree = append(t.jtree, one())
		}
	}
	t.end = cur
	return t
}

// slotAt returns a zeroed buffer for block p, written at the next flush.
func (w *Writer) slotAt(p int64) ([]byte, error) {
	if _, err := w.room(p, 1); err != nil {
		return nil, err
	}
	b := w.buf[w.bufN*bs : (w.bufN+1)*bs]
	clear(b)
	w.bufN++
	return b, nil
}

func setBits(b []byte, from, to int64) {
	from, to = max(from, 0), min(to, int64(len(b))*8)
	for i := from; i < to; i++ {
		if i&7 == 0 && to-i >= 8 {
			b[i>>3] = 0xFF
			i += 7
			continue
		}
		b[i>>3] |= 1 << (i & 7)
	}
}

func clearBits(b []byte, from, to int64) {
	from, to = max(from, 0), min(to, int64(len(b))*8)
	for i := from; i < to; i++ {
		if i&7 == 0 && to-i >= 8 {
			b[i>>3] = 0
			i += 7
			continue
		}
		b[i>>3] &^= 1 << (i & 7)
	}
}

func popcount(b []byte) int64 {
	var n int
	for i := 0; i+8 <= len(b); i += 8 {
		n += bits.OnesCount64(le.Uint64(b[i:]))
	}
	return int64(n)
}

func put32x2(d []byte, lo, hi int, v int64) {
	le.PutUint32(d[lo:], uint32(v))
	le.PutUint32(d[hi:], uint32(v>>32))
}

func put16x2(d []byte, lo, hi int, v int64) {
	le.PutUint16(d[lo:], uint16(v))
	le.PutUint16(d[hi:], uint16(v>>16))
}

func fileType(n *inode) byte {
	switch n.mode & sIFMT {
	case sIFREG:
		return 1
	case sIFDIR:
		return 2
	case sIFCHR:
		return 3
	case sIFBLK:
		return 4
	case sIFIFO:
		return 5
	case sIFSOCK:
		return 6
	case sIFLNK:
		return 7
	}
	return 0
}

// writeDir writes a linear directory: ".", "..", then entries sorted by name; each block ends with the
// checksum tail at 4084 (EXT4.md §7). lost+found gets at least 4 blocks (§11).
func (w *Writer) writeDir(d *inode, seed uint32) error {
	if d.ino != lostFoundIno && linearBlocks(d) >= 3 {
		return w.writeHtree(d, seed)
	}
	var blk []byte
	var off, last int
	var nb uint32
	finish := func() {
		if last < 0 {
			le.PutUint16(blk[4:], 4084)
		} else {
			le.PutUint16(blk[last+4:], uint16(4084-last))
		}
		le.PutUint16(blk[4088:], 12)
		blk[4091] = 0xDE
		c := crcRaw(crcU32(crcU32(seed, d.ino), 0), blk[:4084])
		le.PutUint32(blk[4092:], c)
	}
	start := func() error {
		p, b, err := w.appendBlock()
		if err != nil {
			return err
		}
		blk, off, last = b, 0, -1
		d.ext = addExtent(d.ext, nb, p)
		nb++
		return nil
	}
	add := func(name string, ino uint32, ft byte) error {
		rl := (8 + len(name) + 3) &^ 3
		if blk == nil || off+rl > 4084 {
			if blk != nil {
				finish()
			}
			if err := start(); err != nil {
				return err
			}
		}
		le.PutUint32(blk[off:], ino)
		le.PutUint16(blk[off+4:], uint16(rl))
		blk[off+6] = byte(len(name))
		blk[off+7] = ft
		copy(blk[off+8:], name)
		last = off
		off += rl
		return nil
	}
	if err := add(".", d.ino, 2); err != nil {
		return err
	}
	if err := add("..", d.parent.ino, 2); err != nil {
		return err
	}
	for _, c := range d.children {
		if err := add(c.name, c.n.ino, fileType(c.n)); err != nil {
			return err
		}
	}
	finish()
	minBlocks := uint32(1)
	if d.ino == lostFoundIno {
		minBlocks = 4
	}
	for nb < minBlocks {
		if err := start(); err != nil {
			return err
		}
		finish()
	}
	d.size = int64(nb) * bs
	return nil
}

func putExtHeader(b []byte, entries, max int, depth uint16) {
	le.PutUint16(b[0:], 0xF30A)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(max))
	le.PutUint16(b[6:], depth)
}

func putLeaf(b []byte, e extent) {
	le.PutUint32(b[0:], e.log)
	le.PutUint16(b[4:], uint16(e.len))
	le.PutUint16(b[6:], uint16(e.phys>>32))
	le.PutUint32(b[8:], uint32(e.phys))
}

func putIndex(b []byte, e extent) {
	le.PutUint32(b[0:], e.log)
	le.PutUint32(b[4:], uint32(e.phys))
	le.PutUint16(b[8:], uint16(e.phys>>32))
}

// buildTree writes the extent tree blocks for ext (more than 4 extents): leaves of 340 entries, all full but
// the last, then index levels until at most 4 entries remain for the inode (EXT4.md §6).
func buildTree(ino uint32, ext []extent, seed uint32, alloc func() (int64, []byte, error)) ([]extent, uint16, uint32, error) {
	var nTree uint32
	csum := func(b []byte) {
		le.PutUint32(b[4092:], crcRaw(crcU32(crcU32(seed, ino), 0), b[:4092]))
	}
	var idx []extent
	for i := 0; i < len(ext); i += extPerBlock {
		chunk := ext[i:min(i+extPerBlock, len(ext))]
		p, b, err := alloc()
		if err != nil {
			return nil, 0, 0, err
		}
		putExtHeader(b, len(chunk), extPerBlock, 0)
		for j, e := range chunk {
			putLeaf(b[12+12*j:], e)
		}
		csum(b)
		nTree++
		idx = append(idx, extent{log: chunk[0].log, phys: p})
	}
	depth := uint16(1)
	for len(idx) > 4 {
		var up []extent
		for i := 0; i < len(idx); i += extPerBlock {
			chunk := idx[i:min(i+extPerBlock, len(idx))]
			p, b, err := alloc()
			if err != nil {
				return nil, 0, 0, err
			}
			putExtHeader(b, len(chunk), extPerBlock, depth)
			for j, e := range chunk {
				putIndex(b[12+12*j:], e)
			}
			csum(b)
			nTree++
			up = append(up, extent{log: chunk[0].log, phys: p})
		}
		idx = up
		depth++
	}
	return idx, depth, nTree, nil
}

// putTime stores seconds and the _extra word: epoch bits and nanoseconds (EXT4.md §5).
func putTime(b []byte, off, extra int, sec int64, nsec uint32) {
	le.PutUint32(b[off:], uint32(int32(sec)))
	le.PutUint32(b[extra:], uint32((sec-int64(int32(sec)))>>32)&3|nsec<<2)
}

// encodeInode writes the 256-byte on-disk inode (EXT4.md §5).
func encodeInode(b []byte, n *inode, crtime int64, seed uint32) {
	clear(b)
	le.PutUint16(b[0x00:], n.mode)
	le.PutUint16(b[0x02:], uint16(n.uid))
	le.PutUint16(b[0x78:], uint16(n.uid>>16))
	le.PutUint16(b[0x18:], uint16(n.gid))
	le.PutUint16(b[0x7A:], uint16(n.gid>>16))
	le.PutUint32(b[0x04:], uint32(n.size))
	le.PutUint32(b[0x6C:], uint32(n.size>>32))
	putTime(b, 0x08, 0x8C, n.atime, n.ansec)
	putTime(b, 0x0C, 0x84, n.ctime, n.cnsec)
	putTime(b, 0x10, 0x88, n.mtime, n.mnsec)
	putTime(b, 0x90, 0x94, crtime, 0)
	le.PutUint16(b[0x1A:], uint16(n.nlink))
	var blocks int64
	for _, e := range n.ext {
		blocks += e.elen()
	}
	blocks += int64(n.nTree)
	if n.eaBlock != 0 {
		blocks++
	}
	le.PutUint32(b[0x1C:], uint32(blocks*8))
	le.PutUint16(b[0x74:], uint16(blocks*8>>32))
	ib := b[0x28:0x64]
	var flags uint32
	switch n.mode & sIFMT {
	case sIFREG:
		flags = 0x80000
	case sIFDIR:
		flags = 0x80000
		if n.htree {
			flags |= 0x1000 // INDEX_FL
		}
	case sIFLNK:
		if len(n.link) < 60 {
			copy(ib, n.link)
		} else {
			flags = 0x80000
		}
	case sIFCHR, sIFBLK:
		if n.major < 256 && n.minor < 256 {
			le.PutUint32(ib[0:], n.major<<8|n.minor)
		} else {
			le.PutUint32(ib[4:], n.minor&0xFF|n.major<<8|(n.minor&^0xFF)<<12)
		}
	}
	if flags&0x80000 != 0 {
		if n.depth == 0 {
			putExtHeader(ib, len(n.ext), 4, 0)
			for j, e := range n.ext {
				putLeaf(ib[12+12*j:], e)
			}
		} else {
			putExtHeader(ib, len(n.rootIdx), 4, n.depth)
			for j, e := range n.rootIdx {
				putIndex(ib[12+12*j:], e)
			}
		}
	}
	le.PutUint32(b[0x20:], flags)
	le.PutUint32(b[0x68:], uint32(n.eaBlock))
	le.PutUint16(b[0x76:], uint16(n.eaBlock>>32))
	le.PutUint16(b[0x80:], 32) // i_extra_isize
	if n.nInline > 0 {
		// In-inode xattrs: magic at 160, entries from 164, values packed down from 256 (EXT4.md §8).
		le.PutUint32(b[160:], 0xEA020000)
		off, vend := 164, inodeSize
		for _, x := range n.xattrs[:n.nInline] {
			vend -= int((len(x.value) + 3) &^ 3)
			copy(b[vend:], x.value)
			putEAEntry(b[off:], x, vend-164, 0)
			off += eaEntrySize(x)
		}
	}
	c := crcRaw(crcU32(crcU32(seed, n.ino), 0), b)
	le.PutUint16(b[0x7C:], uint16(c))
	le.PutUint16(b[0x82:], uint16(c>>16))
}

func putEAEntry(b []byte, x xattr, valueOff int, hash uint32) {
	b[0] = byte(len(x.name))
	b[1] = x.index
	if len(x.value) > 0 {
		le.PutUint16(b[2:], uint16(valueOff))
	}
	le.PutUint32(b[8:], uint32(len(x.value)))
	le.PutUint32(b[12:], hash)
	copy(b[16:], x.name)
}

// eaHash is the entry hash of an EA block entry (EXT4.md §8).
func eaHash(x xattr) uint32 {
	var h uint32
	for i := 0; i < len(x.name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(x.name[i])
	}
	for i := 0; i < len(x.value); i += 4 {
		var w [4]byte
		copy(w[:], x.value[i:])
		h = h<<16 ^ h>>16 ^ le.Uint32(w[:])
	}
	return h
}

// putEABlock writes an EA block: header, sorted entries from 32, values packed down from 4096 (EXT4.md §8).
func putEABlock(b []byte, xs []xattr, blk int64, seed uint32) {
	le.PutUint32(b[0:], 0xEA020000)
	le.PutUint32(b[4:], 1) // h_refcount
	le.PutUint32(b[8:], 1) // h_blocks
	off, vend := 32, bs
	var hh uint32
	for _, x := range xs {
		vend -= int((len(x.value) + 3) &^ 3)
		copy(b[vend:], x.value)
		h := eaHash(x)
		putEAEntry(b[off:], x, vend, h)
		off += eaEntrySize(x)
		hh = hh<<16 ^ hh>>16 ^ h
	}
	le.PutUint32(b[12:], hh)
	var nr [8]byte
	le.PutUint64(nr[:], uint64(blk))
	le.PutUint32(b[16:], crcRaw(crcRaw(seed, nr[:]), b))
}

// superblock encodes the primary superblock (EXT4.md §3).
func (w *Writer) superblock(g geometry, freeBlocks, freeInodes int64, jn *inode) []byte {
	s := make([]byte, 1024)
	T := w.opts.Time
	le.PutUint32(s[0x00:], uint32(g.inodes()))
	put32x2(s, 0x04, 0x150, g.blocks)
	put32x2(s, 0x08, 0x154, g.blocks*5/100)
	put32x2(s, 0x0C, 0x158, freeBlocks)
	le.PutUint32(s[0x10:], uint32(freeInodes))
	le.PutUint32(s[0x18:], 2) // log_block_size
	le.PutUint32(s[0x1C:], 2) // log_cluster_size
	le.PutUint32(s[0x20:], bpg)
	le.PutUint32(s[0x24:], bpg)
	le.PutUint32(s[0x28:], g.ipg)
	le.PutUint32(s[0x30:], uint32(T)) // wtime
	le.PutUint16(s[0x36:], 0xFFFF)    // max_mnt_count
	le.PutUint16(s[0x38:], 0xEF53)
	le.PutUint16(s[0x3A:], 1)         // state: clean
	le.PutUint16(s[0x3C:], 1)         // errors: continue
	le.PutUint32(s[0x40:], uint32(T)) // lastcheck
	le.PutUint32(s[0x4C:], 1)         // rev_level
	le.PutUint32(s[0x54:], 11)        // first_ino
	le.PutUint16(s[0x58:], inodeSize)
	compat := uint32(0x2C)
	if w.opts.NoJournal {
		compat &^= 0x4
	}
	le.PutUint32(s[0x5C:], compat)
	le.PutUint32(s[0x60:], 0x2C2)
	le.PutUint32(s[0x64:], 0x46B)
	copy(s[0x68:0x78], w.opts.UUID[:])
	copy(s[0x78:0x88], w.opts.Label)
	copy(s[0xEC:0xFC], w.opts.HashSeed[:])
	s[0xFC] = 1 // def_hash_version half_md4
	le.PutUint16(s[0xFE:], descSize)
	le.PutUint32(s[0x100:], 0x0C) // user_xattr, acl
	le.PutUint32(s[0x108:], uint32(T))
	if jn != nil {
		le.PutUint32(s[0xE0:], journalIno)
		s[0xFD] = 1 // jnl_backup_type: s_jnl_blocks holds a copy of inode 8's i_block
		var ib [inodeSize]byte
		encodeInode(ib[:], jn, T, 0)
		copy(s[0x10C:0x10C+60], ib[0x28:0x64])
		le.PutUint32(s[0x10C+60:], uint32(jn.size>>32))
		le.PutUint32(s[0x10C+64:], uint32(jn.size))
	}
	le.PutUint16(s[0x15C:], 32) // min_extra_isize
	le.PutUint16(s[0x15E:], 32) // want_extra_isize
	le.PutUint32(s[0x160:], 1)  // s_flags: signed dirhash
	s[0x174] = flexLog
	s[0x175] = 1             // checksum_type crc32c
	s[0x274] = byte(T >> 32) // wtime_hi
	s[0x276] = byte(T >> 32) // mkfs_time_hi
	s[0x277] = byte(T >> 32) // lastcheck_hi
	le.PutUint32(s[0x3FC:], crcRaw(0xFFFFFFFF, s[:0x3FC]))
	return s
}

// Size is the final filesystem size in bytes (valid after Close).
func (w *Writer) Size() int64 { return w.size }

// Stats returns counts of what was written (block and inode totals are valid after Close).
func (w *Writer) Stats() Stats { return w.stats }
