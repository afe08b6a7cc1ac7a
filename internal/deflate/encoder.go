package deflate

import (
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"math/bits"
)

const (
	windowSize = 1 << 15
	windowMask = windowSize - 1
	// maxDist is one less than the format allows: with it, a chain link slot (indexed by
	// position mod the window) is never overwritten by a position the matcher could still reach
	// through it, so every link followed is current.
	maxDist  = windowSize - 1
	minMatch = 3
	maxMatch = 258
	hashBits = 15
	hashSize = 1 << hashBits

	blockSyms = 1<<14 - 1 // symbols per block: zlib's lit_bufsize - 1 at memLevel 8
	endBlock  = 256
	numLit    = 286 // literal/length alphabet (286, 287 are never used)
	numDist   = 30
	numCL     = 19 // code length alphabet
)

// Level is a compression level, 1 (fastest) to 9 (smallest), as zlib's.
type Level int

const (
	BestSpeed          Level = 1
	DefaultCompression Level = 6
	BestCompression    Level = 9
)

// params are zlib's configuration_table entries for deflate_slow: a match this long (good) cuts
// the chain search to a quarter, one this long (lazy) is taken without looking one byte further,
// one this long (nice) ends the search, and at most chain links are followed.
type params struct{ good, lazy, nice, chain int }

var levels = [10]params{
	1: {4, 4, 8, 4}, // zlib uses deflate_fast for 1-3; here they are lazy with short chains
	2: {4, 5, 16, 8},
	3: {4, 6, 32, 32},
	4: {4, 4, 16, 16},
	5: {8, 16, 32, 32},
	6: {8, 16, 128, 128},
	7: {8, 32, 128, 256},
	8: {32, 128, 258, 1024},
	9: {32, 258, 258, 4096},
}

// Encoder holds the matcher's tables and the current block's symbols, reused across calls.
type Encoder struct {
	level Level
	p     params
	head  [hashSize]uint32   // 1 + the last position whose 3 bytes hash here; 0: none
	prev  [windowSize]uint32 // 1 + the previous position with the same hash, by position mod window
	syms  []uint32           // block symbols: a literal byte, or matchFlag | dist<<8 | (length-3)
	lfreq [numLit]uint32
	dfreq [numDist]uint32
	bw    bitWriter
	h     huffScratch
	// block splitting (see flushBlock)
	hist []uint32                                // cumulative counts at each piece boundary
	at   [splitPieces + 1]int                    // symbol index of each boundary
	off  [splitPieces + 1]int                    // input offset of each boundary
	memo [splitPieces + 1][splitPieces + 1]int32 // cost of pieces a..b as one block; -1: unknown
	cuts []int
}

const matchFlag = 1 << 31

// NewEncoder returns an Encoder for level (1–9).
func NewEncoder(level Level) (*Encoder, error) {
	if level < 1 || level > 9 {
		return nil, fmt.Errorf("deflate: level %d out of range 1–9", level)
	}
	return &Encoder{level: level, p: levels[level], syms: make([]uint32, 0, blockSyms)}, nil
}

// AppendZlib appends the zlib (RFC 1950) stream of src to dst and returns the extended slice.
func (e *Encoder) AppendZlib(dst, src []byte) []byte {
	// CMF: deflate, 32 KiB window; FLG: the level class zlib writes, and the check bits.
	var flevel byte
	switch {
	case e.level < 2:
		flevel = 0
	case e.level < 6:
		flevel = 1
	case e.level == 6:
		flevel = 2
	default:
		flevel = 3
	}
	cmf := byte(0x78)
	flg := flevel << 6
	flg += byte(31 - (uint16(cmf)<<8|uint16(flg))%31)
	dst = append(dst, cmf, flg)
	dst = e.AppendDeflate(dst, src)
	return binary.BigEndian.AppendUint32(dst, adler32.Checksum(src))
}

// MaxInput is the largest src AppendDeflate and AppendZlib take: positions are kept in 32 bits.
const MaxInput = 1<<32 - 2

// AppendDeflate appends the raw DEFLATE (RFC 1951) stream of src to dst and returns it. It
// panics if src is longer than MaxInput (a programming error: callers compress bounded blocks).
func (e *Encoder) AppendDeflate(dst, src []byte) []byte {
	return e.AppendSegment(dst, src, true)
}

