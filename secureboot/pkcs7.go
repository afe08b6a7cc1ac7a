package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
)

// Object identifiers of PKCS #7 (RFC 2315), PKCS #9 (RFC 2985), NIST hashes and Authenticode.
var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1} // RFC 2315 §14
	oidSignedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3} // RFC 2985 §5.3.1
	oidMessageDigest   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4} // RFC 2985 §5.3.2
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1} // RFC 8017 appendix C
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1} // RFC 5754 §2
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSpcIndirectData = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}  // Authenticode: SPC_INDIRECT_DATA_OBJID
	oidSpcPEImageData  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 15} // SPC_PE_IMAGE_DATAOBJ
)

// DER tags (X.690 §8; context-specific constructed [0] is 0xa0).
const (
	tagInteger  = 0x02
	tagOctets   = 0x04
	tagOID      = 0x06
	tagSequence = 0x30
	tagSet      = 0x31
	tagCtx0     = 0xa0
)

// der is the DER encoding (X.690 §8.1, definite length) of tag around the concatenated contents.
func der(tag byte, contents ...[]byte) []byte {
	n := 0
	for _, c := range contents {
		n += len(c)
	}
	b := []byte{tag}
	switch {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	case n < 0x10000:
		b = append(b, 0x82, byte(n>>8), byte(n))
	default:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	for _, c := range contents {
		b = append(b, c...)
	}
	return b
}

func derOID(o asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(o)
	if err != nil {
		panic(err) // only the constants above
	}
	return b
}

// algorithm is an AlgorithmIdentifier with NULL parameters, as OpenSSL writes SHA-256 and
// rsaEncryption.
func algorithm(o asn1.ObjectIdentifier) []byte {
	return der(tagSequence, derOID(o), []byte{0x05, 0x00})
}

// spcPEImageData is SpcAttributeTypeAndOptionalValue{SPC_PE_IMAGE_DATAOBJ, SpcPeImageData} as
// Authenticode ("Windows Authenticode Portable Executable Signature Format", "SpcPeImageData")
// and sbsign (idc.c) write it: flags an empty BIT STRING, file an SpcLink [2] holding the
// SpcString [0] BMPString "<<<Obsolete>>>".
func spcPEImageData() []byte {
	var obsolete []byte
	for _, r := range "<<<Obsolete>>>" {
		obsolete = append(obsolete, 0, byte(r)) // BMPString: UCS-2 big-endian
	}
	link := der(0xa2, der(0x80, obsolete))                                   // SpcLink: file [2] EXPLICIT SpcString; unicode [0] IMPLICIT
	peData := der(tagSequence, []byte{0x03, 0x01, 0x00}, der(tagCtx0, link)) // flags BIT STRING {}, file [0] EXPLICIT
	return der(tagSequence, derOID(oidSpcPEImageData), peData)
}

// spcIndirectDataContent is SpcIndirectDataContent{data, messageDigest DigestInfo{SHA-256, digest}}.
func spcIndirectDataContent(digest []byte) []byte {
	return der(tagSequence, spcPEImageData(), der(tagSequence, algorithm(oidSHA256), der(tagOctets, digest)))
}

// attribute is a PKCS #9 Attribute{type, SET OF value} with one value.
func attribute(o asn1.ObjectIdentifier, value []byte) []byte {
	return der(tagSequence, derOID(o), der(tagSet, value))
}

// authenticode is the Authenticode signature of a PE image whose digest is digest: a PKCS #7
// ContentInfo of SignedData (RFC 2315 §9.1) whose content is the SpcIndirectDataContent, signed
// by s with SHA-256 and RSA PKCS #1 v1.5 over the authenticated attributes contentType and
// messageDigest, the latter the SHA-256 of the content's value (its DER without tag and
// length, as Authenticode specifies and sbsign's IDC_set hashes it). No signing time or other
// attribute: the output depends on the key, the certificate and the digest only.
func (s *Signer) authenticode(digest []byte) ([]byte, error) {
	idc := spcIndirectDataContent(digest)
	value, err := contents(idc)
	if err != nil {
		return nil, err
	}
	md := sha256.Sum256(value)
	attrs := [][]byte{
		attribute(oidContentType, derOID(oidSpcIndirectData)),
		attribute(oidMessageDigest, der(tagOctets, md[:])),
	}
	slices.SortFunc(attrs, bytes.Compare) // DER: a SET OF in the order of its encodings (X.690 §11.6)
	// RFC 2315 §9.3: the signature is over the DER of the attributes with the SET OF tag, not
	// the [0] IMPLICIT the SignerInfo carries them under.
	signed := sha256.Sum256(der(tagSet, attrs...))
	sig, err := rsa.SignPKCS1v15(nil, s.Key, crypto.SHA256, signed[:])
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	sd := signedData(oidSpcIndirectData, idc, s.Cert, der(tagCtx0, attrs...), sig)
	return der(tagSequence, derOID(oidSignedData), der(tagCtx0, sd)), nil
}

// signDetached is the PKCS #7 SignedData (RFC 2315 §9.1, without a ContentInfo around it) that
// efitools' sign-efi-sig-list writes into an authenticated variable: content type data, the
// content left out, no authenticated attributes, the signature RSA PKCS #1 v1.5 over the SHA-256
// of payload (OpenSSL's PKCS7_sign with PKCS7_DETACHED|PKCS7_NOATTR, then i2d_PKCS7_SIGNED).
func (s *Signer) signDetached(payload []byte) ([]byte, error) {
	d := sha256.Sum256(payload)
	sig, err := rsa.SignPKCS1v15(nil, s.Key, crypto.SHA256, d[:])
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return signedData(oidData, nil, s.Cert, nil, sig), nil
}

// signedData is SignedData version 1 with one SHA-256 digest algorithm, the content (a DER value,
// or nil for a detached signature) of type ct, the certificate, and one SignerInfo (version 1,
// issuerAndSerialNumber, SHA-256, authAttrs as [0] (nil: none), rsaEncryption, sig).
func signedData(ct asn1.ObjectIdentifier, content []byte, cert *x509.Certificate, authAttrs, sig []byte) []byte {
	ci := der(tagSequence, derOID(ct))
	if content != nil {
		ci = der(tagSequence, derOID(ct), der(tagCtx0, content))
	}
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		panic(err) // a *big.Int always marshals
	}
	si := der(tagSequence,
		[]byte{tagInteger, 1, 1},
		der(tagSequence, cert.RawIssuer, serial),
		algorithm(oidSHA256),
		authAttrs,
		algorithm(oidRSAEncryption),
		der(tagOctets, sig))
	return der(tagSequence,
		[]byte{tagInteger, 1, 1},
		der(tagSet, algorithm(oidSHA256)),
		ci,
		der(tagCtx0, cert.Raw), // certificates [0] IMPLICIT SET OF Certificate
		der(tagSet, si))
}

// contents returns the value of the DER element b: its bytes without tag and length.
func contents(b []byte) ([]byte, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(b, &v)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after a DER value", len(rest))
	}
	return v.Bytes, nil
}
