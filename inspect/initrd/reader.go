package initrd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Entry is one member of an archive.
type Entry struct {
	Name     string      // cleaned, relative ("usr/lib/modules/6.1.0-50-amd64/kernel/drivers/nvme/host/nvme.ko"); "." for the root
	Mode     fs.FileMode // type bits + permissions
	Size     int64       // bytes of data (for a symlink, its target's length)
	Linkname string      // symlink target (read from the data, bounded)
	Segment  int         // index of the segment it came from
}

// ErrLimit is wrapped by the errors of input that goes over one of the package's limits.
var ErrLimit = errors.New("over the limit")

// Error is what Reader and Summarize return for a malformed or over-limit initrd: where the
// fault is and what it is.
type Error struct {
	Segment     int    // index of the segment, or -1 for bytes outside any segment
	Compression string // the segment's compression ("none", "gzip", …)
	Start       int64  // input offset of the segment (with Segment -1: of the bytes at fault)
	Entry       int    // index of the entry in its segment, or -1
	Offset      int64  // offset in the segment's content (decompressed bytes): the entry's header or the fault
	Msg         string // the field and what is wrong with it
	Err         error  // the cause (a decoder's or the reader's error, ErrLimit), or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("initrd: ")
	switch {
	case e.Segment < 0:
		fmt.Fprintf(&b, "input offset %d: ", e.Start)
	case e.Entry < 0:
		fmt.Fprintf(&b, "segment %d (%s at input offset %d): at offset %d: ", e.Segment, e.Compression, e.Start, e.Offset)
	default:
		fmt.Fprintf(&b, "segment %d (%s at input offset %d): entry %d at offset %d: ", e.Segment, e.Compression, e.Start, e.Entry, e.Offset)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		if e.Msg != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// limits bound everything the input can make the reader do (doc.go, "# Limits").
type limits struct {
	bytes    int64 // archive bytes in all (uncompressed segments and decompressed content)
	entries  int   // headers, trailers included
	name     int   // name size field, NUL included
	link     int   // symlink target
	pad      int64 // one run of zero padding
	segments int
	window   int64 // zstd window, xz and lzma dictionary
	builtin  int64 // a modules.builtin file (Summarize)
	names    int64 // bytes of all names kept for Summary.Has
}

var defaultLimits = limits{
	bytes:    4 << 30,
	entries:  1_000_000,
	name:     4096,
	link:     4096,
	pad:      1 << 20,
	segments: 256,
	window:   128 << 20,
	builtin:  4 << 20,
	names:    64 << 20,
}

// Reader reads the entries of every archive of an initramfs, segment after segment.
type Reader struct {
	ctx context.Context
	lim limits
	in  *input

	segs     []string // compression of each segment seen
	segStart int64    // input offset of the current segment
	content  *content // the current segment's archive bytes; nil between segments
	archive  bool     // between an archive's first header and its trailer
	lastNone bool     // the last segment was uncompressed (the next must start 4-aligned)
	entry    int      // entries (headers) of the current segment
	total    int64    // archive bytes read in all segments
	headers  int      // headers read in all segments

	cur      *Entry
	curOff   int64         // content offset of cur's header
	remain   int64         // cur's data not yet consumed
	pad      int64         // padding after cur's data
	link     *bytes.Reader // cur's data when it is a symlink (already read)
	checksum bool          // 070702: the data's byte sum must equal want
	sum      uint32
	want     uint32

	name [4096 + 4]byte // the name being read (the limit is at most 4096)
	buf  []byte         // scratch for skipping data
	err  error          // sticky
}

// NewReader returns a Reader of the initramfs r (a concatenation of uncompressed and compressed
// segments, as the kernel's initramfs unpacker accepts them).
func NewReader(r io.Reader) *Reader {
	return newReader(context.Background(), r, defaultLimits)
}

func newReader(ctx context.Context, r io.Reader, lim limits) *Reader {
	return &Reader{ctx: ctx, lim: lim, in: newInput(ctx, r)}
}

// Segments returns the compression of each segment seen so far: "none", "gzip", "zstd", "xz",
// "lz4", "lzma" or "bzip2".
func (r *Reader) Segments() []string {
	return append([]string(nil), r.segs...)
}

// content is the current segment's archive bytes: the input itself for an uncompressed segment,
// else its decoder's output through a buffer (the parser peeks at the padding between archives).
type content struct {
	r      io.Reader     // budgeted: the input, or the decoder
	br     *bufio.Reader // compressed segments only
	off    int64         // bytes consumed since the segment's start
	closer func()
}

func (c *content) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.br != nil {
		n, err = c.br.Read(p)
	} else {
		n, err = c.r.Read(p)
	}
	c.off += int64(n)
	return n, err
}

// budget counts the archive bytes a segment yields against limits.bytes.
type budget struct {
	r  io.Reader
	rd *Reader
}

func (b budget) Read(p []byte) (int, error) {
	left := b.rd.lim.bytes - b.rd.total
	if left <= 0 {
		return 0, fmt.Errorf("archive bytes: more than %d: %w", b.rd.lim.bytes, ErrLimit)
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.r.Read(p)
	b.rd.total += int64(n)
	if err != nil && err != io.EOF {
		err = limitErr(err)
	}
	return n, err
}

// Next advances to the next entry of the initrd; io.EOF after the last segment.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.fail(err)
		return nil, r.err
	}
	return e, nil
}

