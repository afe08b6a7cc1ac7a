package initrd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame walker passes exactly one compressed stream (a zstd frame, an xz stream) from the input
// to its decoder and then reports io.EOF, reading the stream's own framing to know where it
// ends: the decoders themselves go on to look for a next frame and take bytes that belong to the
// next segment. It checks the sizes the decoder would allocate from (the xz dictionary) before
// the decoder sees them. It does not decode; the decoder checks everything else.
type walker struct {
	in   *input
	pass int64                   // bytes of the current piece still to hand over unread
	step func(*walker) error     // parses the next piece's header and sets pass; nil at the end
	err  error                   // sticky
	off  int64                   // bytes handed over so far (for messages)
	max  int64                   // largest dictionary accepted (xz)
	st   struct{ a, b, c int64 } // per-format state
}

func (w *walker) Read(p []byte) (int, error) {
	for w.pass == 0 {
		if w.err != nil {
			return 0, w.err
		}
		if w.step == nil {
			return 0, io.EOF
		}
		if err := w.step(w); err != nil {
			w.err = err
			return 0, err
		}
	}
	if int64(len(p)) > w.pass {
		p = p[:w.pass]
	}
	n, err := w.in.Read(p)
	w.pass -= int64(n)
	w.off += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// peek returns the next n bytes of the piece being parsed, or an error naming what was cut short.
func (w *walker) peek(n int, what string) ([]byte, error) {
	b, err := w.in.Peek(n)
	if len(b) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%s at stream offset %d: %w", what, w.off, err)
	}
	return b, nil
}

// ---- zstd (RFC 8878 §3.1.1) ----

func newZstdWalker(in *input) *walker {
	return &walker{in: in, step: zstdHeader}
}

// zstdHeader passes the magic and Frame_Header (§3.1.1.1): its length follows from the
// Frame_Header_Descriptor.
func zstdHeader(w *walker) error {
	b, err := w.peek(5, "zstd frame header")
	if err != nil {
		return err
	}
	fhd := b[4]
	if fhd&0x08 != 0 { // §3.1.1.1.1.4: Reserved_Bit must be zero
		return fmt.Errorf("zstd frame header: reserved bit set in descriptor 0x%02x", fhd)
	}
	single := fhd&0x20 != 0
	n := int64(5)
	if !single {
		n++ // Window_Descriptor
	}
	n += [4]int64{0, 1, 2, 4}[fhd&3] // Dictionary_ID
	switch fcs := fhd >> 6; {        // Frame_Content_Size
	case fcs == 0 && single:
		n++
	case fcs > 0:
		n += [4]int64{0, 2, 4, 8}[fcs]
	}
	w.pass = n
	w.st.a = int64(fhd>>2) & 1 // Content_Checksum_Flag
	w.step = zstdBlock
	return nil
}

// zstdBlock passes one block (§3.1.1.2): a 3-byte little-endian header (Last_Block, Block_Type,
// Block_Size) and its content; after the last block, the optional 4-byte Content_Checksum.
func zstdBlock(w *walker) error {
	b, err := w.peek(3, "zstd block header")
	if err != nil {
		return err
	}
	h := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
	size := int64(h >> 3)
	switch typ := (h >> 1) & 3; typ {
	case 0: // Raw_Block
	case 1: // RLE_Block: one byte, repeated Block_Size times
		size = 1
	case 2: // Compressed_Block: Block_Size is at most 128 KiB (§3.1.1.2.3)
		if size > 128<<10 {
			return fmt.Errorf("zstd block at stream offset %d: size %d over 128 KiB", w.off, size)
		}
	default:
		return fmt.Errorf("zstd block at stream offset %d: reserved block type 3", w.off)
	}
	w.pass = 3 + size
	if h&1 != 0 {
		w.step = nil
		w.pass += 4 * w.st.a
	}
	return nil
}

// ---- xz (The .xz File Format 1.1.0, https://tukaani.org/xz/xz-file-format.txt) ----

func newXzWalker(in *input, maxDict int64) *walker {
	return &walker{in: in, step: xzStreamHeader, max: maxDict}
}

// xzCheckSize is the size of a block's Check field by Check ID (§3.4).
func xzCheckSize(id byte) int64 {
	if id == 0 {
		return 0
	}
	return 4 << ((id - 1) / 3)
}

// xzStreamHeader passes the 12-byte Stream Header (§2.1.1): magic, flags (Check ID), CRC32.
func xzStreamHeader(w *walker) error {
	b, err := w.peek(12, "xz stream header")
	if err != nil {
		return err
	}
	if b[6] != 0 || b[7]&0xf0 != 0 {
		return fmt.Errorf("xz stream header: unsupported flags %02x %02x", b[6], b[7])
	}
	w.st.a = xzCheckSize(b[7] & 0x0f)
	w.st.c = 0 // blocks
	w.pass = 12
	w.step = xzBlockOrIndex
	return nil
}