// AppendSegment appends src as one independent segment of a DEFLATE stream: its blocks refer to
// nothing before src. With last, the segment ends the stream (its last block is final); without,
// it ends with a sync flush (an empty stored block), so it ends on a byte boundary and segments
// can be concatenated — compressed in parallel — into one stream.
func (e *Encoder) AppendSegment(dst, src []byte, last bool) []byte {
	if int64(len(src)) > MaxInput {
		panic(fmt.Sprintf("deflate: input of %d bytes is longer than %d", len(src), int64(MaxInput)))
	}
	e.bw = bitWriter{out: dst}
	e.resetBlock()
	switch {
	case len(src) == 0 && last:
		// One final fixed-Huffman block holding only the end-of-block code.
		e.bw.put(1|1<<1, 3)
		e.bw.put(0, 7)
	case len(src) > 0:
		clear(e.head[:])
		e.compress(src, last)
	}
	if !last {
		e.bw.put(0, 3) // BFINAL 0, BTYPE 00 (stored), then LEN 0, NLEN 0xffff
		e.bw.align()
		e.bw.out = append(e.bw.out, 0, 0, 0xff, 0xff)
	}
	e.bw.align()
	return e.bw.out
}

func (e *Encoder) resetBlock() {
	e.syms = e.syms[:0]
}

// insert links position i (with at least minMatch bytes after it) into its hash chain and returns
// the previous head of that chain (1 + position, 0 for none).
func (e *Encoder) insert(src []byte, i int) uint32 {
	v := uint32(src[i])<<16 | uint32(src[i+1])<<8 | uint32(src[i+2])
	h := (v * 0x9E3779B1) >> (32 - hashBits)
	old := e.head[h]
	e.prev[i&windowMask] = old
	e.head[h] = uint32(i) + 1
	return old
}

// longest returns the longest match for position i found by following the chain from cand
// (1 + position), if longer than best; else best and bestPos unchanged.
func (e *Encoder) longest(src []byte, i int, cand uint32, best, bestPos int) (int, int) {
	chain := e.p.chain
	if best >= e.p.good {
		chain >>= 2
	}
	maxLen := min(maxMatch, len(src)-i)
	nice := min(e.p.nice, maxLen)
	if best >= maxLen {
		return best, bestPos
	}
	cur := src[i : i+maxLen]
	for cand != 0 {
		c := int(cand) - 1
		if i-c > maxDist {
			break
		}
		// Only a candidate that matches at best (one byte longer than the best so far) and at
		// the start can be longer.
		if src[c+best] == cur[best] && src[c] == cur[0] && src[c+1] == cur[1] {
			if n := matchLen(src[c:], cur); n > best {
				best, bestPos = n, c
				if n >= nice {
					break
				}
			}
		}
		chain--
		if chain == 0 {
			break
		}
		cand = e.prev[c&windowMask]
	}
	return best, bestPos
}

// matchLen returns the length of the common prefix of a and b (len(a) >= len(b)).
func matchLen(a, b []byte) int {
	n := 0
	for len(b)-n >= 8 {
		x := binary.LittleEndian.Uint64(a[n:]) ^ binary.LittleEndian.Uint64(b[n:])
		if x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
		n += 8
	}
	for n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// compress is zlib's deflate_slow: at each position look for a match; take the previous
// position's match unless this one is longer, in which case the previous byte goes out as a
// literal.
func (e *Encoder) compress(src []byte, last bool) {
	n := len(src)
	blockStart := 0 // first input byte of the current block
	done := 0       // input bytes covered by the symbols so far
	curLen, curPos := minMatch-1, 0
	pending := false // src[i-1] is not coded yet
	for i := 0; i < n; {
		var head uint32
		if i+minMatch <= n {
			head = e.insert(src, i)
		}
		prevLen, prevPos := curLen, curPos
		curLen = minMatch - 1
		if head != 0 && prevLen < e.p.lazy && i-(int(head)-1) <= maxDist {
			curLen, curPos = e.longest(src, i, head, prevLen, prevPos)
			if curLen <= prevLen {
				curLen = minMatch - 1 // nothing better than the previous match
			} else if curLen == minMatch && i-curPos > tooFar {
				curLen = minMatch - 1
			}
		}
		switch {
		case prevLen >= minMatch && curLen <= prevLen:
			start := i - 1
			e.tallyMatch(start-prevPos, prevLen)
			end := start + prevLen
			for j := i + 1; j < end && j+minMatch <= n; j++ {
				e.insert(src, j)
			}
			i = end
			done = end
			pending = false
			curLen = minMatch - 1
		case pending:
			e.tallyLit(src[i-1])
			done = i
			i++
		default:
			pending = true
			i++
		}
		if len(e.syms) == blockSyms {
			e.flushBlock(src[blockStart:done], false)
			blockStart = done
		}
	}
	if pending {
		e.tallyLit(src[n-1])
		done = n
	}
	e.flushBlock(src[blockStart:done], last)
}

func (e *Encoder) tallyLit(b byte) {
	e.syms = append(e.syms, uint32(b))
}

func (e *Encoder) tallyMatch(dist, length int) {
	e.syms = append(e.syms, matchFlag|uint32(dist)<<8|uint32(length-minMatch))
}

var tooFar = 4096
