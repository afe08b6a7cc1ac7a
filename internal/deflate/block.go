package deflate

import (
	"math"
	"math/bits"
	"slices"
)

// Length and distance codes (RFC 1951, 3.2.5).
var (
	lengthBase  [29]uint16
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	lengthCode  [maxMatch - minMatch + 1]uint8 // by length-3
	distBase    [numDist]uint16
	distExtra   = [numDist]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// clOrder is the order code length code lengths are sent in (3.2.7).
	clOrder = [numCL]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	// fixed Huffman code lengths (3.2.6)
	FixedLitLen  [288]uint8 // the fixed literal/length code's lengths (RFC 1951, 3.2.6); internal/inflate reads them too
	fixedLitCode [288]uint16
	fixedDistLen [numDist]uint8
	fixedDistCd  [numDist]uint16
)

func init() {
	l := 3
	for c := range 28 {
		lengthBase[c] = uint16(l)
		for range 1 << lengthExtra[c] {
			lengthCode[l-minMatch] = uint8(c)
			l++
		}
	}
	lengthBase[28] = 258
	lengthCode[258-minMatch] = 28
	d := 1
	for c := range numDist {
		distBase[c] = uint16(d)
		d += 1 << distExtra[c]
	}
	for i := range FixedLitLen {
		switch {
		case i < 144:
			FixedLitLen[i] = 8
		case i < 256:
			FixedLitLen[i] = 9
		case i < 280:
			FixedLitLen[i] = 7
		default:
			FixedLitLen[i] = 8
		}
	}
	canonical(FixedLitLen[:], fixedLitCode[:])
	for i := range fixedDistLen {
		fixedDistLen[i] = 5
	}
	canonical(fixedDistLen[:], fixedDistCd[:])
}

// distCode returns the distance code (0–29) for dist (1–32768).
func distCode(dist int) int {
	d := uint32(dist - 1)
	if d < 4 {
		return int(d)
	}
	nb := bits.Len32(d) - 1
	return 2*nb + int(d>>(nb-1)&1)
}

// canonical assigns the canonical Huffman codes (3.2.2) for lens to codes, bit-reversed so that
// they can be written least significant bit first.
func canonical(lens []uint8, codes []uint16) {
	var count [16]uint16
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [16]uint16
	code := uint16(0)
	for b := 1; b < 16; b++ {
		code = (code + count[b-1]) << 1
		next[b] = code
	}
	for i, l := range lens {
		if l != 0 {
			codes[i] = bits.Reverse16(next[l]) >> (16 - l)
			next[l]++
		}
	}
}

// blockCodes are the dynamic Huffman codes of one block and its header.
type blockCodes struct {
	llen  [numLit]uint8
	lcode [numLit]uint16
	dlen  [numDist]uint8
	dcode [numDist]uint16
	clen  [numCL]uint8
	ccode [numCL]uint16
	cfreq [numCL]uint32
	rle   []uint16 // code length symbols: sym | extra<<5
	hlit  int
	hdist int
	hclen int
}

const (
	splitPieces  = 32   // candidate block boundaries per run of symbols: every 1/16th
	minSplitSyms = 1024 // runs shorter than this are one block
	storedKind   = 0
	fixedKind    = 1
	dynamicKind  = 2
)

