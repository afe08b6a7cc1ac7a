package secureboot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
)

// ErrSigned is returned (wrapped) by SignPE and SignPEStream for an image that already has a
// Certificate Table.
var ErrSigned = errors.New("PE image is already signed")

func (l *peLayout) checkUnsigned() error {
	if l.certAddr != 0 || l.certSize != 0 {
		return fmt.Errorf("%w: its Certificate Table holds %d bytes at %#x; only unsigned images are signed (remove the signature first, e.g. with sbattach --remove)",
			ErrSigned, l.certSize, l.certAddr)
	}
	return nil
}

// SignPE signs the unsigned PE/COFF image pe, held in memory, and returns the signed image: pe
// padded with zeros to a multiple of 8 bytes, then a Certificate Table of one WIN_CERTIFICATE
// (WIN_CERT_TYPE_PKCS_SIGNED_DATA, padded to 8 bytes) holding an Authenticode signature over
// the image's SHA-256 digest; the header's Certificate Table entry points at it and the
// CheckSum is recomputed over the signed file, as sbsign writes them. An image that already has
// a signature is refused with ErrSigned (a second signature appended next to a foreign one, as
// sbsign does, would make the file's trust depend on both). pe is not modified.
func (s *Signer) SignPE(pe []byte) ([]byte, error) {
	size := int64(len(pe))
	l, err := parsePE(pe, size)
	if err != nil {
		return nil, fmt.Errorf("signing PE: %w", err)
	}
	if err := l.checkUnsigned(); err != nil {
		return nil, fmt.Errorf("signing PE: %w", err)
	}
	total := signedSize(size)
	rs, err := l.regions(total, 0)
	if err != nil {
		return nil, fmt.Errorf("signing PE: %w", err)
	}
	out := make([]byte, total, total+8192)
	copy(out, pe)
	h := sha256.New()
	for _, r := range rs {
		h.Write(out[r.off:r.end()])
	}
	cert, err := s.certTableEntry(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("signing PE: %w", err)
	}
	if err := checkCertTable(total, cert); err != nil {
		return nil, fmt.Errorf("signing PE: %w", err)
	}
	le.PutUint32(out[l.certDir:], uint32(total))
	le.PutUint32(out[l.certDir+4:], uint32(len(cert)))
	le.PutUint32(out[l.checksum:], 0)
	out = append(out, cert...)
	var c checksum
	c.Write(out)
	le.PutUint32(out[l.checksum:], c.value())
	return out, nil
}

// SignPEStream signs the unsigned PE/COFF image of size bytes that open streams, without
// holding it: it reads the headers and then the whole image once, in order, for the Authenticode
// digest and the checksum (a second pass over part of it only when a gap between sections makes
// the digest go back), and returns the signed image's size and an opener that streams it: the
// patched headers, the rest of the original stream, the zero padding and the Certificate Table.
// The bytes are those SignPE returns for the same image. Each open re-reads the source and fails
// if its headers differ from the ones signed or its length from size. Memory is the headers, a
// copy buffer and the signature.
func (s *Signer) SignPEStream(open func() (io.ReadCloser, error), size int64) (int64, func() (io.ReadCloser, error), error) {
	if size < 0 {
		return 0, nil, fmt.Errorf("signing PE: size %d", size)
	}
	rc, err := open()
	if err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}
	defer rc.Close()
	src := &exactReader{r: rc, left: size, size: size}
	head, l, err := readHeaders(src, size)
	if err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}
	if err := l.checkUnsigned(); err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}
	total := signedSize(size)
	rs, err := l.regions(total, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}

	// The checksum is a sum of 16-bit words: the headers go in with CheckSum and the Certificate
	// Table entry zero, the entry's words are added once the table's size is known.
	var sum checksum
	patched := bytes.Clone(head)
	clear(patched[l.checksum : l.checksum+4])
	clear(patched[l.certDir : l.certDir+8])
	sum.Write(patched)
	p := &pass{open: open, size: size, total: total, head: head, sum: &sum,
		main: io.MultiReader(src, zeros(total-size)), pos: int64(len(head)), buf: make([]byte, 256<<10)}
	h := sha256.New()
	for _, r := range rs {
		if err := p.hash(h, r); err != nil {
			return 0, nil, fmt.Errorf("signing PE: %w", err)
		}
	}
	if err := p.copy(&sum, total-p.pos); err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}

	cert, err := s.certTableEntry(h.Sum(nil))
	if err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}
	if err := checkCertTable(total, cert); err != nil {
		return 0, nil, fmt.Errorf("signing PE: %w", err)
	}
	le.PutUint32(patched[l.certDir:], uint32(total))
	le.PutUint32(patched[l.certDir+4:], uint32(len(cert)))
	sum.addWords(patched[l.certDir : l.certDir+8])
	sum.Write(cert)
	le.PutUint32(patched[l.checksum:], sum.value())

	signed := func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, fmt.Errorf("signed PE: %w", err)
		}
		src := &exactReader{r: rc, left: size, size: size}
		got := make([]byte, len(head))
		if _, err := io.ReadFull(src, got); err != nil {
			rc.Close()
			return nil, fmt.Errorf("signed PE: reading headers: %w", err)
		}
		if !bytes.Equal(got, head) {
			rc.Close()
			return nil, errors.New("signed PE: the image's headers changed since it was signed")
		}
		r := io.MultiReader(bytes.NewReader(patched), src, zeros(total-size), bytes.NewReader(cert))
		return readCloser{r, rc}, nil
	}
	return total + int64(len(cert)), signed, nil
}

