// Package inflate decompresses gzip streams (RFC 1952 members holding RFC 1951 deflate data) for
// the layers of a build, faster than klauspost/compress's gzip on one core (issue 17: layer
// decompression is the build's critical path, and the floor it was measured against).
//
// Why our own: the Go decompressors in the field (compress/flate, klauspost/compress/flate) read
// their input a byte at a time through io.ByteReader into a 32-bit bit buffer and decode one
// symbol per table walk. This one keeps the compressed bytes in a buffer of its own and refills a
// 64-bit bit buffer eight bytes at a time (the technique of libdeflate), decodes through 10-bit
// (literal/length) and 8-bit (distance) root tables with one level of subtables, and copies
// matches 8–16 bytes at a time. It accepts exactly what
// compress/flate and klauspost accept — the same Huffman code checks (an over-subscribed or
// incomplete code is corrupt, but for a single one-bit code; an empty distance code until it is
// used), the same gzip header checks (reserved flags, FHCRC, names up to 511 bytes) and the same
// multi-member rule — and reports the same errors (gzip.ErrHeader, gzip.ErrChecksum,
// flate.CorruptInputError, io.ErrUnexpectedEOF); FuzzInflate holds it to klauspost's output
// for any input.
//
// It runs in two stages, so that decompression uses a second core (issue 17: "both cores busy"):
// a goroutine decodes the bits into tokens (literals, matches, stored bytes) and Read carries them
// out into the 32 KiB window, computes the CRC-32 and hands the bytes out. The first stage checks
// every distance against what the member has made, so the second never reads outside the window.
// A panic of either stage (a bug) fails the stream with an "internal error" instead of the
// process.
//
// Limits: gzip only (zstd layers go through klauspost's zstd); no dictionary. Memory: 1.3 MiB of
// window and 256 KiB of tokens in flight per Reader; Close stops its goroutine.
package inflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"

	"github.com/imgfab/imgfab/internal/deflate"
)

const (
	histSize  = 32 << 10         // the deflate window
	chunk     = 1 << 20          // bytes decoded between two slides of the window
	outLimit  = histSize + chunk // no symbol is decoded once the window is filled this far
	maxMatch  = 258              // the longest match
	outSlack  = 16               // matches are copied 8 bytes at a time and may write this far past their end
	outSize   = outLimit + maxMatch + outSlack
	inSize    = 256 << 10 // compressed bytes read at a time
	inKeep    = 8         // bytes kept before the read position when the input buffer is refilled
	litRoot   = 10        // root bits of the literal/length table
	distRoot  = 8         // root bits of the distance table
	maxCode   = 15        // longest deflate code
	numLitLen = 288
	numDist   = 32
)

// A table entry: bits 0-3 the bits it consumes, 4-7 its extra bits (or a subtable's index bits),
// 8-10 its kind, 16-31 its value (a literal byte, a length or distance base, a subtable's start).
const (
	kindLiteral = iota << 8
	kindBase    // length or distance: value + extra bits
	kindEnd     // end of block
	kindSub     // pointer to a subtable
	kindInvalid // a symbol deflate does not define (286, 287; distances 30, 31) or a hole
	kindMask    = 7 << 8
)

func entry(kind, nbits, extra, value uint32) uint32 { return value<<16 | kind | extra<<4 | nbits }

