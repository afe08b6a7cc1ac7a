package diskfmt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"syscall"

	"github.com/imgfab/imgfab/internal/safefile"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// Limits on what a GCE tarball's headers may make openGCE read or keep; real tarballs are far
// below them.
const (
	gceMaxDisk       = 64 << 40 // disk.raw's size: the largest persistent disk GCE makes is 64 TiB
	gceMaxExtHeader  = 1 << 20  // bytes of one PAX extended header or GNU long name (as archive/tar)
	gceMaxExtHeaders = 8        // extension headers before disk.raw's own
	gceMaxSparse     = 1 << 20  // entries of a sparse map (16 bytes each in memory)
	gceMaxTail       = 16 << 20 // decompressed bytes after the end-of-archive block
	gceChunk         = 1 << 20  // bytes decompressed between two checks of the context
	gceZeroBlock     = 64 << 10 // all-zero blocks of this size stay holes in the temporary file
)

// IsGCETarball reports whether the file at path is a GCE image tarball: gzip whose first tar
// entry is named disk.raw (see IsGCETarballAt). The file is opened without blocking: a FIFO or
// device is an error, not a wait.
func IsGCETarball(path string) (bool, error) {
	f, _, err := safefile.Open(path, "image")
	if err != nil {
		return false, err
	}
	defer f.Close()
	return IsGCETarballAt(f)
}

// IsGCETarballAt is IsGCETarball for a file already open (any io.ReaderAt, read from offset 0).
// Reading stops after the first entry's headers: a few KiB, and at most gceMaxExtHeaders PAX
// or long-name headers of gceMaxExtHeader bytes each, decompressed.
func IsGCETarballAt(r io.ReaderAt) (bool, error) {
	var magic [2]byte
	if n, _ := r.ReadAt(magic[:], 0); n < 2 || magic != [2]byte{0x1f, 0x8b} {
		return false, nil
	}
	zr, err := gzip.NewReader(io.NewSectionReader(r, 0, math.MaxInt64))
	if err != nil {
		return false, nil
	}
	h, err := readTarHeader(&tarStream{ctx: context.Background(), r: zr})
	return err == nil && h.entryName() == gceFileName, nil
}

// openGCE reads a GCE image tarball. gzip cannot be read at random offsets, so disk.raw is
// decompressed once into an unnamed temporary file in os.TempDir() and read as raw; Close
// releases it, and a killed process leaves nothing behind. The tarball must hold exactly one
// regular entry, disk.raw, as GCE requires; it may be sparse (GNU tar -S: old GNU 'S' headers,
// or PAX GNU.sparse 0.0, 0.1 and 1.0), as GCE's own instructions make it.
//
// Bounds: the temporary file is sized to disk.raw (ftruncate; its filesystem must allow sparse
// files that large: ext4 stops at 16 TiB) and only data is written into it: the fragments of a
// sparse member at their offsets, and for any member only the 64 KiB blocks that are not all
// zero, so the disk space it takes is the tarball's non-zero data. The work is the decompressed
// stream: the headers (bounded by the limits above), then the member's stored bytes (for a sparse
// member its data fragments only — holes cost nothing), then at most gceMaxTail bytes after the
// archive; so a tarball's claims cannot make it more than deflate's maximum expansion (1032:1)
// of the tarball's real bytes, and never more than 64 TiB plus headers. A decompression bomb
// within that (64 TiB of gzip'd zeros is 64 GiB of gzip) is legitimate input and takes its time,
// but the context is checked every gceChunk (1 MiB) of decompressed data, so cancelling stops it
// at once.
func openGCE(ctx context.Context, path string) (Image, error) {
	f, _, err := safefile.Open(path, "image")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readGCE(ctx, f)
}

// readGCE reads a GCE image tarball from r, as openGCE.
func readGCE(ctx context.Context, r io.Reader) (Image, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	zr, err := gzip.NewReader(br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrHeader) {
			return nil, formatErr("gce", "gzip header", 0, "%v", err)
		}
		return nil, fmt.Errorf("gce: reading the gzip header: %w", err)
	}
	zr.Multistream(false)
	s := &tarStream{ctx: ctx, r: &gzipMembers{br, zr}}
	m, err := readGCEMember(s)
	if err != nil {
		return nil, err
	}
	tmp, err := gceTemp(m.size)
	if err != nil {
		return nil, err
	}
	if err := spoolMember(s, tmp, m); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := checkTarEnd(s); err != nil {
		tmp.Close()
		return nil, err
	}
	img, err := openRaw(tmp, m.size, tmp)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	return gceImage{img}, nil
}