// checkCertTable checks that the Certificate Table's offset and size fit the u32 fields of its
// data directory entry (§3.4.3).
func checkCertTable(total int64, cert []byte) error {
	if total+int64(len(cert)) > math.MaxUint32 {
		return fmt.Errorf("signed image of %d bytes: a PE image's Certificate Table must end below 4 GiB", total+int64(len(cert)))
	}
	return nil
}

// certTableEntry is the WIN_CERTIFICATE (§4.7.1 "Certificate Data") holding the Authenticode
// signature of digest, padded with zeros to 8 bytes; dwLength counts the header and the
// signature, not the padding (sbsign's image_add_signature).
func (s *Signer) certTableEntry(digest []byte) ([]byte, error) {
	sig, err := s.authenticode(digest)
	if err != nil {
		return nil, err
	}
	n := winCertHeaderSize + len(sig)
	b := make([]byte, alignUp(int64(n), certTableAlignment))
	le.PutUint32(b[0:], uint32(n))
	le.PutUint16(b[4:], winCertRevision2)
	le.PutUint16(b[6:], winCertTypePKCS7)
	copy(b[winCertHeaderSize:], sig)
	return b, nil
}

// readHeaders reads the first bytes of r, a PE image of size bytes, up to the end of its headers.
func readHeaders(r io.Reader, size int64) ([]byte, *peLayout, error) {
	head := make([]byte, min(size, 4096))
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, fmt.Errorf("reading PE headers: %w", err)
	}
	need, err := headerSpan(head, size)
	if err != nil {
		return nil, nil, err
	}
	if need > int64(len(head)) {
		more := make([]byte, need-int64(len(head)))
		if _, err := io.ReadFull(r, more); err != nil {
			return nil, nil, fmt.Errorf("reading PE headers: %w", err)
		}
		head = append(head, more...)
	}
	l, err := parsePE(head, size)
	return head, l, err
}

// pass is the one pass of SignPEStream over the image (padded to total bytes): every byte goes
// to the checksum once, in order, and the digest's regions to the hash.
type pass struct {
	open        func() (io.ReadCloser, error)
	size, total int64
	head        []byte    // the image's first bytes, read already
	main        io.Reader // the image from pos on, then the zero padding
	pos         int64
	sum         *checksum
	buf         []byte
}

// hash writes region r of the image to w.
func (p *pass) hash(w io.Writer, r region) error {
	off, end := r.off, r.end()
	if off < int64(len(p.head)) {
		e := min(end, int64(len(p.head)))
		w.Write(p.head[off:e])
		off = e
	}
	if off < end && off < p.pos {
		// Behind the pass: the trailing region starts at the count of bytes hashed, which is
		// before the end of the last section when sections leave gaps.
		e := min(end, p.pos)
		if err := p.reread(w, off, e); err != nil {
			return err
		}
		off = e
	}
	if off >= end {
		return nil
	}
	if err := p.copy(p.sum, off-p.pos); err != nil {
		return err
	}
	return p.copy(io.MultiWriter(w, p.sum), end-off)
}

// copy copies the next n bytes of the pass to w.
func (p *pass) copy(w io.Writer, n int64) error {
	m, err := io.CopyBuffer(w, io.LimitReader(p.main, n), p.buf)
	p.pos += m
	if err == nil && m < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("reading PE at %d: %w", p.pos, err)
	}
	return nil
}

// reread writes bytes [off, end) of the padded image to w from a new stream.
func (p *pass) reread(w io.Writer, off, end int64) error {
	rc, err := p.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	r := io.MultiReader(&exactReader{r: rc, left: p.size, size: p.size}, zeros(p.total-p.size))
	if _, err := io.CopyN(io.Discard, r, off); err != nil {
		return fmt.Errorf("re-reading PE to %d: %w", off, err)
	}
	if _, err := io.CopyBuffer(w, io.LimitReader(r, end-off), p.buf); err != nil {
		return fmt.Errorf("re-reading PE at %d: %w", off, err)
	}
	return nil
}

// exactReader reads r, which must hold exactly size bytes: an early end is io.ErrUnexpectedEOF
// and a byte past size an error.
type exactReader struct {
	r          io.Reader
	left, size int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(e.r, one[:]); n > 0 {
			return 0, fmt.Errorf("PE stream is longer than its size, %d bytes", e.size)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, fmt.Errorf("PE stream ended after %d of %d bytes: %w", e.size-e.left, e.size, io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func zeros(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

type readCloser struct {
	io.Reader
	io.Closer
}
