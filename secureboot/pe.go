package secureboot

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Byte offsets and values in the PE/COFF headers, from the Microsoft PE/COFF specification.
const (
	peSigOffsetAt  = 0x3c // §3.2 "Signature (Image Only)": file offset of "PE\0\0", u32 at 0x3c of the MS-DOS stub
	coffHeaderSize = 20   // §3.3 "COFF File Header (Object and Image)": 20 bytes after the 4-byte signature
	coffNumSecs    = 2    // §3.3: NumberOfSections, u16
	coffOptSize    = 16   // §3.3: SizeOfOptionalHeader, u16
	optMagic       = 0    // §3.4.1 "Optional Header Standard Fields": Magic, u16
	magicPE32      = 0x10b
	magicPE32Plus  = 0x20b
	optSizeOfHdrs  = 60  // §3.4.2 "Optional Header Windows-Specific Fields": SizeOfHeaders, u32 (PE32 and PE32+)
	optCheckSum    = 64  // §3.4.2: CheckSum, u32
	optNumRVA32    = 92  // §3.4.2 (PE32): NumberOfRvaAndSizes, u32
	optNumRVA64    = 108 // §3.4.2 (PE32+): NumberOfRvaAndSizes, u32
	dirCertTable   = 4   // §3.4.3 "Optional Header Data Directories": index of the Certificate Table
	secHeaderSize  = 40  // §4 "Section Table (Section Headers)": 40 bytes each
	secSizeOfRaw   = 16  // §4: SizeOfRawData, u32
	secPtrToRaw    = 20  // §4: PointerToRawData, u32

	// §4.7 "The Attribute Certificate Table (Image Only)": each entry is a WIN_CERTIFICATE, dwLength
	// (u32, header included), wRevision (u16) and wCertificateType (u16), then the bCertificate
	// bytes; entries start on 8-byte boundaries.
	winCertHeaderSize  = 8
	winCertRevision2   = 0x0200 // WIN_CERT_REVISION_2_0
	winCertTypePKCS7   = 0x0002 // WIN_CERT_TYPE_PKCS_SIGNED_DATA
	certTableAlignment = 8

	// maxHeaders bounds what is read before the section table is known: SizeOfHeaders is a few
	// KiB in any real image.
	maxHeaders = 1 << 20
)

var le = binary.LittleEndian

// region is a byte range of the file that the Authenticode digest covers.
type region struct{ off, n int64 }

func (r region) end() int64 { return r.off + r.n }

// peLayout is what the Authenticode digest and the signed file need from a PE image's headers.
type peLayout struct {
	headLen    int64 // SizeOfHeaders, or the end of the section table if that is further
	checksum   int64 // file offset of the optional header's CheckSum
	certDir    int64 // file offset of the Certificate Table data directory entry
	certAddr   int64 // the Certificate Table as the entry gives it (0, 0: unsigned)
	certSize   int64
	sizeOfHdrs int64
	sections   []region // raw data of the sections that have some, in section table order
}

// headerSpan returns how many bytes of the file parsePE needs to see: the section table's end
// (or SizeOfHeaders, if larger) once the first 4 KiB are read; need is never more than maxHeaders.
func headerSpan(head []byte, size int64) (need int64, err error) {
	if len(head) < 0x40 || head[0] != 'M' || head[1] != 'Z' {
		return 0, errors.New("not a PE image: no MZ header")
	}
	pe := int64(le.Uint32(head[peSigOffsetAt:]))
	opt := pe + 4 + coffHeaderSize
	if opt > int64(len(head)) || opt > size {
		return 0, fmt.Errorf("not a PE image: PE header at %#x is past the first %d bytes", pe, len(head))
	}
	optSize := int64(le.Uint16(head[pe+4+coffOptSize:]))
	nsec := int64(le.Uint16(head[pe+4+coffNumSecs:]))
	need = opt + optSize + nsec*secHeaderSize
	if opt+optSizeOfHdrs+4 <= int64(len(head)) {
		need = max(need, int64(le.Uint32(head[opt+optSizeOfHdrs:])))
	}
	if need > maxHeaders || need > size {
		return 0, fmt.Errorf("PE headers of %d bytes: the file has %d, and at most %d are read", need, size, maxHeaders)
	}
	return need, nil
}