// gceImage is the spooled disk.raw, reporting its container format.
type gceImage struct{ Image }

func (gceImage) Format() string { return "gce" }

// gceTemp creates the unnamed temporary file for disk.raw, sized to it. The size is set first,
// so a filesystem that cannot hold it fails before anything is decompressed.
func gceTemp(size int64) (*os.File, error) {
	dir := os.TempDir()
	f, err := openUnnamed(dir, dir+"/(unnamed disk.raw)", 0o600)
	if errors.Is(err, errNoTmpfile) { // a name made with O_EXCL, removed at once
		if f, err = os.CreateTemp(dir, "imgfab-gce-*.raw"); err != nil {
			return nil, fmt.Errorf("gce: temporary file for disk.raw: %w", err)
		}
		os.Remove(f.Name()) // unlinked: the open descriptor keeps it until Close
	} else if err != nil {
		return nil, fmt.Errorf("gce: temporary file for disk.raw: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		if errors.Is(err, syscall.EFBIG) {
			return nil, fmt.Errorf("gce: the temporary directory %s cannot hold disk.raw's %d bytes as one sparse file (ext4 stops at 16 TiB; set TMPDIR to xfs, btrfs or tmpfs): %w", dir, size, err)
		}
		return nil, fmt.Errorf("gce: sizing the temporary disk.raw (%d bytes) in %s: %w", size, dir, err)
	}
	return f, nil
}

// spoolMember copies disk.raw's data from s into f (already sized): the fragments of a sparse
// member at their offsets, a plain member at 0; all-zero 64 KiB blocks are skipped. Then it
// skips the member's padding to a whole block.
func spoolMember(s *tarStream, f *os.File, m *gceMember) error {
	buf := make([]byte, gceChunk)
	frags := m.frags
	if !m.sparse {
		frags = []Extent{{0, m.stored}}
	}
	start := s.off
	for _, fr := range frags {
		if err := spoolAt(s, f, fr.Off, fr.Len, buf); err != nil {
			var fe *FormatError
			if errors.As(err, &fe) {
				return formatErr("gce", "disk.raw data", -1, "%s, after %d of its %d stored bytes", fe.Reason, s.off-start, m.stored)
			}
			return fmt.Errorf("gce: decompressing disk.raw after %d of its %d stored bytes: %w", s.off-start, m.stored, err)
		}
	}
	if err := s.read(buf[:-m.archived&511], "disk.raw padding"); err != nil {
		return err
	}
	return nil
}

// spoolAt copies n bytes of s into f at off, gceChunk at a time, checking the context before
// each chunk and leaving all-zero gceZeroBlock blocks unwritten (f reads zeros there already).
func spoolAt(s *tarStream, f *os.File, off, n int64, buf []byte) error {
	for n > 0 {
		k := int(min(n, int64(len(buf))))
		if err := s.read(buf[:k], "disk.raw data"); err != nil {
			return err
		}
		for i := 0; i < k; i += gceZeroBlock {
			b := buf[i:min(i+gceZeroBlock, k)]
			if isZero(b) {
				continue
			}
			if _, err := f.WriteAt(b, off+int64(i)); err != nil {
				return fmt.Errorf("writing the temporary file in %s: %w", os.TempDir(), err)
			}
		}
		off, n = off+int64(k), n-int64(k)
	}
	return nil
}