// flushBlock codes the symbols gathered (e.syms) for raw, the input bytes they cover. Where
// coding them as several blocks, each with its own Huffman codes, is smaller, it splits them at
// sixteenths (greedily, best split first, recursively), then codes each block as stored, fixed or
// dynamic, whichever is smallest.
func (e *Encoder) flushBlock(raw []byte, last bool) {
	syms := e.syms
	pieces := 1
	if len(syms) >= minSplitSyms {
		pieces = splitPieces
	}
	// Cumulative histograms and input offsets at each piece boundary.
	const width = numLit + numDist
	e.hist = slices.Grow(e.hist[:0], (pieces+1)*width)[:(pieces+1)*width]
	clear(e.hist[:width])
	e.off[0], e.at[0] = 0, 0
	off := 0
	for p := 1; p <= pieces; p++ {
		h := e.hist[p*width : (p+1)*width]
		copy(h, e.hist[(p-1)*width:p*width])
		end := len(syms) * p / pieces
		for _, s := range syms[e.at[p-1]:end] {
			if s&matchFlag == 0 {
				h[s]++
				off++
				continue
			}
			length := int(s&0xff) + minMatch
			h[257+int(lengthCode[length-minMatch])]++
			h[numLit+distCode(int(s>>8)&0xffff)]++
			off += length
		}
		e.at[p], e.off[p] = end, off
	}
	for a := range pieces + 1 {
		for b := range pieces + 1 {
			e.memo[a][b] = -1
		}
	}
	e.cuts = append(e.cuts[:0], 0)
	e.split(0, pieces)
	for i := 1; i < len(e.cuts); i++ {
		a, b := e.cuts[i-1], e.cuts[i]
		e.loadHist(a, b)
		kind, _ := e.choose(e.off[b]-e.off[a], e.bw.n)
		e.writeBlock(syms[e.at[a]:e.at[b]], raw[e.off[a]:e.off[b]], kind, last && i == len(e.cuts)-1)
	}
	e.resetBlock()
}

// split appends to e.cuts the block ends chosen for pieces a..b: the boundary the entropy
// estimate likes best, if the exact sizes confirm that two blocks are smaller than one.
func (e *Encoder) split(a, b int) {
	if b-a >= 2 {
		best, cut := e.estimate(a, b), -1
		for s := a + 1; s < b; s++ {
			if c := e.estimate(a, s) + e.estimate(s, b); c < best {
				best, cut = c, s
			}
		}
		if cut >= 0 && e.cost(a, cut)+e.cost(cut, b) < e.cost(a, b) {
			e.split(a, cut)
			e.split(cut, b)
			return
		}
	}
	e.cuts = append(e.cuts, b)
}

// cost is the exact size in bits of pieces a..b coded as one block (memoized).
func (e *Encoder) cost(a, b int) int {
	if c := e.memo[a][b]; c >= 0 {
		return int(c)
	}
	e.loadHist(a, b)
	_, c := e.choose(e.off[b]-e.off[a], 0)
	e.memo[a][b] = int32(c)
	return c
}

// estimate approximates the size in bits of pieces a..b as one dynamic block: the entropy of
// its symbols, their extra bits, and about 4 bits per used symbol for the code lengths.
func (e *Encoder) estimate(a, b int) float64 {
	const width = numLit + numDist
	ha, hb := e.hist[a*width:(a+1)*width], e.hist[b*width:(b+1)*width]
	var bits float64
	for _, r := range [2][2]int{{0, numLit}, {numLit, width}} {
		var n uint32
		var sum float64
		used := 0
		for i := r[0]; i < r[1]; i++ {
			if f := hb[i] - ha[i]; f != 0 {
				n += f
				sum += flog(f)
				used++
			}
		}
		if n > 0 {
			bits += flog(n) - sum + 4*float64(used)
		}
	}
	for c := range lengthExtra {
		bits += float64(hb[257+c]-ha[257+c]) * float64(lengthExtra[c])
	}
	for c := range distExtra {
		bits += float64(hb[numLit+c]-ha[numLit+c]) * float64(distExtra[c])
	}
	return bits + 70
}

// flog returns f·log2(f).
func flog(f uint32) float64 {
	if int(f) < len(flogTab) {
		return float64(flogTab[f])
	}
	return float64(f) * math.Log2(float64(f))
}

var flogTab = func() (t [blockSyms + 2]float32) {
	for i := 1; i < len(t); i++ {
		t[i] = float32(float64(i) * math.Log2(float64(i)))
	}
	return
}()

