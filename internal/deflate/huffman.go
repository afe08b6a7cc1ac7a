package deflate

import "slices"

// huffScratch is reused working memory for building codes.
type huffScratch struct {
	bc     blockCodes
	seq    []uint8
	leaves []uint64 // freq<<16 | symbol, sorted
	weight []uint64
	parent []int32
	freq   []uint32
}

// huffLengths sets lens to Huffman code lengths of at most limit bits for freq (lens[s] = 0 where
// freq[s] = 0). The code is always complete: with fewer than two used symbols, symbols 0 and 1 (or
// the used one and the other) get one bit each, as zlib does, so that every decoder accepts it.
// If the optimal code is deeper than limit, the frequencies are halved (keeping them non-zero)
// until it is not; this is rare for deflate's block sizes and costs little.
func huffLengths(freq []uint32, limit int, lens []uint8, hs *huffScratch) {
	clear(lens)
	used := 0
	last := 0
	for s, f := range freq {
		if f != 0 {
			used++
			last = s
		}
	}
	if used < 2 {
		lens[0], lens[1] = 1, 1
		if used == 1 && last > 1 {
			lens[1] = 0
			lens[last] = 1
		}
		return
	}
	hs.freq = append(hs.freq[:0], freq...)
	for {
		if huffDepths(hs.freq, limit, lens, hs) {
			return
		}
		for s, f := range hs.freq {
			if f > 1 {
				hs.freq[s] = (f + 1) / 2
			}
		}
	}
}

// huffDepths builds a Huffman tree over the non-zero freq (at least two) with the two-queue
// method and writes the leaf depths to lens; it reports whether no depth exceeds limit. Ties are
// broken by symbol, so the result is a function of freq alone.
func huffDepths(freq []uint32, limit int, lens []uint8, hs *huffScratch) bool {
	hs.leaves = hs.leaves[:0]
	for s, f := range freq {
		if f != 0 {
			hs.leaves = append(hs.leaves, uint64(f)<<16|uint64(s))
		}
	}
	slices.Sort(hs.leaves)
	m := len(hs.leaves)
	// Nodes 0..m-1 are the leaves in order, m.. the internal nodes in creation order (their
	// weights do not decrease, so they form the second queue).
	hs.weight = hs.weight[:0]
	for _, l := range hs.leaves {
		hs.weight = append(hs.weight, l>>16)
	}
	hs.parent = slices.Grow(hs.parent[:0], 2*m-1)[:2*m-1]
	li, ni := 0, m
	pick := func() int {
		if li < m && (ni >= len(hs.weight) || hs.weight[li] <= hs.weight[ni]) {
			li++
			return li - 1
		}
		ni++
		return ni - 1
	}
	for len(hs.weight) < 2*m-1 {
		a, b := pick(), pick()
		k := len(hs.weight)
		hs.weight = append(hs.weight, hs.weight[a]+hs.weight[b])
		hs.parent[a], hs.parent[b] = int32(k), int32(k)
	}
	// Depths, root first; reuse weight for them.
	root := 2*m - 2
	hs.weight[root] = 0
	ok := true
	for k := root - 1; k >= 0; k-- {
		d := hs.weight[hs.parent[k]] + 1
		hs.weight[k] = d
		if k < m {
			if d > uint64(limit) {
				ok = false
			}
			lens[hs.leaves[k]&0xffff] = uint8(min(d, 255))
		}
	}
	return ok
}
