package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	_ "crypto/sha1" // SHA-1 Authenticode digests of old images
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Signature is one Authenticode signature of a PE image, as Signatures reads it.
type Signature struct {
	Subject, Issuer string // of the signer's certificate (RFC 2253 form); empty if it is not found
	Digest          string // the digest algorithm of the signed image digest, e.g. "SHA-256"
	// DigestOK: the image digest the signature carries is the digest of the file.
	DigestOK bool
	// SignatureOK: the signer's signature over the signed attributes verifies with the signer's
	// certificate, and the attributes' message digest is that of the signed content.
	SignatureOK bool
	// Verified: DigestOK, SignatureOK, and the signer's certificate is one of the roots or
	// chains up to one through the certificates the signature carries, as UEFI firmware
	// checks a db entry (no dates, no key usage).
	Verified bool
	Err      string // the first problem found, if any
}

// maxCertTable bounds the Certificate Table Signatures reads; signed images carry a few KiB.
const maxCertTable = 16 << 20

// Signatures reads the Authenticode signatures of the PE image r of size bytes: one per
// WIN_CERTIFICATE in its Certificate Table (none for an unsigned image). roots are the
// certificates to verify against (a db); with none, no signature is Verified. Only a file that
// is not a readable PE image is an error; a signature's problems are in its Err.
func Signatures(r io.ReaderAt, size int64, roots []*x509.Certificate) ([]Signature, error) {
	if size < 0 {
		return nil, fmt.Errorf("PE image of %d bytes", size)
	}
	head := make([]byte, min(size, 4096))
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("reading PE headers: %w", err)
	}
	need, err := headerSpan(head, size)
	if err != nil {
		return nil, err
	}
	if need > int64(len(head)) {
		head = make([]byte, need)
		if _, err := r.ReadAt(head, 0); err != nil {
			return nil, fmt.Errorf("reading PE headers: %w", err)
		}
	}
	l, err := parsePE(head, size)
	if err != nil {
		return nil, err
	}
	if l.certSize == 0 {
		return nil, nil
	}
	if l.certSize > maxCertTable || l.certAddr+l.certSize > size || l.certAddr < l.headLen {
		return nil, fmt.Errorf("PE Certificate Table at %#x+%#x: outside the file (%d bytes) or too big", l.certAddr, l.certSize, size)
	}
	table := make([]byte, l.certSize)
	if _, err := r.ReadAt(table, l.certAddr); err != nil {
		return nil, fmt.Errorf("reading PE Certificate Table: %w", err)
	}
	digests := map[crypto.Hash][]byte{}
	digest := func(h crypto.Hash) ([]byte, error) {
		if d, ok := digests[h]; ok {
			return d, nil
		}
		rs, err := l.regions(size, l.certSize)
		if err != nil {
			return nil, err
		}
		w := h.New()
		for _, reg := range rs {
			if _, err := io.Copy(w, io.NewSectionReader(r, reg.off, reg.n)); err != nil {
				return nil, fmt.Errorf("reading PE at %d: %w", reg.off, err)
			}
		}
		digests[h] = w.Sum(nil)
		return digests[h], nil
	}
	var sigs []Signature
	for off := 0; off+winCertHeaderSize <= len(table); {
		n := int(le.Uint32(table[off:]))
		if n < winCertHeaderSize || off+n > len(table) {
			sigs = append(sigs, Signature{Err: fmt.Sprintf("WIN_CERTIFICATE at %#x: length %d does not fit the table", l.certAddr+int64(off), n)})
			break
		}
		if t := le.Uint16(table[off+6:]); t != winCertTypePKCS7 {
			sigs = append(sigs, Signature{Err: fmt.Sprintf("WIN_CERTIFICATE at %#x: type %#x, not PKCS #7 SignedData", l.certAddr+int64(off), t)})
		} else {
			sigs = append(sigs, checkSignature(table[off+winCertHeaderSize:off+n], digest, roots))
		}
		off += int(alignUp(int64(n), certTableAlignment))
	}
	return sigs, nil
}

// PKCS #7 (RFC 2315 §9.1) as far as an Authenticode signature needs it.
type p7ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type p7SignedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      p7ContentInfo
	Certificates     p7Raw          `asn1:"optional,tag:0"`
	CRLs             p7Raw          `asn1:"optional,tag:1"`
	SignerInfos      []p7SignerInfo `asn1:"set"`
}

// p7Raw keeps an optional [n] IMPLICIT element whole; a bare asn1.RawValue would match any tag.
type p7Raw struct{ Raw asn1.RawContent }

type p7SignerInfo struct {
	Version         int
	IssuerAndSerial struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}
	DigestAlgorithm           pkix.AlgorithmIdentifier
	AuthAttrs                 p7Raw `asn1:"optional,tag:0"`
	DigestEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedDigest           []byte
	UnauthAttrs               p7Raw `asn1:"optional,tag:1"`
}

type p7Attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue
}