// checkTarEnd reads what follows disk.raw: an end-of-archive block (or nothing: archive/tar and
// GNU tar accept a missing trailer), then the rest of the decompressed stream, at most gceMaxTail
// bytes (GNU tar pads to 10 KiB records), so that the gzip reader checks the CRC and length.
func checkTarEnd(s *tarStream) error {
	off := s.off
	blk, err := s.block()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return s.fail("tar trailer", err)
	}
	if !isZero(blk) {
		if tarChecksum(blk) == nil {
			return formatErr("gce", "tar entry", -1, "a second entry %q at tar offset %d: a GCE tarball holds only disk.raw", cString(blk[:100]), off)
		}
		return formatErr("gce", "tar trailer", -1, "the block at tar offset %d after disk.raw is neither a header nor the end of the archive", off)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(s.r, gceMaxTail+1))
	if err != nil {
		return s.fail("gzip stream after the tar archive", err)
	}
	if n > gceMaxTail {
		return formatErr("gce", "tar trailer", -1, "more than %d bytes follow the end of the archive at tar offset %d", gceMaxTail, off)
	}
	return nil
}

// gzipMembers reads gzip members one after another (RFC 1952 2.2: a file is a series of
// members), each one's CRC and length checked at its end, and ends the stream at bytes that do
// not start another member, as GNU gzip does ("trailing garbage ignored").
type gzipMembers struct {
	br *bufio.Reader // what zr reads from: it uses ReadByte, so nothing past a member is buffered in zr
	zr *gzip.Reader  // in single-member mode
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		if n > 0 {
			return n, nil // the member's end again on the next call
		}
		if magic, _ := g.br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
			return 0, io.EOF
		}
		if err := g.zr.Reset(g.br); err != nil {
			return 0, err
		}
		g.zr.Multistream(false)
	}
}

// tarStream is the decompressed tarball, read in order, checking the context on every read.
type tarStream struct {
	ctx context.Context
	r   io.Reader
	off int64 // bytes read: the tar offset, for messages
	blk [512]byte
}

// block reads the next 512-byte block. It returns io.EOF only when the stream ends exactly
// before it, io.ErrUnexpectedEOF inside it.
func (s *tarStream) block() ([]byte, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	n, err := io.ReadFull(s.r, s.blk[:])
	s.off += int64(n)
	return s.blk[:], err
}

// read fills p; any failure is returned through fail, naming field.
func (s *tarStream) read(p []byte, field string) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err != nil {
		return s.fail(field, err)
	}
	return nil
}

// fail turns a read error into a FormatError when the stream is at fault (truncated, corrupt
// deflate data, a bad CRC); cancellation and I/O errors are returned as they are.
func (s *tarStream) fail(field string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErr("gce", field, -1, "the archive ends at tar offset %d (truncated?)", s.off)
	}
	var ce flate.CorruptInputError
	if errors.As(err, &ce) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
		return formatErr("gce", field, -1, "at tar offset %d: %v", s.off, err)
	}
	if s.ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("gce: %s at tar offset %d: reading: %w", field, s.off, err)
}

// ---- the tar headers (POSIX.1-2017 pax "ustar Interchange Format", GNU tar's "Basic Tar
// Format" and "Sparse Formats"), parsed here rather than by archive/tar, whose Reader fills a
// sparse member's holes with zeros ----

// tarHeader is the first entry of a tarball as its headers describe it, extension headers applied.
type tarHeader struct {
	name     string // the header's name: PAX path, GNU long name, or ustar prefix/name
	typeflag byte
	gnu      bool              // GNU magic "ustar  \0": the old GNU sparse fields are valid
	size     int64             // the member's bytes in the archive (size field, or PAX size)
	blk      [512]byte         // the entry's own header block
	pax      map[string]string // PAX records
	pax00    []string          // GNU.sparse.offset and .numbytes records (sparse 0.0), in order
}

// entryName is the member's name: the PAX sparse formats store the real one in GNU.sparse.name.
func (h *tarHeader) entryName() string {
	if n := h.pax["GNU.sparse.name"]; n != "" {
		return n
	}
	return h.name
}

