package ext4

import (
	"fmt"
	"math/bits"
	"sort"
)

// Hashed (htree) directories, [doc:directory] "Hash Tree Directories" and EXT4.md §7. e2fsck -fy/-p rebuilds
// any non-indexed directory of 3 blocks or more as an htree (pass 1, check_blocks), so such directories are
// written indexed: e2fsck then has nothing to change.

const (
	dxRootLimit = (bs - 0x20 - 8) / 8 // 507 entries in the root with a dx_tail
	dxNodeLimit = (bs - 8 - 8) / 8    // 510 entries in an interior node
)

// halfMD4 is the legacy half-MD4 transform used by the "half_md4" directory hash.
func halfMD4(buf *[4]uint32, in *[8]uint32) {
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	const k2, k3 = 0x5A827999, 0x6ED9EBA1
	r := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}
	r(f, &a, b, c, d, in[0], 3)
	r(f, &d, a, b, c, in[1], 7)
	r(f, &c, d, a, b, in[2], 11)
	r(f, &b, c, d, a, in[3], 19)
	r(f, &a, b, c, d, in[4], 3)
	r(f, &d, a, b, c, in[5], 7)
	r(f, &c, d, a, b, in[6], 11)
	r(f, &b, c, d, a, in[7], 19)

	r(g, &a, b, c, d, in[1]+k2, 3)
	r(g, &d, a, b, c, in[3]+k2, 5)
	r(g, &c, d, a, b, in[5]+k2, 9)
	r(g, &b, c, d, a, in[7]+k2, 13)
	r(g, &a, b, c, d, in[0]+k2, 3)
	r(g, &d, a, b, c, in[2]+k2, 5)
	r(g, &c, d, a, b, in[4]+k2, 9)
	r(g, &b, c, d, a, in[6]+k2, 13)

	r(h, &a, b, c, d, in[3]+k3, 3)
	r(h, &d, a, b, c, in[7]+k3, 9)
	r(h, &c, d, a, b, in[2]+k3, 11)
	r(h, &b, c, d, a, in[6]+k3, 15)
	r(h, &a, b, c, d, in[1]+k3, 3)
	r(h, &d, a, b, c, in[5]+k3, 9)
	r(h, &c, d, a, b, in[0]+k3, 11)
	r(h, &b, c, d, a, in[4]+k3, 15)
	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

// str2hashbuf packs up to num*4 bytes of msg into words, bytes as signed chars (s_flags signed hash).
func str2hashbuf(msg string, num int, out *[8]uint32) {
	n := uint32(len(msg))
	pad := n | n<<8
	pad |= pad << 16
	val := pad
	l := min(len(msg), num*4)
	k := 0
	for i := 0; i < l; i++ {
		val = uint32(int32(int8(msg[i]))) + val<<8
		if i%4 == 3 {
			out[k] = val
			k++
			val = pad
			num--
		}
	}
	num--
	if num >= 0 {
		out[k] = val
		k++
	}
	for num--; num >= 0; num-- {
		out[k] = pad
		k++
	}
}

// dirHash is the signed half_md4 hash of name with seed (s_hash_seed words), low bit cleared.
func dirHash(name string, seed [4]uint32) uint32 {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var in [8]uint32
	for p := name; ; p = p[32:] {
		str2hashbuf(p, 8, &in)
		halfMD4(&buf, &in)
		if len(p) <= 32 {
			break
		}
	}
	h := buf[1] &^ 1
	if h == 0x7fffffff<<1 {
		h = (0x7fffffff - 1) << 1
	}
	return h
}

// linearBlocks is the number of blocks a linear directory with these children takes.
func linearBlocks(d *inode) int {
	nb, off := 1, 24 // "." and ".."
	for _, c := range d.children {
		rl := (8 + len(c.name) + 3) &^ 3
		if off+rl > 4084 {
			nb++
			off = 0
		}
		off += rl
	}
	return nb
}

// writeHtree writes d as an hashed directory: root (block 0), interior nodes when more than 507 leaves,
// then leaves of entries in hash order, each leaf with the dirent checksum tail.
func (w *Writer) writeHtree(d *inode, seed uint32) error {
	es := hashOrder(d, w.hashSeed())
	leaves := splitLeaves(d, es)
	nodes := 0
	if len(leaves) > dxRootLimit {
		nodes = int(ceilDiv(int64(len(leaves)), dxNodeLimit))
		if nodes > dxRootLimit {
			return fmt.Errorf("ext4: directory inode %d: %d entries need a 3-level htree (large_dir), not supported", d.ino, len(es))
		}
	}
	o := &htreeOut{w: w, d: d, seed: seed, firstLeaf: uint32(1 + nodes)}
	if err := o.putRootBlock(leaves, nodes); err != nil {
		return err
	}
	for j := 0; j < nodes; j++ {
		if err := o.putNodeBlock(leaves[j*dxNodeLimit:min((j+1)*dxNodeLimit, len(leaves))], j*dxNodeLimit); err != nil {
			return err
		}
	}
	for _, l := range leaves {
		if err := o.putLeafBlock(es[l.from:l.to]); err != nil {
			return err
		}
	}
	d.size = int64(o.nb) * bs
	d.htree = true
	return nil
}

// hashSeed is s_hash_seed as the four words dirHash takes.
func (w *Writer) hashSeed() [4]uint32 {
	s := w.opts.HashSeed[:]
	return [4]uint32{le.Uint32(s[0:]), le.Uint32(s[4:]), le.Uint32(s[8:]), le.Uint32(s[12:])}
}

// hashEntry is one child of an htree directory: its name hash and its index in children.
type hashEntry struct {
	hash uint32
	i    int
}