// loadHist sets e.lfreq and e.dfreq to the symbol counts of pieces a..b, end-of-block included.
func (e *Encoder) loadHist(a, b int) {
	const width = numLit + numDist
	ha, hb := e.hist[a*width:(a+1)*width], e.hist[b*width:(b+1)*width]
	for i := range e.lfreq {
		e.lfreq[i] = hb[i] - ha[i]
	}
	for i := range e.dfreq {
		e.dfreq[i] = hb[numLit+i] - ha[numLit+i]
	}
	e.lfreq[endBlock]++
}

// choose builds the dynamic codes for the block whose counts are in e.lfreq and e.dfreq (into
// e.h.bc) and returns the smallest coding for it and its size in bits, for a block of rawLen
// input bytes starting at bit bitPos of a byte.
func (e *Encoder) choose(rawLen int, bitPos uint) (kind, size int) {
	bc := &e.h.bc
	huffLengths(e.lfreq[:], 15, bc.llen[:], &e.h)
	huffLengths(e.dfreq[:], 15, bc.dlen[:], &e.h)
	e.buildHeader(bc)

	var extra int // length and distance extra bits, the same for both Huffman codings
	for c, f := range e.lfreq[257:] {
		extra += int(f) * int(lengthExtra[c])
	}
	for c, f := range e.dfreq {
		extra += int(f) * int(distExtra[c])
	}
	dyn := 3 + 5 + 5 + 4 + 3*bc.hclen + extra
	for s, f := range bc.cfreq {
		dyn += int(f) * int(bc.clen[s])
	}
	for _, r := range bc.rle {
		dyn += int(clExtraBits(r & 31))
	}
	fixed := 3 + extra
	for s, f := range e.lfreq {
		dyn += int(f) * int(bc.llen[s])
		fixed += int(f) * int(FixedLitLen[s])
	}
	for s, f := range e.dfreq {
		dyn += int(f) * int(bc.dlen[s])
		fixed += int(f) * 5
	}
	// Stored: per 65535-byte piece, a 3-bit header, padding to a byte, LEN and NLEN.
	stored := 0
	pos := int(bitPos)
	for rest := rawLen; ; {
		k := min(rest, 0xffff)
		pad := (8 - (pos+3)%8) % 8
		stored += 3 + pad + 32 + 8*k
		pos = 0
		rest -= k
		if rest == 0 {
			break
		}
	}
	switch {
	case stored <= fixed && stored <= dyn:
		return storedKind, stored
	case fixed <= dyn:
		return fixedKind, fixed
	}
	return dynamicKind, dyn
}

// writeBlock writes syms (covering raw) as one block of the given kind; for a dynamic block the
// codes are those choose built last.
func (e *Encoder) writeBlock(syms []uint32, raw []byte, kind int, last bool) {
	fin := uint64(0)
	if last {
		fin = 1
	}
	bc := &e.h.bc
	switch kind {
	case storedKind:
		for rest := raw; ; {
			k := min(len(rest), 0xffff)
			f := uint64(0)
			if k == len(rest) {
				f = fin
			}
			e.bw.put(f, 3) // BTYPE 00
			e.bw.align()
			e.bw.out = append(e.bw.out, byte(k), byte(k>>8), ^byte(k), ^byte(k>>8))
			e.bw.out = append(e.bw.out, rest[:k]...)
			rest = rest[k:]
			if len(rest) == 0 {
				break
			}
		}
	case fixedKind:
		e.bw.put(fin|1<<1, 3)
		e.writeSyms(syms, FixedLitLen[:], fixedLitCode[:], fixedDistLen[:], fixedDistCd[:])
	default:
		canonical(bc.llen[:], bc.lcode[:])
		canonical(bc.dlen[:], bc.dcode[:])
		e.bw.put(fin|2<<1, 3)
		e.bw.put(uint64(bc.hlit-257), 5)
		e.bw.put(uint64(bc.hdist-1), 5)
		e.bw.put(uint64(bc.hclen-4), 4)
		for _, s := range clOrder[:bc.hclen] {
			e.bw.put(uint64(bc.clen[s]), 3)
		}
		for _, r := range bc.rle {
			s := r & 31
			e.bw.put(uint64(bc.ccode[s]), uint(bc.clen[s]))
			if nb := clExtraBits(s); nb > 0 {
				e.bw.put(uint64(r>>5), nb)
			}
		}
		e.writeSyms(syms, bc.llen[:], bc.lcode[:], bc.dlen[:], bc.dcode[:])
	}
}