// readTarHeader reads the first entry's header and the PAX ('x') and GNU long name ('L')
// headers before it.
func readTarHeader(s *tarStream) (*tarHeader, error) {
	h := &tarHeader{}
	longName := ""
	for range gceMaxExtHeaders + 1 {
		off := s.off
		blk, err := s.block()
		if err != nil {
			return nil, s.fail("tar header", err)
		}
		if isZero(blk) {
			return nil, formatErr("gce", "tar header", -1, "an end-of-archive block at tar offset %d where disk.raw's header should be", off)
		}
		if err := tarChecksum(blk); err != nil {
			return nil, formatErr("gce", "tar header checksum", -1, "tar offset %d: %v", off, err)
		}
		size, err := tarNumber(blk[124:136])
		if err != nil {
			return nil, formatErr("gce", "tar header size", -1, "tar offset %d: %v", off, err)
		}
		switch blk[156] {
		case 'x':
			data, err := readExtHeader(s, size, "PAX extended header")
			if err == nil {
				err = h.parsePAX(data)
			}
			if err != nil {
				return nil, err
			}
		case 'L':
			data, err := readExtHeader(s, size, "GNU long name")
			if err != nil {
				return nil, err
			}
			longName = cString(data)
		default:
			return h, h.setEntry(blk, size, longName)
		}
	}
	return nil, formatErr("gce", "tar header", -1, "more than %d extension headers before the first entry", gceMaxExtHeaders)
}

// setEntry records the entry's own header block.
func (h *tarHeader) setEntry(blk []byte, size int64, longName string) error {
	copy(h.blk[:], blk)
	h.typeflag, h.size = blk[156], size
	h.gnu = string(blk[257:265]) == "ustar  \x00"
	h.name = cString(blk[:100])
	if prefix := cString(blk[345:500]); string(blk[257:263]) == "ustar\x00" && prefix != "" {
		h.name = prefix + "/" + h.name
	}
	if longName != "" {
		h.name = longName
	}
	if p, ok := h.pax["path"]; ok {
		h.name = p
	}
	if v, ok := h.pax["size"]; ok {
		n, err := paxNumber(v)
		if err != nil {
			return formatErr("gce", "PAX size", -1, "%v", err)
		}
		h.size = n
	}
	return nil
}

// readExtHeader reads the data of an extension header: size bytes, at most gceMaxExtHeader,
// padded to whole blocks.
func readExtHeader(s *tarStream, size int64, field string) ([]byte, error) {
	if size > gceMaxExtHeader {
		return nil, formatErr("gce", field, -1, "%d bytes at tar offset %d, more than the %d allowed", size, s.off, gceMaxExtHeader)
	}
	buf := make([]byte, (size+511)&^511)
	if err := s.read(buf, field); err != nil {
		return nil, err
	}
	return buf[:size], nil
}

// parsePAX adds the records of a PAX extended header ("%d %s=%s\n", the length counting the
// whole record) to h; GNU.sparse.offset and .numbytes may repeat and are kept in order.
func (h *tarHeader) parsePAX(b []byte) error {
	if h.pax == nil {
		h.pax = map[string]string{}
	}
	for rec := 0; len(b) > 0; rec++ {
		n := 0
		for n < len(b) && n < 8 && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		length, err := paxNumber(string(b[:n]))
		if n == 0 || n == len(b) || b[n] != ' ' || err != nil || length <= int64(n)+2 || length > int64(len(b)) || b[length-1] != '\n' {
			return formatErr("gce", "PAX record", -1, "record %d: not \"LENGTH KEY=VALUE\\n\" with a valid LENGTH", rec)
		}
		kv := string(b[n+1 : length-1])
		b = b[length:]
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return formatErr("gce", "PAX record", -1, "record %d: no KEY=", rec)
		}
		if k == "GNU.sparse.offset" || k == "GNU.sparse.numbytes" {
			if (len(h.pax00)%2 == 0) != (k == "GNU.sparse.offset") || len(h.pax00) >= 2*gceMaxSparse {
				return formatErr("gce", "PAX record", -1, "record %d: %s out of order, or more than %d", rec, k, gceMaxSparse)
			}
			h.pax00 = append(h.pax00, v)
			continue
		}
		h.pax[k] = v
	}
	return nil
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// tarChecksum checks the header checksum at 148: the sum of the block's bytes with the field
// itself counted as spaces, as unsigned bytes (POSIX) or signed (some old tars).
func tarChecksum(blk []byte) error {
	want, err := tarNumber(blk[148:156])
	if err != nil {
		return err
	}
	var u, s int64
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	if want != u && want != s {
		return fmt.Errorf("the header says %d, the block sums to %d", want, u)
	}
	return nil
}