// hashOrder returns d's children sorted by hash, ties in name order.
func hashOrder(d *inode, hs [4]uint32) []hashEntry {
	es := make([]hashEntry, len(d.children))
	for i, c := range d.children {
		es[i] = hashEntry{dirHash(c.name, hs), i}
	}
	sort.Slice(es, func(a, b int) bool {
		if es[a].hash != es[b].hash {
			return es[a].hash < es[b].hash
		}
		return es[a].i < es[b].i
	})
	return es
}

// htreeLeaf is one leaf block: entries es[from:to] and its index hash.
type htreeLeaf struct {
	from, to int
	hash     uint32
}

// splitLeaves fills leaf blocks in hash order. A leaf's index hash is its first entry's hash, with the low
// bit set when it continues the previous leaf's hash.
func splitLeaves(d *inode, es []hashEntry) []htreeLeaf {
	var leaves []htreeLeaf
	off := 4084
	for k, e := range es {
		rl := (8 + len(d.children[e.i].name) + 3) &^ 3
		if off+rl > 4084 {
			h := e.hash
			if k > 0 && es[k-1].hash == e.hash {
				h |= 1
			}
			leaves = append(leaves, htreeLeaf{from: k, to: k, hash: h})
			off = 0
		}
		leaves[len(leaves)-1].to = k + 1
		off += rl
	}
	return leaves
}

// htreeOut appends the blocks of one htree directory and records them in its extents.
type htreeOut struct {
	w         *Writer
	d         *inode
	seed      uint32
	firstLeaf uint32 // logical block of the first leaf
	nb        uint32 // blocks appended so far
}

// next appends the directory's next block.
func (o *htreeOut) next() ([]byte, error) {
	p, b, err := o.w.appendBlock()
	if err != nil {
		return nil, err
	}
	o.d.ext = addExtent(o.d.ext, o.nb, p)
	o.nb++
	return b, nil
}

// dxCsum writes the dx_tail checksum of an index block whose count/limit header is at countOff.
func (o *htreeOut) dxCsum(b []byte, countOff, count int) {
	c := crcRaw(crcU32(crcU32(o.seed, o.d.ino), 0), b[:countOff+8*count])
	c = crcRaw(c, b[4088:4092])
	c = crcU32(c, 0)
	le.PutUint32(b[4092:], c)
}

// putDx writes a dx index at b[at:]: limit, count, the first block, then (hash, block) pairs.
func putDx(b []byte, at, limit int, blocks, hashes []uint32) {
	le.PutUint16(b[at:], uint16(limit))
	le.PutUint16(b[at+2:], uint16(len(blocks)))
	le.PutUint32(b[at+4:], blocks[0])
	for j := 1; j < len(blocks); j++ {
		le.PutUint32(b[at+8*j:], hashes[j])
		le.PutUint32(b[at+8*j+4:], blocks[j])
	}
}

// putRootBlock writes block 0: ".", "..", the dx_root_info and the root index, which points at the leaves, or
// at the interior nodes when there are any.
func (o *htreeOut) putRootBlock(leaves []htreeLeaf, nodes int) error {
	b, err := o.next()
	if err != nil {
		return err
	}
	le.PutUint32(b[0:], o.d.ino)
	le.PutUint16(b[4:], 12)
	b[6], b[7], b[8] = 1, 2, '.'
	le.PutUint32(b[12:], o.d.parent.ino)
	le.PutUint16(b[16:], 4084)
	b[18], b[19], b[20], b[21] = 2, 2, '.', '.'
	b[28] = 1 // hash_version half_md4 (signed per s_flags)
	b[29] = 8 // info_length
	var blocks, hashes []uint32
	if nodes == 0 {
		for j, l := range leaves {
			blocks = append(blocks, o.firstLeaf+uint32(j))
			hashes = append(hashes, l.hash)
		}
	} else {
		b[30] = 1 // indirect_levels
		for j := 0; j < nodes; j++ {
			blocks = append(blocks, 1+uint32(j))
			hashes = append(hashes, leaves[j*dxNodeLimit].hash)
		}
	}
	putDx(b, 0x20, dxRootLimit, blocks, hashes)
	o.dxCsum(b, 0x20, len(blocks))
	return nil
}

// putNodeBlock writes an interior node indexing leaves, the first of which is leaf number first.
func (o *htreeOut) putNodeBlock(leaves []htreeLeaf, first int) error {
	b, err := o.next()
	if err != nil {
		return err
	}
	le.PutUint16(b[4:], bs) // fake empty dirent spanning the block
	var blocks, hashes []uint32
	for k, l := range leaves {
		blocks = append(blocks, o.firstLeaf+uint32(first+k))
		hashes = append(hashes, l.hash)
	}
	putDx(b, 8, dxNodeLimit, blocks, hashes)
	o.dxCsum(b, 8, len(blocks))
	return nil
}

// putLeafBlock writes one leaf block holding es, with the dirent checksum tail at 4084 (EXT4.md §7).
func (o *htreeOut) putLeafBlock(es []hashEntry) error {
	b, err := o.next()
	if err != nil {
		return err
	}
	off, last := 0, 0
	for _, e := range es {
		c := o.d.children[e.i]
		rl := (8 + len(c.name) + 3) &^ 3
		le.PutUint32(b[off:], c.n.ino)
		le.PutUint16(b[off+4:], uint16(rl))
		b[off+6] = byte(len(c.name))
		b[off+7] = fileType(c.n)
		copy(b[off+8:], c.name)
		last = off
		off += rl
	}
	le.PutUint16(b[last+4:], uint16(4084-last))
	le.PutUint16(b[4088:], 12)
	b[4091] = 0xDE
	le.PutUint32(b[4092:], crcRaw(crcU32(crcU32(o.seed, o.d.ino), 0), b[:4084]))
	return nil
}