var (
	lengthBase  = [29]uint32{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint32{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint32{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint32{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// The order code length code lengths are sent in (RFC 1951, 3.2.7).
	clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

func litEntry(sym int, nbits uint32) uint32 {
	switch {
	case sym < 256:
		return entry(kindLiteral, nbits, 0, uint32(sym))
	case sym == 256:
		return entry(kindEnd, nbits, 0, 0)
	case sym < 286:
		return entry(kindBase, nbits, lengthExtra[sym-257], lengthBase[sym-257])
	}
	return entry(kindInvalid, nbits, 0, 0)
}

func distEntry(sym int, nbits uint32) uint32 {
	if sym < 30 {
		return entry(kindBase, nbits, distExtra[sym], distBase[sym])
	}
	return entry(kindInvalid, nbits, 0, 0)
}

func codeLenEntry(sym int, nbits uint32) uint32 { return entry(kindLiteral, nbits, 0, uint32(sym)) }

// build fills t with the decoding table of the code with the given lengths (0: symbol unused):
// 1<<root entries indexed by the next root bits, then the subtables. It reports false for a code
// compress/flate rejects: over-subscribed, or incomplete but for a single one-bit code. An empty
// code is accepted; every entry then says invalid.
func build(t []uint32, lengths []uint8, root uint, mk func(sym int, nbits uint32) uint32) ([]uint32, bool) {
	var count [maxCode + 1]int
	maxLen := 0
	for _, l := range lengths {
		if l != 0 {
			count[l]++
			maxLen = max(maxLen, int(l))
		}
	}
	t = t[:0]
	invalid := entry(kindInvalid, 1, 0, 0)
	for range 1 << root {
		t = append(t, invalid)
	}
	if maxLen == 0 {
		return t, true
	}
	var next [maxCode + 2]int
	code := 0
	for l := 1; l <= maxLen; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	// completeness, as compress/flate counts it
	c := 0
	for l := 1; l <= maxLen; l++ {
		c = c<<1 + count[l]
	}
	if c != 1<<maxLen && !(c == 1 && maxLen == 1) {
		return t, false
	}
	subBits := uint(0)
	if maxLen > int(root) {
		subBits = uint(maxLen) - root
	}
	var sub [1 << litRoot]uint32 // root index → subtable start; 0: none yet (a start is ≥ 1<<root)
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		cd := next[l]
		next[l]++
		rev := reverse(uint32(cd), uint(l))
		if uint(l) <= root {
			e := mk(sym, uint32(l))
			for i := rev; i < 1<<root; i += 1 << l {
				t[i] = e
			}
			continue
		}
		ri := rev & (1<<root - 1)
		start := sub[ri]
		if start == 0 {
			start = uint32(len(t))
			sub[ri] = start
			for range 1 << subBits {
				t = append(t, invalid)
			}
			t[ri] = entry(kindSub, uint32(root), uint32(subBits), start)
		}
		e := mk(sym, uint32(uint(l)-root))
		for i := rev >> root; i < 1<<subBits; i += 1 << (uint(l) - root) {
			t[start+i] = e
		}
	}
	return t, true
}

func reverse(v uint32, n uint) uint32 {
	var r uint32
	for range n {
		r = r<<1 | v&1
		v >>= 1
	}
	return r
}

// decoder is the first stage of a Reader, in a goroutine of its own: it reads the compressed
// bytes, the gzip headers and trailers and the Huffman codes, and turns them into tokens
// (literals, matches, stored bytes, member ends) in batches for the second stage.
type decoder struct {
	r     io.Reader
	in    []byte
	pos   int   // next unread byte of in
	end   int   // end of the bytes read into in
	base  int64 // stream offset of in[0]
	eof   bool  // r is at its end
	rerr  error // r's error other than io.EOF
	extra int   // zero bytes put into the bit buffer past the end of r

	bitbuf uint64
	bitcnt uint

	state    int
	final    bool
	stored   int   // bytes left of a stored block
	produced int64 // bytes the member's tokens make so far: a distance may not reach before them

	lit, dist           []uint32 // the block's tables: the fixed ones, or dynLit and dynDist
	dynLit, dynDist, cl []uint32
	lens                [numLitLen + numDist]uint8

	toks   []uint32 // the batch being filled
	ti     int      // its length
	out    chan batch
	free   chan []uint32
	done   chan struct{} // closed by Close
	exited chan struct{} // closed when run returns
}

// A token: below 256 a literal; tokMatch|(length-3)<<15|(distance-1); tokRaw|n followed by n
// (≤ rawMax) stored bytes packed four to a token; tokEnd followed by the member's CRC-32 and
// size from its trailer.
const (
	tokMatch   = 1 << 31
	tokRaw     = 1 << 30
	tokEnd     = 1 << 29
	rawMax     = 256
	batchSize  = 16 << 10
	batchLimit = batchSize - rawMax/4 - 4 // a batch takes no token once this full
	batches    = 4                        // batches in flight
)

// batch is a run of tokens, and the error (io.EOF at the end) after them.
type batch struct {
	toks []uint32
	err  error
}

// Reader is a gzip decompressor in two stages: a decoder goroutine makes tokens, and Read
// carries them out into the window and hands out its bytes.
type Reader struct {
	d   *decoder
	out []byte
	op  int // next byte made goes to out[op]
	rp  int // next byte handed out
	ck  int // out[ck:op] is not in crc yet

	cur  []uint32 // the batch being carried out
	ci   int
	next error // the error after cur

	crc  uint32
	size uint32
	err  error
	once sync.Once
}

const (
	stateBlock   = iota // at a block header
	stateHuffman        // in a Huffman-coded block
	stateStored         // in a stored block
)

var fixedLit, fixedDist []uint32

func init() {
	fixedLit, _ = build(nil, deflate.FixedLitLen[:], litRoot, litEntry)
	var d [numDist]uint8
	for i := range d {
		d[i] = 5
	}
	fixedDist, _ = build(nil, d[:], distRoot, distEntry)
}

// NewReader reads the first member's gzip header from r and returns a Reader of the decompressed
// bytes of every member. Close stops its decoder goroutine.
func NewReader(r io.Reader) (*Reader, error) {
	d := &decoder{r: r, in: make([]byte, inSize+inKeep), out: make(chan batch, batches),
		free: make(chan []uint32, batches+2), done: make(chan struct{}), exited: make(chan struct{})}
	if err := d.header(); err != nil {
		return nil, err
	}
	go d.run()
	return &Reader{d: d, out: make([]byte, outSize)}, nil
}

// Close stops the decoder goroutine and waits until it has returned, so that the caller may reuse
// or close what it read from (a decoder blocked in a read of it returns when that read does:
// close the underlying stream first to end a stalled one). The Reader is not to be read after.
func (z *Reader) Close() error {
	z.once.Do(func() { close(z.d.done) })
	<-z.d.exited
	return nil
}

// fill reads more of r into in, keeping inKeep bytes before pos; it reports whether any came.
func (z *decoder) fill() bool {
	if z.eof || z.rerr != nil {
		return false
	}
	keep := min(z.pos, inKeep)
	if z.pos-keep > 0 {
		n := copy(z.in, z.in[z.pos-keep:z.end])
		z.base += int64(z.pos - keep)
		z.pos, z.end = keep, n
	}
	for z.end < len(z.in) {
		n, err := z.r.Read(z.in[z.end:])
		z.end += n
		if err == io.EOF {
			z.eof = true
			return n > 0
		}
		if err != nil {
			z.rerr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	return true
}

// refill puts bytes into the bit buffer until it holds at least 56 bits, zeros past the end of
// the input (counted in extra, so that using them is an error).
func (z *decoder) refill() {
	for z.bitcnt <= 56 {
		if z.pos == z.end && !z.fill() {
			z.extra++
			z.bitcnt += 8
			continue
		}
		z.bitbuf |= uint64(z.in[z.pos]) << z.bitcnt
		z.pos++
		z.bitcnt += 8
	}
}

// overrun reports whether bits past the end of the input were used.
func (z *decoder) overrun() bool { return z.extra > 0 && uint(z.extra)*8 > z.bitcnt }

// inputErr is the error for a stream that ends (or fails) before it should.
func (z *decoder) inputErr() error {
	if z.rerr != nil {
		return z.rerr
	}
	return io.ErrUnexpectedEOF
}

func (z *decoder) corrupt() error {
	return flate.CorruptInputError(z.base + int64(z.pos) - int64(z.bitcnt/8))
}

// bits takes n (≤ 32) bits from the bit buffer.
func (z *decoder) bits(n uint) (uint32, error) {
	if z.bitcnt < n {
		z.refill()
	}
	v := uint32(z.bitbuf & (1<<n - 1))
	z.bitbuf >>= n
	z.bitcnt -= n
	if z.overrun() {
		return 0, z.inputErr()
	}
	return v, nil
}

// giveBack returns the whole bytes of the bit buffer to the input and empties it, dropping the
// bits of a partial byte (the alignment of stored blocks and of the trailer).
func (z *decoder) giveBack() error {
	z.bitbuf >>= z.bitcnt % 8
	z.bitcnt -= z.bitcnt % 8
	n := int(z.bitcnt/8) - z.extra
	if n < 0 {
		return z.inputErr()
	}
	z.pos -= n
	z.bitbuf, z.bitcnt, z.extra = 0, 0, 0
	return nil
}

// readBytes reads len(p) bytes from the input (the bit buffer empty).
func (z *decoder) readBytes(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if z.pos == z.end && !z.fill() {
			if z.rerr != nil {
				return n, z.rerr
			}
			return n, io.EOF
		}
		k := copy(p[n:], z.in[z.pos:z.end])
		z.pos += k
		n += k
	}
	return n, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// header reads a member's header; at the end of the input it reports io.EOF, as compress/gzip
// does. A member's distances cannot reach the output of the one before.
func (z *decoder) header() error {
	var b [512]byte
	n, err := z.readBytes(b[:10])
	if err != nil {
		if n == 0 && err == io.EOF {
			return io.EOF // zero members, or none after the last (compress/gzip)
		}
		return noEOF(err)
	}
	if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
		return gzip.ErrHeader
	}
	flg := b[3]
	digest := crc32.ChecksumIEEE(b[:10])
	if flg&4 != 0 { // FEXTRA
		if _, err := z.readBytes(b[:2]); err != nil {
			return noEOF(err)
		}
		digest = crc32.Update(digest, crc32.IEEETable, b[:2])
		for left := int(binary.LittleEndian.Uint16(b[:2])); left > 0; {
			k := min(left, len(b))
			if _, err := z.readBytes(b[:k]); err != nil {
				return noEOF(err)
			}
			digest = crc32.Update(digest, crc32.IEEETable, b[:k])
			left -= k
		}
	}
	for _, f := range []byte{8, 16} { // FNAME, FCOMMENT: zero-terminated, as compress/gzip at most 512 bytes
		if flg&f == 0 {
			continue
		}
		for i := 0; ; i++ {
			if i >= len(b) {
				return gzip.ErrHeader
			}
			if _, err := z.readBytes(b[i : i+1]); err != nil {
				return noEOF(err)
			}
			if b[i] == 0 {
				digest = crc32.Update(digest, crc32.IEEETable, b[:i+1])
				break
			}
		}
	}
	if flg&2 != 0 { // FHCRC
		if _, err := z.readBytes(b[:2]); err != nil {
			return noEOF(err)
		}
		if binary.LittleEndian.Uint16(b[:2]) != uint16(digest) {
			return gzip.ErrHeader
		}
	}
	if flg>>5 != 0 {
		return gzip.ErrHeader
	}
	z.state, z.final, z.produced = stateBlock, false, 0
	return nil
}

// Read reads decompressed bytes.
func (z *Reader) Read(p []byte) (int, error) {
	for {
		if z.rp < z.op {
			n := copy(p, z.out[z.rp:z.op])
			z.rp += n
			return n, nil
		}
		if z.err != nil {
			return 0, z.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if z.op >= outLimit { // slide the window
			z.sum()
			copy(z.out, z.out[z.op-histSize:z.op])
			z.rp, z.op, z.ck = histSize, histSize, histSize
		}
		if z.ci == len(z.cur) {
			if z.next != nil {
				z.err = z.next
				continue
			}
			if z.cur != nil {
				select {
				case z.d.free <- z.cur[:cap(z.cur)]:
				default:
				}
			}
			b := <-z.d.out
			z.cur, z.ci, z.next = b.toks, 0, b.err
		}
		z.err = z.carryOut()
		z.sum()
	}
}

// sum adds the bytes made since the last call to the member's CRC-32 and size.
func (z *Reader) sum() {
	z.crc = crc32.Update(z.crc, crc32.IEEETable, z.out[z.ck:z.op])
	z.size += uint32(z.op - z.ck)
	z.ck = z.op
}

// carryOut makes the bytes of the current batch's tokens until the window is filled to outLimit
// or the batch ends; at a member's end it checks the trailer's CRC-32 and size.
func (z *Reader) carryOut() (err error) {
	toks, ci, op := z.cur, z.ci, z.op
	out := (*[outSize]byte)(z.out)
	defer func() {
		z.ci, z.op = ci, op
		if v := recover(); v != nil {
			z.ci, z.op, err = len(toks), z.rp, errInternal{v}
		}
	}()
	for ci < len(toks) && op < outLimit {
		t := toks[ci]
		ci++
		switch {
		case t < 256:
			out[op] = byte(t)
			op++
		case t&tokMatch != 0:
			length, dst := int(t>>15&255)+3, int(t&(1<<15-1))+1
			src := op - dst
			switch {
			case dst >= length && length > 32:
				copy(out[op:op+length], out[src:src+length])
			case dst >= 16:
				for i := 0; i < length; i += 16 {
					binary.LittleEndian.PutUint64(out[op+i:], binary.LittleEndian.Uint64(out[src+i:]))
					binary.LittleEndian.PutUint64(out[op+i+8:], binary.LittleEndian.Uint64(out[src+i+8:]))
				}
			case dst >= 8:
				for i := 0; i < length; i += 8 {
					binary.LittleEndian.PutUint64(out[op+i:], binary.LittleEndian.Uint64(out[src+i:]))
				}
			case dst == 1:
				b := out[src]
				s := out[op : op+length]
				for i := range s {
					s[i] = b
				}
			default:
				for i := range length {
					out[op+i] = out[src+i]
				}
			}
			op += length
		case t&tokRaw != 0:
			n := int(t & (1<<16 - 1))
			for i := 0; i < n; i += 4 {
				binary.LittleEndian.PutUint32(out[op+i:], toks[ci])
				ci++
			}
			op += n
		default: // tokEnd
			z.op = op
			z.sum()
			crc, size := toks[ci], toks[ci+1]
			ci += 2
			if crc != z.crc || size != z.size {
				return gzip.ErrChecksum
			}
			z.crc, z.size = 0, 0
		}
	}
	return nil
}

// errInternal wraps a panic of either stage (a bug): the stream fails instead of the process.
type errInternal struct{ v any }

func (e errInternal) Error() string { return fmt.Sprintf("inflate: internal error: %v", e.v) }

// run decodes batches of tokens and sends them until the stream ends, an error, or Close.
func (z *decoder) run() {
	defer close(z.exited)
	defer func() {
		if v := recover(); v != nil {
			select {
			case z.out <- batch{nil, errInternal{v}}:
			case <-z.done:
			}
		}
	}()
	for {
		select {
		case z.toks = <-z.free:
		default:
			z.toks = make([]uint32, batchSize)
		}
		z.ti = 0
		err := z.step()
		select {
		case z.out <- batch{z.toks[:z.ti], err}:
		case <-z.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// step makes tokens until the batch is full, the stream ends (io.EOF) or an error.
func (z *decoder) step() error {
	for z.ti < batchLimit {
		switch z.state {
		case stateBlock:
			if z.final {
				if err := z.trailer(); err != nil {
					return err
				}
				continue
			}
			if err := z.blockHeader(); err != nil {
				return err
			}
		case stateStored:
			if err := z.copyStored(); err != nil {
				return err
			}
		case stateHuffman:
			if err := z.huffman(); err != nil {
				return err
			}
		}
	}
	return nil
}

// trailer passes a member's CRC-32 and size on (the second stage checks them), then reads the
// next member's header: io.EOF at the end of the input.
func (z *decoder) trailer() error {
	if err := z.giveBack(); err != nil {
		return err
	}
	var b [8]byte
	if _, err := z.readBytes(b[:]); err != nil {
		return noEOF(err)
	}
	z.toks[z.ti], z.toks[z.ti+1], z.toks[z.ti+2] = tokEnd, binary.LittleEndian.Uint32(b[:4]), binary.LittleEndian.Uint32(b[4:])
	z.ti += 3
	return z.header()
}

func (z *decoder) blockHeader() error {
	h, err := z.bits(3)
	if err != nil {
		return err
	}
	z.final = h&1 != 0
	switch h >> 1 {
	case 0:
		if err := z.giveBack(); err != nil {
			return err
		}
		var b [4]byte
		if _, err := z.readBytes(b[:]); err != nil {
			return noEOF(err)
		}
		n, nn := binary.LittleEndian.Uint16(b[:2]), binary.LittleEndian.Uint16(b[2:])
		if n != ^nn {
			return z.corrupt()
		}
		z.stored, z.state = int(n), stateStored
	case 1:
		z.lit, z.dist = fixedLit, fixedDist
		z.state = stateHuffman
	case 2:
		if err := z.dynamic(); err != nil {
			return err
		}
		z.state = stateHuffman
	default:
		return z.corrupt()
	}
	return nil
}

func (z *decoder) copyStored() error {
	for z.stored > 0 && z.ti < batchLimit {
		if z.pos == z.end && !z.fill() {
			return z.inputErr()
		}
		n := min(z.end-z.pos, z.stored, rawMax)
		z.toks[z.ti] = tokRaw | uint32(n)
		z.ti++
		var w [4]byte
		for i := 0; i < n; i += 4 {
			copy(w[:], z.in[z.pos+i:z.pos+min(n, i+4)])
			z.toks[z.ti] = binary.LittleEndian.Uint32(w[:])
			z.ti++
		}
		z.pos += n
		z.stored -= n
		z.produced += int64(n)
	}
	if z.stored == 0 {
		z.state = stateBlock
	}
	return nil
}

// dynamic reads a dynamic block's code lengths and builds its tables (RFC 1951, 3.2.7).
func (z *decoder) dynamic() error {
	v, err := z.bits(14)
	if err != nil {
		return err
	}
	nlit, ndist, nclen := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlit > 286 || ndist > 30 { // as compress/flate
		return z.corrupt()
	}
	var cl [19]uint8
	for i := range nclen {
		b, err := z.bits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(b)
	}
	var ok bool
	if z.cl, ok = build(z.cl, cl[:], 7, codeLenEntry); !ok {
		return z.corrupt()
	}
	lens := z.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if z.bitcnt < 16 {
			z.refill()
		}
		e := z.cl[z.bitbuf&(1<<7-1)]
		if e&kindMask == kindInvalid {
			if z.overrun() {
				return z.inputErr()
			}
			return z.corrupt()
		}
		n := uint(e & 15)
		z.bitbuf >>= n
		z.bitcnt -= n
		if z.overrun() {
			return z.inputErr()
		}
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return z.corrupt()
			}
			b, err := z.bits(2)
			if err != nil {
				return err
			}
			rep, val = 3+int(b), lens[i-1]
		case 17:
			b, err := z.bits(3)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		default:
			b, err := z.bits(7)
			if err != nil {
				return err
			}
			rep = 11 + int(b)
		}
		if i+rep > len(lens) {
			return z.corrupt()
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if z.dynLit, ok = build(z.dynLit, lens[:nlit], litRoot, litEntry); !ok {
		return z.corrupt()
	}
	if z.dynDist, ok = build(z.dynDist, lens[nlit:], distRoot, distEntry); !ok {
		return z.corrupt()
	}
	z.lit, z.dist = z.dynLit, z.dynDist
	return nil
}

var errCorrupt = errors.New("corrupt")

// huffman decodes the symbols of a Huffman-coded block into tokens until its end or until the
// batch is full. The state lives in locals for the loop and goes back to z on return.
func (z *decoder) huffman() (err error) {
	bitbuf, bitcnt, pos, ti, produced := z.bitbuf, z.bitcnt, z.pos, z.ti, z.produced
	in, lit, dist := z.in, z.lit, z.dist
	// Fixed-size views: indexes masked to the root bits, and ti below batchLimit, need no
	// bounds check.
	litRootT := (*[1 << litRoot]uint32)(lit)
	distRootT := (*[1 << distRoot]uint32)(dist)
	toks := (*[batchSize]uint32)(z.toks)
	tail := z.extra > 0
	defer func() {
		z.bitbuf, z.bitcnt, z.pos, z.ti, z.produced = bitbuf, bitcnt, pos, ti, produced
		if err == io.ErrUnexpectedEOF {
			err = z.inputErr()
		} else if err == errCorrupt {
			if z.overrun() {
				err = z.inputErr()
			} else {
				err = z.corrupt()
			}
		} else if err == nil && z.overrun() {
			err = z.inputErr()
		}
	}()
	for ti < batchLimit {
		// At least 48 bits: a length code and its extra bits, a distance code and its extra bits.
		if bitcnt < 48 {
			if pos+8 <= z.end {
				bitbuf |= binary.LittleEndian.Uint64(in[pos:]) << bitcnt
				pos += int((63 - bitcnt) >> 3)
				bitcnt |= 56
			} else { // near the end of the input: a byte at a time, zeros past it
				z.bitbuf, z.bitcnt, z.pos = bitbuf, bitcnt, pos
				z.refill()
				bitbuf, bitcnt, pos, in = z.bitbuf, z.bitcnt, z.pos, z.in
				tail = z.extra > 0
			}
		}
		e := litRootT[bitbuf&(1<<litRoot-1)]
		if e&kindMask == kindSub {
			bitbuf >>= litRoot
			bitcnt -= litRoot
			e = lit[e>>16+uint32(bitbuf&(1<<(e>>4&15)-1))]
		}
		n := uint(e & 15)
		bitbuf >>= n
		bitcnt -= n
		if tail && uint(z.extra)*8 > bitcnt { // the symbol took bits past the end of the input
			return io.ErrUnexpectedEOF
		}
		switch e & kindMask {
		case kindLiteral:
			toks[ti] = e >> 16
			ti++
			produced++
			// Most symbols are literals: take a second one before refilling (at least 33 bits
			// are left of the 48, enough for a code of 15).
			e = litRootT[bitbuf&(1<<litRoot-1)]
			if e&kindMask == kindLiteral && !tail {
				n = uint(e & 15)
				bitbuf >>= n
				bitcnt -= n
				toks[ti] = e >> 16
				ti++
				produced++
			}
			continue
		case kindEnd:
			z.state = stateBlock
			return nil
		case kindInvalid:
			return errCorrupt
		}
		x := e >> 4 & 15
		length := e>>16 + uint32(bitbuf&(1<<x-1))
		bitbuf >>= x
		bitcnt -= uint(x)
		d := distRootT[bitbuf&(1<<distRoot-1)]
		if d&kindMask == kindSub {
			bitbuf >>= distRoot
			bitcnt -= distRoot
			d = dist[d>>16+uint32(bitbuf&(1<<(d>>4&15)-1))]
		}
		if d&kindMask != kindBase {
			return errCorrupt
		}
		n = uint(d & 15)
		bitbuf >>= n
		bitcnt -= n
		x = d >> 4 & 15
		dst := d>>16 + uint32(bitbuf&(1<<x-1))
		bitbuf >>= x
		bitcnt -= uint(x)
		if tail && uint(z.extra)*8 > bitcnt {
			return io.ErrUnexpectedEOF
		}
		if int64(dst) > produced {
			return errCorrupt
		}
		toks[ti] = tokMatch | (length-3)<<15 | (dst - 1)
		ti++
		produced += int64(length)
	}
	return nil
}