// tarNumber parses a numeric header field: octal digits padded with spaces or NULs, or GNU's
// base-256 (first byte 0x80: a big-endian two's complement number in the remaining bits).
// Negative numbers and values past 2^63-1 are errors.
func tarNumber(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0]&0x40 != 0 {
			return 0, fmt.Errorf("negative base-256 number")
		}
		v := int64(b[0] & 0x3f)
		for _, c := range b[1:] {
			if v > math.MaxInt64>>8 {
				return 0, fmt.Errorf("base-256 number past 2^63-1")
			}
			v = v<<8 | int64(c)
		}
		return v, nil
	}
	i, j := 0, len(b)
	for i < j && (b[i] == ' ' || b[i] == 0) {
		i++
	}
	for j > i && (b[j-1] == ' ' || b[j-1] == 0) {
		j--
	}
	var v int64
	for _, c := range b[i:j] {
		if c < '0' || c > '7' {
			return 0, fmt.Errorf("%q is not an octal number", b)
		}
		if v > math.MaxInt64>>3 {
			return 0, fmt.Errorf("octal %q is past 2^63-1", b[i:j])
		}
		v = v<<3 | int64(c-'0')
	}
	return v, nil
}

// paxNumber parses a non-negative decimal number of at most 19 digits (no sign, no spaces).
func paxNumber(s string) (int64, error) {
	if len(s) == 0 || len(s) > 19 {
		return 0, fmt.Errorf("%q: want 1 to 19 decimal digits", s)
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
		if v > (math.MaxInt64-int64(c-'0'))/10 {
			return 0, fmt.Errorf("%s is past 2^63-1", s)
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

// ---- disk.raw and its sparse map ----

// gceMember is disk.raw as its headers describe it.
type gceMember struct {
	size     int64    // bytes of disk.raw
	archived int64    // bytes of the member in the archive, before padding (map included)
	stored   int64    // bytes of disk.raw's data in the archive, after any sparse map
	sparse   bool     // frags says where the stored data goes; otherwise it is all of disk.raw
	frags    []Extent // the non-empty data fragments, in order, not overlapping
}

// readGCEMember reads the headers of the first entry, which must be disk.raw, and its sparse
// map if it has one; s is left at disk.raw's stored data.
func readGCEMember(s *tarStream) (*gceMember, error) {
	h, err := readTarHeader(s)
	if err != nil {
		return nil, err
	}
	name := h.entryName()
	if name != gceFileName || (h.typeflag != '0' && h.typeflag != 0 && h.typeflag != 'S') {
		return nil, formatErr("gce", "tar entry", -1, "first entry is %q (type %q), want the regular file disk.raw", name, h.typeflag)
	}
	kind, err := h.sparseKind()
	if err != nil {
		return nil, err
	}
	m := &gceMember{size: h.size, archived: h.size, stored: h.size, sparse: kind != ""}
	if m.sparse {
		if m.size, err = h.realSize(kind); err != nil {
			return nil, err
		}
	}
	if m.size <= 0 || m.size%512 != 0 || m.size > gceMaxDisk {
		return nil, formatErr("gce", "disk.raw size", -1, "%d bytes: want a positive multiple of 512, at most %d (64 TiB)", m.size, int64(gceMaxDisk))
	}
	if m.sparse {
		if err := m.readSparseMap(s, h, kind); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// sparseKind names disk.raw's sparse format: "" (a plain member), "old GNU" (typeflag 'S'), or
// the PAX formats "0.0", "0.1" (map in the records) and "1.0" (map at the start of the data).
func (h *tarHeader) sparseKind() (string, error) {
	if h.typeflag == 'S' {
		if !h.gnu || h.pax != nil {
			return "", formatErr("gce", "tar entry", -1, "a GNU sparse entry ('S') whose header is not in the old GNU format")
		}
		return "old GNU", nil
	}
	major, okMaj := h.pax["GNU.sparse.major"]
	minor, okMin := h.pax["GNU.sparse.minor"]
	switch v := major + "." + minor; {
	case okMaj || okMin:
		if v != "1.0" && v != "0.1" && v != "0.0" {
			return "", formatErr("gce", "PAX GNU.sparse.major/minor", -1, "sparse format %s: imgfab reads 0.0, 0.1, 1.0 and old GNU", v)
		}
		return v, nil
	case h.pax00 != nil:
		return "0.0", nil
	case h.pax["GNU.sparse.map"] != "" || h.pax["GNU.sparse.numblocks"] != "":
		return "0.1", nil
	}
	return "", nil
}

// realSize is disk.raw's size, which a sparse member's header gives apart from its stored bytes.
func (h *tarHeader) realSize(kind string) (int64, error) {
	if kind == "old GNU" {
		n, err := tarNumber(h.blk[483:495])
		if err != nil {
			return 0, formatErr("gce", "GNU sparse realsize", -1, "%v", err)
		}
		return n, nil
	}
	key := "GNU.sparse.size"
	if kind == "1.0" {
		key = "GNU.sparse.realsize"
	}
	v, ok := h.pax[key]
	if !ok {
		return 0, formatErr("gce", "PAX "+key, -1, "missing in a sparse format %s member", kind)
	}
	n, err := paxNumber(v)
	if err != nil {
		return 0, formatErr("gce", "PAX "+key, -1, "%v", err)
	}
	return n, nil
}

// readSparseMap reads the sparse map of the given kind and checks it against the sizes.
func (m *gceMember) readSparseMap(s *tarStream, h *tarHeader, kind string) error {
	var ents []Extent
	var err error
	switch kind {
	case "old GNU":
		ents, err = readOldGNUMap(s, h.blk[:])
	case "1.0":
		var used int64
		ents, used, err = readMap1x0(s, h.size)
		m.stored -= used
	default:
		ents, err = h.map0x()
	}
	if err != nil {
		return err
	}
	m.frags, err = sparseFrags(ents, m.size, m.stored)
	return err
}

// readOldGNUMap reads the old GNU sparse map: 4 entries (12-byte offset, 12-byte numbytes) at 386
// of the header, isextended at 482; while it is set, an extension block follows with 21 more and
// its own isextended at 504. An entry whose offset starts with NUL ends a block's list.
func readOldGNUMap(s *tarStream, hdr []byte) ([]Extent, error) {
	var ents []Extent
	area, ext := hdr[386:482], hdr[482]
	for blocks := 0; ; blocks++ {
		for i := 0; i < len(area) && area[i] != 0; i += 24 {
			if len(ents) >= gceMaxSparse {
				return nil, formatErr("gce", "GNU sparse map", -1, "more than %d entries", gceMaxSparse)
			}
			off, err1 := tarNumber(area[i : i+12])
			n, err2 := tarNumber(area[i+12 : i+24])
			if err := errors.Join(err1, err2); err != nil {
				return nil, formatErr("gce", "GNU sparse map", -1, "entry %d: %v", len(ents), err)
			}
			ents = append(ents, Extent{off, n})
		}
		if ext == 0 {
			return ents, nil
		}
		if blocks > gceMaxSparse/21 {
			return nil, formatErr("gce", "GNU sparse map", -1, "more than %d extension blocks", gceMaxSparse/21)
		}
		blk, err := s.block()
		if err != nil {
			return nil, s.fail("GNU sparse extension block", err)
		}
		area, ext = blk[:504], blk[504]
	}
}

// map0x reads the map of PAX sparse formats 0.0 (repeated GNU.sparse.offset and .numbytes
// records) and 0.1 (GNU.sparse.map: "offset,size,offset,size..."); GNU.sparse.numblocks counts
// the entries.
func (h *tarHeader) map0x() ([]Extent, error) {
	nums := h.pax00
	if v := h.pax["GNU.sparse.map"]; nums == nil && v != "" {
		nums = splitComma(v)
	}
	count, err := paxNumber(h.pax["GNU.sparse.numblocks"])
	if err != nil || count != int64(len(nums)/2) || len(nums)%2 != 0 || count > gceMaxSparse {
		return nil, formatErr("gce", "PAX GNU.sparse.numblocks", -1, "%q, with %d numbers in the map: want half their count, at most %d", h.pax["GNU.sparse.numblocks"], len(nums), gceMaxSparse)
	}
	ents := make([]Extent, count)
	for i := range ents {
		off, err1 := paxNumber(nums[2*i])
		n, err2 := paxNumber(nums[2*i+1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, formatErr("gce", "PAX GNU.sparse map", -1, "entry %d: %v", i, err)
		}
		ents[i] = Extent{off, n}
	}
	return ents, nil
}

func splitComma(s string) []string {
	var out []string
	for {
		a, b, ok := strings.Cut(s, ",")
		out = append(out, a)
		if !ok {
			return out
		}
		s = b
	}
}

// readMap1x0 reads the map of PAX sparse format 1.0 from the start of the member's data (of
// archived bytes): decimal numbers one per line (the count, then each fragment's offset and
// size), padded to a whole block. It returns the map and the bytes it took.
func readMap1x0(s *tarStream, archived int64) ([]Extent, int64, error) {
	l := &mapLines{s: s, limit: archived}
	count, err := l.next()
	if err == nil && count > gceMaxSparse {
		err = formatErr("gce", "GNU sparse 1.0 map", -1, "%d entries, more than %d", count, gceMaxSparse)
	}
	if err != nil {
		return nil, 0, err
	}
	ents := make([]Extent, 0, min(count, 1024))
	for range count {
		off, err := l.next()
		if err != nil {
			return nil, 0, err
		}
		n, err := l.next()
		if err != nil {
			return nil, 0, err
		}
		ents = append(ents, Extent{off, n})
	}
	return ents, l.used, nil
}

// mapLines reads the numbers of a sparse 1.0 map block by block, within the member.
type mapLines struct {
	s     *tarStream
	limit int64 // the member's bytes
	used  int64 // blocks read, in bytes
	count int   // numbers read
	buf   []byte
}

func (l *mapLines) next() (int64, error) {
	for {
		if i := bytes.IndexByte(l.buf, '\n'); i >= 0 {
			tok := string(l.buf[:i])
			l.buf = l.buf[i+1:]
			n, err := paxNumber(tok)
			if err != nil {
				return 0, formatErr("gce", "GNU sparse 1.0 map", -1, "number %d: %v", l.count, err)
			}
			l.count++
			return n, nil
		}
		if len(l.buf) > 19 {
			return 0, formatErr("gce", "GNU sparse 1.0 map", -1, "number %d: not 1 to 19 digits and a newline", l.count)
		}
		if l.used+512 > l.limit {
			return 0, formatErr("gce", "GNU sparse 1.0 map", -1, "runs past the member's %d bytes", l.limit)
		}
		blk, err := l.s.block()
		if err != nil {
			return 0, l.s.fail("GNU sparse 1.0 map", err)
		}
		l.used += 512
		l.buf = append(l.buf, blk...)
	}
}

// sparseFrags checks a sparse map against disk.raw's size and the data stored in the archive:
// fragments in order and not overlapping, each inside size (overflow-checked), their sizes adding
// up to stored. It returns the non-empty ones (GNU tar ends a map with an empty fragment at size).
func sparseFrags(ents []Extent, size, stored int64) ([]Extent, error) {
	if stored < 0 {
		return nil, formatErr("gce", "GNU sparse map", -1, "the map takes more than the member's bytes")
	}
	var end, sum int64
	frags := make([]Extent, 0, len(ents))
	for i, e := range ents {
		switch {
		case e.Off < end:
			return nil, formatErr("gce", "GNU sparse map", -1, "fragment %d at %d starts before the previous one ends (%d): not sorted, or overlapping", i, e.Off, end)
		case e.Len > size || e.Off > size-e.Len:
			return nil, formatErr("gce", "GNU sparse map", -1, "fragment %d (%d bytes at %d) runs past disk.raw's %d bytes", i, e.Len, e.Off, size)
		case e.Len > stored-sum:
			return nil, formatErr("gce", "GNU sparse map", -1, "fragments 0..%d hold more than the %d bytes stored", i, stored)
		}
		sum, end = sum+e.Len, e.Off+e.Len
		if e.Len > 0 {
			frags = append(frags, e)
		}
	}
	if sum != stored {
		return nil, formatErr("gce", "GNU sparse map", -1, "the fragments hold %d bytes, the archive stores %d", sum, stored)
	}
	return frags, nil
}