func clExtraBits(s uint16) uint {
	switch s {
	case 16:
		return 2
	case 17:
		return 3
	case 18:
		return 7
	}
	return 0
}

// writeSyms writes the block's symbols and the end-of-block code with the given codes.
func (e *Encoder) writeSyms(syms []uint32, llen []uint8, lcode []uint16, dlen []uint8, dcode []uint16) {
	w := &e.bw
	for _, s := range syms {
		if s&matchFlag == 0 {
			w.put(uint64(lcode[s]), uint(llen[s]))
			continue
		}
		length := int(s&0xff) + minMatch
		dist := int(s>>8) & 0xffff
		lc := lengthCode[length-minMatch]
		v := uint64(lcode[257+int(lc)])
		nb := uint(llen[257+int(lc)])
		v |= uint64(length-int(lengthBase[lc])) << nb
		nb += uint(lengthExtra[lc])
		w.put(v, nb) // at most 15+5 bits
		dc := distCode(dist)
		v = uint64(dcode[dc]) | uint64(dist-int(distBase[dc]))<<dlen[dc]
		w.put(v, uint(dlen[dc])+uint(distExtra[dc])) // at most 15+13 bits
	}
	w.put(uint64(lcode[endBlock]), uint(llen[endBlock]))
}

// buildHeader computes HLIT, HDIST, the run-length coded code lengths of both trees (one
// sequence, as 3.2.7 allows) and the code length code.
func (e *Encoder) buildHeader(bc *blockCodes) {
	bc.hlit = numLit
	for bc.hlit > 257 && bc.llen[bc.hlit-1] == 0 {
		bc.hlit--
	}
	bc.hdist = numDist
	for bc.hdist > 1 && bc.dlen[bc.hdist-1] == 0 {
		bc.hdist--
	}
	seq := e.h.seq[:0]
	seq = append(seq, bc.llen[:bc.hlit]...)
	seq = append(seq, bc.dlen[:bc.hdist]...)
	e.h.seq = seq
	bc.rle = bc.rle[:0]
	clear(bc.cfreq[:])
	emit := func(sym, extra uint16) {
		bc.rle = append(bc.rle, sym|extra<<5)
		bc.cfreq[sym]++
	}
	for i := 0; i < len(seq); {
		l := seq[i]
		run := 1
		for i+run < len(seq) && seq[i+run] == l {
			run++
		}
		i += run
		if l == 0 {
			for run >= 11 {
				k := min(run, 138)
				emit(18, uint16(k-11))
				run -= k
			}
			if run >= 3 {
				emit(17, uint16(run-3))
				run = 0
			}
		} else {
			emit(uint16(l), 0)
			run--
			for run >= 3 {
				k := min(run, 6)
				emit(16, uint16(k-3))
				run -= k
			}
		}
		for ; run > 0; run-- {
			emit(uint16(l), 0)
		}
	}
	huffLengths(bc.cfreq[:], 7, bc.clen[:], &e.h)
	canonical(bc.clen[:], bc.ccode[:]) // needed by writeBlock; cheap (19 symbols)
	bc.hclen = numCL
	for bc.hclen > 4 && bc.clen[clOrder[bc.hclen-1]] == 0 {
		bc.hclen--
	}
}