// spcIndirectData is SpcIndirectDataContent, the content of an Authenticode SignedData.
type spcIndirectData struct {
	Data struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"optional"`
	}
	MessageDigest struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
}

func hashOf(o asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case o.Equal(oidSHA1):
		return crypto.SHA1, true
	case o.Equal(oidSHA256):
		return crypto.SHA256, true
	case o.Equal(oidSHA384):
		return crypto.SHA384, true
	case o.Equal(oidSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// checkSignature reads and checks one Authenticode signature (a DER ContentInfo).
func checkSignature(der []byte, digest func(crypto.Hash) ([]byte, error), roots []*x509.Certificate) Signature {
	var sig Signature
	fail := func(format string, a ...any) Signature {
		if sig.Err == "" {
			sig.Err = fmt.Sprintf(format, a...)
		}
		return sig
	}
	var ci p7ContentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil || !ci.ContentType.Equal(oidSignedData) {
		return fail("not a PKCS #7 SignedData: %v", orType(err, ci.ContentType))
	}
	var sd p7SignedData
	// encoding/asn1 leaves an explicitly tagged RawValue whole: Bytes is the element inside [0].
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return fail("PKCS #7 SignedData: %v", err)
	}
	if len(sd.SignerInfos) != 1 {
		return fail("PKCS #7 SignedData with %d signers, Authenticode has one", len(sd.SignerInfos))
	}
	si := sd.SignerInfos[0]
	var certs []*x509.Certificate
	if len(sd.Certificates.Raw) > 0 {
		b, err := contents(sd.Certificates.Raw)
		if err == nil {
			certs, err = x509.ParseCertificates(b)
		}
		if err != nil {
			return fail("certificates: %v", err)
		}
	}
	var signer *x509.Certificate
	for _, c := range certs {
		if bytes.Equal(c.RawIssuer, si.IssuerAndSerial.Issuer.FullBytes) && c.SerialNumber.Cmp(si.IssuerAndSerial.Serial) == 0 {
			signer = c
			break
		}
	}
	if signer != nil {
		sig.Subject, sig.Issuer = signer.Subject.String(), signer.Issuer.String()
	}

	// The image digest against the file.
	var idc spcIndirectData
	content, cerr := contents(sd.ContentInfo.Content.Bytes) // the value of the signed content
	if !sd.ContentInfo.ContentType.Equal(oidSpcIndirectData) {
		fail("content type %v, not SpcIndirectDataContent", sd.ContentInfo.ContentType)
	} else if _, err := asn1.Unmarshal(sd.ContentInfo.Content.Bytes, &idc); err != nil || cerr != nil {
		fail("SpcIndirectDataContent: %v", err)
	} else if h, ok := hashOf(idc.MessageDigest.Algorithm.Algorithm); !ok {
		fail("image digest algorithm %v not supported", idc.MessageDigest.Algorithm.Algorithm)
	} else {
		sig.Digest = h.String()
		d, err := digest(h)
		switch {
		case err != nil:
			fail("image digest: %v", err)
		case !bytes.Equal(d, idc.MessageDigest.Digest):
			fail("image digest mismatch: the file's %s is %x, the signature's %x", h, d, idc.MessageDigest.Digest)
		default:
			sig.DigestOK = true
		}
	}

	// The signer's signature, over the authenticated attributes (RFC 2315 §9.3).
	if err := verifySignerInfo(si, signer, content); err != nil {
		fail("%v", err)
	} else {
		sig.SignatureOK = true
	}

	if len(roots) > 0 && sig.DigestOK && sig.SignatureOK {
		if chainsTo(signer, certs, roots) {
			sig.Verified = true
		} else {
			fail("the signer %q does not chain to any of the %d given certificates", sig.Subject, len(roots))
		}
	}
	return sig
}

func orType(err error, t asn1.ObjectIdentifier) any {
	if err != nil {
		return err
	}
	return "content type " + t.String()
}

// verifySignerInfo checks si's RSA signature with signer's key: over the DER SET OF its
// authenticated attributes, whose messageDigest must be the digest of content (the value of the
// signed content); or, without attributes, over content itself.
func verifySignerInfo(si p7SignerInfo, signer *x509.Certificate, content []byte) error {
	if signer == nil {
		return errors.New("the signer's certificate is not in the signature")
	}
	h, ok := hashOf(si.DigestAlgorithm.Algorithm)
	if !ok {
		return fmt.Errorf("signer digest algorithm %v not supported", si.DigestAlgorithm.Algorithm)
	}
	pub, ok := signer.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("signer key %s not supported (RSA only)", signer.PublicKeyAlgorithm)
	}
	signed := content
	if len(si.AuthAttrs.Raw) > 0 {
		attrs, err := contents(si.AuthAttrs.Raw)
		if err != nil {
			return fmt.Errorf("authenticated attributes: %w", err)
		}
		var md []byte
		for rest := attrs; len(rest) > 0; {
			var a p7Attribute
			if rest, err = asn1.Unmarshal(rest, &a); err != nil {
				return fmt.Errorf("authenticated attributes: %w", err)
			}
			if a.Type.Equal(oidMessageDigest) {
				if _, err := asn1.Unmarshal(a.Values.Bytes, &md); err != nil {
					return fmt.Errorf("messageDigest attribute: %w", err)
				}
			}
		}
		w := h.New()
		w.Write(content)
		if md == nil || !bytes.Equal(md, w.Sum(nil)) {
			return errors.New("the messageDigest attribute is not the digest of the signed content")
		}
		signed = der(tagSet, attrs)
	}
	w := h.New()
	w.Write(signed)
	if err := rsa.VerifyPKCS1v15(pub, h, w.Sum(nil), si.EncryptedDigest); err != nil {
		return fmt.Errorf("the signature does not verify with the signer's certificate %q", signer.Subject)
	}
	return nil
}

// chainsTo reports whether c is one of roots or is signed, through certs, by one of them.
func chainsTo(c *x509.Certificate, certs, roots []*x509.Certificate) bool {
	isRoot := func(c *x509.Certificate) bool {
		for _, r := range roots {
			if bytes.Equal(r.Raw, c.Raw) {
				return true
			}
		}
		return false
	}
	for depth := 0; depth < 8; depth++ {
		if isRoot(c) {
			return true
		}
		var parent *x509.Certificate
		for _, p := range append(roots[:len(roots):len(roots)], certs...) {
			if bytes.Equal(p.RawSubject, c.RawIssuer) && p.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
				parent = p
				break
			}
		}
		if parent == nil || parent == c {
			return false
		}
		c = parent
	}
	return false
}