func (r *Reader) fail(err error) {
	r.err = err
	r.cur = nil
	if r.content != nil && r.content.closer != nil {
		r.content.closer()
		r.content.closer = nil
	}
}

func (r *Reader) next() (*Entry, error) {
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	if r.cur != nil {
		if err := r.skipData(); err != nil {
			return nil, err
		}
		r.cur = nil
	}
	for {
		if r.content == nil {
			ok, err := r.startSegment()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, io.EOF
			}
		}
		if !r.archive {
			ok, err := r.nextArchive()
			if err != nil {
				return nil, err
			}
			if !ok {
				r.endSegment()
				continue
			}
		}
		e, err := r.readHeader()
		if err != nil {
			return nil, err
		}
		if e != nil {
			return e, nil
		}
		r.archive = false // a trailer
		if r.content.br == nil {
			r.endSegment() // an uncompressed segment is one archive
		}
	}
}

func (r *Reader) compression() string { return r.segs[len(r.segs)-1] }

// segErr is an error at offset off of the current segment's content, outside an entry.
func (r *Reader) segErr(off int64, err error, format string, args ...any) error {
	return &Error{Segment: len(r.segs) - 1, Compression: r.compression(), Start: r.segStart, Entry: -1,
		Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// entryErr is an error in the entry whose header is being read or was read at r.curOff.
func (r *Reader) entryErr(err error, format string, args ...any) error {
	return &Error{Segment: len(r.segs) - 1, Compression: r.compression(), Start: r.segStart, Entry: r.entry - 1,
		Offset: r.curOff, Msg: fmt.Sprintf(format, args...), Err: err}
}

// inputErr is an error about the bytes at input offset off, outside any segment.
func inputErr(off int64, err error, format string, args ...any) error {
	return &Error{Segment: -1, Start: off, Entry: -1, Msg: fmt.Sprintf(format, args...), Err: err}
}

// codec is a compression the kernel accepts for an initramfs segment (lib/decompress.c,
// compressed_formats), by its magic number.
type codec struct {
	name  string
	magic string
	open  func(r *Reader) (io.Reader, func(), error) // nil: the kernel knows it, we do not read it
}

var codecs = []codec{
	{"gzip", "\x1f\x8b", openGzip},
	{"gzip", "\x1f\x9e", nil}, // old gzip, which the kernel still lists
	{"bzip2", "BZh", openBzip2},
	{"lzma", "\x5d\x00\x00", openLzma},
	{"xz", "\xfd7zXZ\x00", openXz},
	{"lzo", "\x89LZO", nil},
	{"lz4", "\x02\x21\x4c\x18", openLz4},
	{"zstd", "\x28\xb5\x2f\xfd", openZstd},
}

// startSegment skips zero padding (as the kernel does between segments) and opens the next
// segment; false at the end of the input.
func (r *Reader) startSegment() (bool, error) {
	in := r.in
	start := in.off
	for {
		b, err := in.Peek(4096)
		z := 0
		for z < len(b) && b[z] == 0 {
			z++
		}
		in.Discard(z)
		if in.off-start > r.lim.pad {
			return false, inputErr(start, ErrLimit, "zero padding longer than %d bytes", r.lim.pad)
		}
		if z < len(b) {
			break
		}
		if len(b) == 0 {
			if err == io.EOF {
				return false, nil
			}
			return false, inputErr(in.off, err, "reading")
		}
	}
	off := in.off
	head, _ := in.Peek(8)
	// After an uncompressed archive the kernel's cpio parser eats the zeros and then needs
	// whatever follows to be 4-aligned (init/initramfs.c, do_reset: "broken padding").
	if r.lastNone && off%4 != 0 {
		return false, inputErr(off, nil, "broken padding: %d zero bytes after the uncompressed archive ending at %d leave the next segment unaligned (the kernel rejects it)", off-start, start)
	}
	if len(r.segs) >= r.lim.segments {
		return false, inputErr(off, ErrLimit, "more than %d segments", r.lim.segments)
	}
	if bytes.HasPrefix(head, []byte("070701")) || bytes.HasPrefix(head, []byte("070702")) {
		if off%4 != 0 { // init/initramfs.c, unpack_to_rootfs: a cpio archive starts 4-aligned
			return false, inputErr(off, nil, "cpio archive at an unaligned offset (the kernel takes it for compressed data)")
		}
		r.begin("none", off)
		r.content = &content{r: budget{in, r}}
		r.archive = true
		return true, nil
	}
	for _, c := range codecs {
		if !bytes.HasPrefix(head, []byte(c.magic)) {
			continue
		}
		if c.open == nil {
			return false, inputErr(off, errors.ErrUnsupported, "%s-compressed segment (% x)", c.name, head)
		}
		r.begin(c.name, off)
		dec, closer, err := c.open(r)
		if err != nil {
			return false, r.segErr(0, limitErr(err), "%s header", c.name)
		}
		r.content = &content{r: budget{dec, r}, closer: closer}
		r.content.br = bufio.NewReaderSize(r.content.r, 64<<10)
		return true, nil
	}
	if bytes.HasPrefix(head, []byte("0707")) {
		return false, inputErr(off, nil, "cpio archive in format %q: the kernel reads only newc (070701, 070702)", head[:min(6, len(head))])
	}
	return false, inputErr(off, nil, "unknown data % x after %d segments (not a newc cpio archive, a compression the kernel knows, or zero padding)", head, len(r.segs))
}

func (r *Reader) begin(compression string, off int64) {
	r.segs = append(r.segs, compression)
	r.segStart = off
	r.entry = 0
	r.lastNone = compression == "none"
}

func (r *Reader) endSegment() {
	if r.content.closer != nil {
		r.content.closer()
	}
	r.content = nil
	r.archive = false
}

// nextArchive skips the zero padding after an archive in a compressed segment (the kernel's
// flush_buffer allows several archives in one stream) and finds the next; false at the end of the
// segment's content, when the decoder has checked its stream to the end.
func (r *Reader) nextArchive() (bool, error) {
	c := r.content
	start := c.off
	for {
		b, err := c.br.Peek(4096)
		z := 0
		for z < len(b) && b[z] == 0 {
			z++
		}
		c.br.Discard(z)
		c.off += int64(z)
		if c.off-start > r.lim.pad {
			return false, r.segErr(start, ErrLimit, "zero padding longer than %d bytes", r.lim.pad)
		}
		if z < len(b) {
			break
		}
		if len(b) == 0 {
			if err == io.EOF {
				return false, nil
			}
			return false, r.segErr(c.off, err, "%s stream", r.compression())
		}
	}
	head, _ := c.br.Peek(6)
	if string(head) != "070701" && string(head) != "070702" {
		return false, r.segErr(c.off, nil, "junk after an archive: % x (the kernel rejects it)", head)
	}
	if c.off%4 != 0 { // do_reset: "broken padding"
		return false, r.segErr(c.off, nil, "broken padding: archive at an unaligned offset")
	}
	r.archive = true
	return true, nil
}

// newc header (the kernel's Documentation/driver-api/early-userspace/buffer-format.rst): the
// magic, then 13 fields of 8 hex digits.
var fieldNames = [13]string{"ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
	"devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"}

const (
	fMode     = 1
	fFilesize = 6
	fNamesize = 11
	fCheck    = 12
	hdrSize   = 110
)

// readHeader reads the next entry's header, name and (for a symlink) target; nil at a trailer.
func (r *Reader) readHeader() (*Entry, error) {
	c := r.content
	r.curOff = c.off
	r.entry++
	r.headers++
	if r.headers > r.lim.entries {
		return nil, r.entryErr(ErrLimit, "more than %d entries", r.lim.entries)
	}
	var h [hdrSize]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, r.entryErr(eof(err), "header (an archive must end with TRAILER!!!)")
	}
	magic := string(h[:6])
	if magic != "070701" && magic != "070702" {
		return nil, r.entryErr(nil, "bad magic %q", magic)
	}
	var f [13]uint32
	for i := range f {
		v, ok := parseHex(h[6+8*i : 14+8*i])
		if !ok {
			return nil, r.entryErr(nil, "header field %s: bad hex %q", fieldNames[i], h[6+8*i:14+8*i])
		}
		f[i] = v
	}
	ns := f[fNamesize]
	if ns < 2 {
		return nil, r.entryErr(nil, "name size %d: no name", ns)
	}
	if int64(ns) > int64(r.lim.name) || ns > uint32(len(r.name)) {
		return nil, r.entryErr(ErrLimit, "name size %d: more than %d", ns, r.lim.name)
	}
	// The name and its NUL, padded so that header + name is a multiple of 4.
	nb := r.name[:ns+uint32(pad4(hdrSize+int64(ns)))]
	if _, err := io.ReadFull(c, nb); err != nil {
		return nil, r.entryErr(eof(err), "name")
	}
	name := nb[:ns-1]
	if nb[ns-1] != 0 {
		return nil, r.entryErr(nil, "name %q: not NUL-terminated", name)
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		return nil, r.entryErr(nil, "name %q: NUL at %d", name, i)
	}
	size := int64(f[fFilesize])
	if string(name) == "TRAILER!!!" {
		if size != 0 {
			return nil, r.entryErr(nil, "trailer with %d bytes of data", size)
		}
		return nil, nil
	}
	mode, ok := fileMode(f[fMode])
	if !ok {
		return nil, r.entryErr(nil, "name %q: mode %#o is no file type", name, f[fMode])
	}
	e := &Entry{Name: cleanName(string(name)), Mode: mode, Size: size, Segment: len(r.segs) - 1}
	r.cur, r.remain, r.pad, r.link = e, size, pad4(size), nil
	// GNU cpio -H crc sums the data of regular files only and writes 0 for a symlink's (TestOracleCpio).
	r.checksum, r.sum, r.want = magic == "070702" && mode.IsRegular(), 0, f[fCheck]
	if mode&fs.ModeSymlink != 0 {
		if size > int64(r.lim.link) {
			return nil, r.entryErr(ErrLimit, "symlink %q: target of %d bytes: more than %d", e.Name, size, r.lim.link)
		}
		t := make([]byte, size)
		if _, err := io.ReadFull(c, t); err != nil {
			return nil, r.entryErr(eof(err), "symlink %q: target", e.Name)
		}
		if bytes.IndexByte(t, 0) >= 0 {
			return nil, r.entryErr(nil, "symlink %q: target %q has a NUL", e.Name, t)
		}
		r.addSum(t)
		r.remain = 0
		e.Linkname = string(t)
		r.link = bytes.NewReader(t)
	}
	return e, nil
}

// eof turns the end of the content inside a structure into io.ErrUnexpectedEOF.
func eof(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func pad4(n int64) int64 { return (4 - n%4) % 4 }

func parseHex(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

// fileMode converts a newc mode (st_mode: S_IFMT type bits and permissions); false if it has no
// file type or bits beyond st_mode's 16.
func fileMode(m uint32) (fs.FileMode, bool) {
	if m > 0o177777 {
		return 0, false
	}
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch m & 0o170000 {
	case 0o100000:
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		mode |= fs.ModeDevice
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	default:
		return 0, false
	}
	return mode, true
}

// cleanName makes an archive name relative and clean, resolved as the kernel creates it (from
// the root: "../x" is "x"); "." for the root itself.
func cleanName(name string) string {
	n := path.Clean("/" + name)[1:]
	if n == "" {
		return "."
	}
	return n
}

func (r *Reader) addSum(p []byte) {
	if r.checksum {
		for _, b := range p {
			r.sum += uint32(b)
		}
	}
}

// Read reads the current entry's data.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.cur == nil {
		return 0, io.EOF
	}
	if r.link != nil {
		return r.link.Read(p)
	}
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.content.Read(p)
	r.addSum(p[:n])
	r.remain -= int64(n)
	if err != nil {
		r.fail(r.entryErr(eof(err), "%s: data (%d bytes left of %d)", r.cur.Name, r.remain, r.cur.Size))
		return n, r.err
	}
	return n, nil
}

// skipData consumes the rest of the current entry's data and its padding, and checks a 070702
// regular file's checksum (the sum of its data bytes).
func (r *Reader) skipData() error {
	if r.buf == nil {
		r.buf = make([]byte, 32<<10)
	}
	for r.remain > 0 {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if _, err := r.Read(r.buf[:min(int64(len(r.buf)), r.remain)]); err != nil {
			return err
		}
	}
	if _, err := io.ReadFull(r.content, r.buf[:r.pad]); err != nil {
		return r.entryErr(eof(err), "%s: padding after the data", r.cur.Name)
	}
	if r.checksum && r.sum != r.want {
		return r.entryErr(nil, "%s: header field check: 0x%08x, the data sums to 0x%08x", r.cur.Name, r.want, r.sum)
	}
	return nil
}
