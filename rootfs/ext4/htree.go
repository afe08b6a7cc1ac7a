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
	hs := [4]uint32{le.Uint32(w.opts.HashSeed[0:]), le.Uint32(w.opts.HashSeed[4:]), le.Uint32(w.opts.HashSeed[8:]), le.Uint32(w.opts.HashSeed[12:])}
	type hent struct {
		hash uint32
		i    int
	}
	es := make([]hent, len(d.children))
	for i, c := range d.children {
		es[i] = hent{dirHash(c.name, hs), i}
	}
	sort.Slice(es, func(a, b int) bool {
		if es[a].hash != es[b].hash {
			return es[a].hash < es[b].hash
		}
		return es[a].i < es[b].i
	})
	// Split into leaves: index hash = first entry's hash, low bit set when it continues the previous leaf's hash.
	type leaf struct {
		from, to int
		hash     uint32
	}
	var leaves []leaf
	off := 4084
	for k, e := range es {
		rl := (8 + len(d.children[e.i].name) + 3) &^ 3
		if off+rl > 4084 {
			h := e.hash
			if k > 0 && es[k-1].hash == e.hash {
				h |= 1
			}
			leaves = append(leaves, leaf{from: k, to: k, hash: h})
			off = 0
		}
		leaves[len(leaves)-1].to = k + 1
		off += rl
	}
	nodes := 0
	if len(leaves) > dxRootLimit {
		nodes = int(ceilDiv(int64(len(leaves)), dxNodeLimit))
		if nodes > dxRootLimit {
			return fmt.Errorf("ext4: directory inode %d: %d entries need a 3-level htree (large_dir), not supported", d.ino, len(es))
		}
	}
	firstLeaf := uint32(1 + nodes)
	var nb uint32
	next := func() ([]byte, error) {
		p, b, err := w.appendBlock()
		if err != nil {
			return nil, err
		}
		d.ext = addExtent(d.ext, nb, p)
		nb++
		return b, nil
	}
	dxCsum := func(b []byte, countOff, count int) {
		c := crcRaw(crcU32(crcU32(seed, d.ino), 0), b[:countOff+8*count])
		c = crcRaw(c, b[4088:4092])
		c = crcU32(c, 0)
		le.PutUint32(b[4092:], c)
	}
	putDx := func(b []byte, at, limit int, ents []uint32, hashes []uint32) {
		le.PutUint16(b[at:], uint16(limit))
		le.PutUint16(b[at+2:], uint16(len(ents)))
		le.PutUint32(b[at+4:], ents[0])
		for j := 1; j < len(ents); j++ {
			le.PutUint32(b[at+8*j:], hashes[j])
			le.PutUint32(b[at+8*j+4:], ents[j])
		}
	}
	// Root.
	b, err := next()
	if err != nil {
		return err
	}
	le.PutUint32(b[0:], d.ino)
	le.PutUint16(b[4:], 12)
	b[6], b[7], b[8] = 1, 2, '.'
	le.PutUint32(b[12:], d.parent.ino)
	le.PutUint16(b[16:], 4084)
	b[18], b[19], b[20], b[21] = 2, 2, '.', '.'
	b[28] = 1 // hash_version half_md4 (signed per s_flags)
	b[29] = 8 // info_length
	var rootBlocks, rootHashes []uint32
	if nodes == 0 {
		for j, l := range leaves {
			rootBlocks = append(rootBlocks, firstLeaf+uint32(j))
			rootHashes = append(rootHashes, l.hash)
		}
	} else {
		b[30] = 1 // indirect_levels
		for j := 0; j < nodes; j++ {
			rootBlocks = append(rootBlocks, 1+uint32(j))
			rootHashes = append(rootHashes, leaves[j*dxNodeLimit].hash)
		}
	}
	putDx(b, 0x20, dxRootLimit, rootBlocks, rootHashes)
	dxCsum(b, 0x20, len(rootBlocks))
	// Interior nodes.
	for j := 0; j < nodes; j++ {
		b, err := next()
		if err != nil {
			return err
		}
		le.PutUint16(b[4:], bs) // fake empty dirent spanning the block
		var blks, hashes []uint32
		for k := j * dxNodeLimit; k < min((j+1)*dxNodeLimit, len(leaves)); k++ {
			blks = append(blks, firstLeaf+uint32(k))
			hashes = append(hashes, leaves[k].hash)
		}
		putDx(b, 8, dxNodeLimit, blks, hashes)
		dxCsum(b, 8, len(blks))
	}
	// Leaves.
	for _, l := range leaves {
		b, err := next()
		if err != nil {
			return err
		}
		off, last := 0, 0
		for _, e := range es[l.from:l.to] {
			c := d.children[e.i]
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
		le.PutUint32(b[4092:], crcRaw(crcU32(crcU32(seed, d.ino), 0), b[:4084]))
	}
	d.size = int64(nb) * bs
	d.htree = true
	return nil
}