// parsePE reads the layout from head, which holds at least headerSpan bytes of a file of size
// bytes. It refuses what the Authenticode digest cannot be computed for the way sbsign and the
// UEFI firmware compute it: no Certificate Table entry, sections past the end of the file or
// overlapping each other or the headers.
func parsePE(head []byte, size int64) (*peLayout, error) {
	need, err := headerSpan(head, size)
	if err != nil {
		return nil, err
	}
	if int64(len(head)) < need {
		return nil, fmt.Errorf("PE headers: %d bytes needed, %d read", need, len(head))
	}
	pe := int64(le.Uint32(head[peSigOffsetAt:]))
	if string(head[pe:pe+4]) != "PE\x00\x00" {
		return nil, fmt.Errorf("not a PE image: no PE signature at %#x", pe)
	}
	coff := pe + 4
	opt := coff + coffHeaderSize
	optSize := int64(le.Uint16(head[coff+coffOptSize:]))
	if optSize < optCheckSum+4 {
		return nil, fmt.Errorf("PE optional header of %d bytes: too small", optSize)
	}
	var numRVA, dirs int64
	switch m := le.Uint16(head[opt+optMagic:]); m {
	case magicPE32:
		numRVA, dirs = optNumRVA32, optNumRVA32+4
	case magicPE32Plus:
		numRVA, dirs = optNumRVA64, optNumRVA64+4
	default:
		return nil, fmt.Errorf("PE optional header magic %#x: neither PE32 nor PE32+", m)
	}
	if optSize < numRVA+4 || int64(le.Uint32(head[opt+numRVA:])) <= dirCertTable || optSize < dirs+8*(dirCertTable+1) {
		return nil, errors.New("PE optional header has no Certificate Table entry")
	}
	l := &peLayout{
		headLen:    need,
		checksum:   opt + optCheckSum,
		certDir:    opt + dirs + 8*dirCertTable,
		sizeOfHdrs: int64(le.Uint32(head[opt+optSizeOfHdrs:])),
	}
	if l.checksum%2 != 0 {
		// The checksum sums 16-bit words from offset 0 around the CheckSum field (sbsign's
		// image_pecoff_update_checksum); an odd e_lfanew would split them differently.
		return nil, fmt.Errorf("PE header at odd offset %#x", pe)
	}
	l.certAddr = int64(le.Uint32(head[l.certDir:]))
	l.certSize = int64(le.Uint32(head[l.certDir+4:]))
	if l.sizeOfHdrs < l.certDir+8 {
		return nil, fmt.Errorf("PE SizeOfHeaders %#x ends inside the data directories", l.sizeOfHdrs)
	}
	secTable := opt + optSize
	nsec := int64(le.Uint16(head[coff+coffNumSecs:]))
	for i := range nsec {
		s := head[secTable+i*secHeaderSize:][:secHeaderSize]
		r := region{int64(le.Uint32(s[secPtrToRaw:])), int64(le.Uint32(s[secSizeOfRaw:]))}
		if r.n == 0 {
			continue
		}
		if r.end() > size {
			return nil, fmt.Errorf("PE section %d (%q): raw data %#x+%#x past the end of the file (%d bytes)",
				i, trimNUL(s[:8]), r.off, r.n, size)
		}
		l.sections = append(l.sections, r)
	}
	return l, nil
}

func trimNUL(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// regions lists what the Authenticode digest covers in a file of size bytes whose Certificate
// Table (at its end) is certSize bytes, in the order they are hashed. Microsoft's "Windows
// Authenticode Portable Executable Signature Format", "Calculating the PE Image Hash", steps
// 3–14: the headers up to SizeOfHeaders without the CheckSum field and the Certificate Table
// entry; every section with raw data, sorted by PointerToRawData; then, if the file holds more
// than the bytes hashed so far and the Certificate Table, the rest from file offset
// SUM_OF_BYTES_HASHED (the count, not the end of the last section: sbsign's image_find_regions
// and EDK2's DxeImageVerificationLib HashPeImage do the same) to the Certificate Table.
func (l *peLayout) regions(size, certSize int64) ([]region, error) {
	rs := []region{
		{0, l.checksum},
		{l.checksum + 4, l.certDir - (l.checksum + 4)},
		{l.certDir + 8, l.sizeOfHdrs - (l.certDir + 8)},
	}
	secs := slices.Clone(l.sections)
	slices.SortStableFunc(secs, func(a, b region) int { return cmp.Compare(a.off, b.off) })
	hashed := l.sizeOfHdrs
	end := l.sizeOfHdrs
	for _, s := range secs {
		if s.off < end {
			return nil, fmt.Errorf("PE section data at %#x+%#x overlaps the headers or the section before it (which end at %#x)", s.off, s.n, end)
		}
		rs = append(rs, s)
		hashed += s.n
		end = s.end()
	}
	if hashed+certSize < size {
		rs = append(rs, region{hashed, size - certSize - hashed})
	}
	return rs, nil
}

// signedSize is the length of the signed file before its Certificate Table: the input padded
// with zeros to a multiple of 8 (§4.7: the table starts 8-byte aligned). The padding is part of
// the file the digest covers: sbsign pads the image in memory and hashes it (image_load).
func signedSize(size int64) int64 { return alignUp(size, certTableAlignment) }

func alignUp(v, a int64) int64 { return (v + a - 1) / a * a }

// checksum is the PE image checksum (§3.4.2 CheckSum; the algorithm of imagehlp's
// CheckSumMappedFile, and of sbsign's image_pecoff_update_checksum): 16-bit little-endian words
// summed with the carry folded back in, the CheckSum field counting as zero, plus the file
// length. Write the whole file to it, in order.
type checksum struct {
	sum  uint64
	n    int64
	odd  bool
	lowB byte
}

func (c *checksum) Write(p []byte) (int, error) {
	n := len(p)
	c.n += int64(n)
	if c.odd && len(p) > 0 {
		c.sum += uint64(c.lowB) | uint64(p[0])<<8
		p = p[1:]
		c.odd = false
	}
	for len(p) >= 2 {
		c.sum += uint64(le.Uint16(p))
		p = p[2:]
	}
	if len(p) == 1 {
		c.lowB, c.odd = p[0], true
	}
	return n, nil
}

// addWords adds p, which must be an even number of bytes at an even file offset, to the sum
// without counting it in the length: a part of the file written before with zeros there.
func (c *checksum) addWords(p []byte) {
	for ; len(p) >= 2; p = p[2:] {
		c.sum += uint64(le.Uint16(p))
	}
}

func (c *checksum) value() uint32 {
	s := c.sum
	if c.odd {
		s += uint64(c.lowB)
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint32(s) + uint32(c.n)
}