// xzBlockOrIndex passes a Block Header (§3.1), checking the LZMA2 dictionary size (§5.3.1)
// before the decoder allocates it, or starts the Index (§4) when the first byte is zero.
func xzBlockOrIndex(w *walker) error {
	b, err := w.peek(1, "xz block header")
	if err != nil {
		return err
	}
	if b[0] == 0 {
		return xzIndex(w)
	}
	size := (int(b[0]) + 1) * 4
	if b, err = w.peek(size, "xz block header"); err != nil {
		return err
	}
	h := b[1 : size-4] // flags .. padding; the CRC32 is the decoder's to check
	flags := h[0]
	if flags&0x3c != 0 {
		return fmt.Errorf("xz block header at stream offset %d: reserved flags 0x%02x", w.off, flags)
	}
	h = h[1:]
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} { // Compressed, Uncompressed Size
		if present {
			if _, n := binary.Uvarint(h); n <= 0 || n > 9 {
				return fmt.Errorf("xz block header at stream offset %d: bad size field", w.off)
			} else {
				h = h[n:]
			}
		}
	}
	var last uint64
	for i := 0; i <= int(flags&3); i++ { // Filter Flags (§3.1.5)
		id, n := binary.Uvarint(h)
		if n <= 0 || n > 9 {
			return fmt.Errorf("xz block header at stream offset %d: bad filter ID", w.off)
		}
		h = h[n:]
		psize, n := binary.Uvarint(h)
		if n <= 0 || n > 9 || psize > uint64(len(h)-n) {
			return fmt.Errorf("xz block header at stream offset %d: bad filter properties size", w.off)
		}
		props := h[n : n+int(psize)]
		h = h[n+int(psize):]
		if id == 0x21 { // LZMA2: one byte, the dictionary size (§5.3.1)
			if len(props) != 1 || props[0] > 40 {
				return fmt.Errorf("xz block header at stream offset %d: bad LZMA2 properties % x", w.off, props)
			}
			if d := xzDictSize(props[0]); d > w.max {
				return fmt.Errorf("xz block header at stream offset %d: LZMA2 dictionary of %d bytes: %w (%d)", w.off, d, ErrLimit, w.max)
			}
		}
		last = id
	}
	if last != 0x21 {
		return fmt.Errorf("xz block header at stream offset %d: last filter 0x%x is not LZMA2", w.off, last)
	}
	w.st.c++
	w.st.b = 0 // the block's compressed size so far
	w.pass = int64(size)
	w.step = xzChunk
	return nil
}

// xzDictSize decodes an LZMA2 dictionary size byte (§5.3.1): 2 or 3 times a power of two.
func xzDictSize(b byte) int64 {
	if b == 40 {
		return 1<<32 - 1
	}
	return int64(2|b&1) << (b/2 + 11)
}

// xzChunk passes one LZMA2 chunk: its control byte says how long it is (there is no sizes table in
// the format's spec; this follows the LZMA2 layout xz-embedded and liblzma decode). Control 0 ends
// the block's data; then come the Block Padding to a multiple of 4 and the Check.
func xzChunk(w *walker) error {
	b, err := w.peek(1, "xz LZMA2 chunk")
	if err != nil {
		return err
	}
	var n int64
	switch c := b[0]; {
	case c == 0:
		w.st.b++
		w.pass = 1 + (4-w.st.b%4)%4 + w.st.a
		w.step = xzBlockOrIndex
		return nil
	case c == 1 || c == 2: // uncompressed chunk: 2-byte size - 1
		if b, err = w.peek(3, "xz LZMA2 chunk"); err != nil {
			return err
		}
		n = 3 + int64(binary.BigEndian.Uint16(b[1:])) + 1
	case c >= 0x80: // LZMA chunk: uncompressed size (2 bytes + 5 bits), compressed size - 1, props if c >= 0xc0
		if b, err = w.peek(5, "xz LZMA2 chunk"); err != nil {
			return err
		}
		n = 5 + int64(binary.BigEndian.Uint16(b[3:])) + 1
		if c >= 0xc0 {
			n++
		}
	default:
		return fmt.Errorf("xz LZMA2 chunk at stream offset %d: invalid control byte 0x%02x", w.off, c)
	}
	w.st.b += n
	w.pass = n
	return nil
}

// xzIndex passes the Index (§4): indicator, number of records (one per block), the records (two
// multibyte integers each), padding to a multiple of 4, CRC32; then the 12-byte Stream Footer.
func xzIndex(w *walker) error {
	b, _ := w.in.Peek(10) // the caller peeked the indicator: b holds at least it
	count, n := binary.Uvarint(b[1:])
	if n <= 0 || n > 9 {
		return fmt.Errorf("xz index at stream offset %d: record count: %w", w.off, errXzVLI)
	}
	if count > 1<<40 || int64(count) != w.st.c {
		return fmt.Errorf("xz index at stream offset %d: %d records for %d blocks", w.off, count, w.st.c)
	}
	w.st.b = 1 + int64(n) // index bytes so far
	w.st.c = int64(count) // records left
	w.pass = w.st.b
	w.step = xzRecord
	return nil
}

var errXzVLI = errors.New("bad or truncated multibyte integer")

func xzRecord(w *walker) error {
	if w.st.c == 0 {
		w.pass = (4-w.st.b%4)%4 + 4 + 12 // padding, CRC32, Stream Footer (§2.1.2)
		w.step = nil
		return nil
	}
	b, _ := w.in.Peek(18) // short at the end of the input: Uvarint then fails
	k := 0
	for range 2 {
		_, n := binary.Uvarint(b[k:])
		if n <= 0 || n > 9 {
			return fmt.Errorf("xz index record at stream offset %d: %w", w.off, errXzVLI)
		}
		k += n
	}
	w.st.c--
	w.st.b += int64(k)
	w.pass = int64(k)
	return nil
}
