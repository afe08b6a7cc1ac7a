package inspect

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/imgfab/imgfab/secureboot"
)

// EFIBinary is one EFI executable on the ESP and its Authenticode signatures.
type EFIBinary struct {
	Path string `json:"path"` // "/EFI/BOOT/BOOTX64.EFI", as the directory entries spell it
	Size int64  `json:"size"`
	// Signatures are its Authenticode signatures in Certificate Table order; empty: unsigned.
	Signatures []Signature `json:"signatures"`
	// Error says why the signatures could not be read (not a PE image, a damaged file).
	Error string `json:"error,omitempty"`
}

// Signature is one Authenticode signature of an EFI binary (package secureboot reads it).
type Signature struct {
	Subject string `json:"subject,omitempty"` // the signer certificate's subject (RFC 2253); "" when it is not in the signature
	Issuer  string `json:"issuer,omitempty"`
	Digest  string `json:"digest,omitempty"` // the signed image digest's algorithm, "SHA-256"
	// DigestOK: the signed image digest is the file's Authenticode digest (the file was not
	// changed after signing).
	DigestOK bool `json:"digest_ok"`
	// SignatureOK: the signer's signature over the signed attributes verifies with the signer's
	// certificate.
	SignatureOK bool `json:"signature_ok"`
	// Verified, with Options.Certs (`imgfab inspect --cert`): DigestOK, SignatureOK, and the
	// signer's certificate is one of the certificates or chains up to one through those the
	// signature carries, as firmware checks a db entry (no dates, no key usage). Nil without
	// certificates.
	Verified *bool `json:"verified,omitempty"`
	// Error is the first problem found with this signature.
	Error string `json:"error,omitempty"`
}

const (
	// maxEFIBinaries bounds the EFI binaries whose signatures are read; maxEFIDepth the
	// directory levels under /EFI searched (EFI/Linux/x.efi is depth 2).
	maxEFIBinaries = 64
	maxEFIDepth    = 4
)

// efiBinaries lists the *.efi files under /EFI/ on the ESP in r[0:size) (depth first, names
// sorted) and reads their signatures. The FAT reader's budget is the partition's bytes twice over
// plus maxFATRead: every binary is read whole once for its digest, and directory entries may share
// clusters. Problems are warnings or the binary's Error.
func efiBinaries(ctx context.Context, r io.ReaderAt, size int64, certs []*x509.Certificate, warn func(string, ...any)) []EFIBinary {
	f, err := openFAT(r, size)
	if err != nil {
		return nil // a warning of readESP's already
	}
	f.left = maxFATRead + 2*size
	top, err := f.lookup("EFI")
	if err != nil || !top.dir {
		return nil
	}
	var out []EFIBinary
	var walk func(dir fatEntry, p string, depth int)
	walk = func(dir fatEntry, p string, depth int) {
		es, err := f.list(dir.clus)
		if err != nil {
			warn("EFI system partition: %s: %v", p, err)
			return
		}
		slices.SortFunc(es, func(a, b fatEntry) int { return strings.Compare(a.name, b.name) })
		for _, e := range es {
			if e.label || ctx.Err() != nil {
				continue
			}
			q := path.Join(p, e.name)
			switch {
			case e.dir && depth < maxEFIDepth:
				walk(e, q, depth+1)
			case !e.dir && strings.EqualFold(path.Ext(e.name), ".efi"):
				if len(out) == maxEFIBinaries {
					warn("EFI system partition: more than %d EFI binaries under /EFI; the rest are not listed", maxEFIBinaries)
					out = append(out, EFIBinary{}) // a marker, cut below
					continue
				}
				if len(out) > maxEFIBinaries {
					continue
				}
				out = append(out, readEFIBinary(f, e, q, certs))
			}
		}
	}
	walk(top, "/EFI", 1)
	if len(out) > maxEFIBinaries {
		out = out[:maxEFIBinaries]
	}
	if out == nil {
		out = []EFIBinary{}
	}
	return out
}

// readEFIBinary reads the signatures of the file e at p.
func readEFIBinary(f *fatFS, e fatEntry, p string, certs []*x509.Certificate) EFIBinary {
	b := EFIBinary{Path: p, Size: e.size, Signatures: []Signature{}}
	ff := &fatFile{f: f, path: p, size: e.size, chain: []int64{e.clus}, mark: e.clus}
	sigs, err := signatures(runReader{ff}, e.size, certs)
	if err != nil {
		b.Error = err.Error()
		if errors.Is(err, errFATBudget) {
			b.Error = "not read: " + b.Error
		}
		return b
	}
	for _, s := range sigs {
		x := Signature{Subject: s.Subject, Issuer: s.Issuer, Digest: s.Digest, DigestOK: s.DigestOK, SignatureOK: s.SignatureOK, Error: s.Err}
		if len(certs) > 0 {
			v := s.Verified
			x.Verified = &v
		}
		b.Signatures = append(b.Signatures, x)
	}
	return b
}

// signatures is secureboot.Signatures with a panic turned into an error (it reads untrusted PE
// images; a bug there must not take inspect down).
func signatures(r io.ReaderAt, size int64, certs []*x509.Certificate) (sigs []secureboot.Signature, err error) {
	defer func() {
		if v := recover(); v != nil {
			sigs, err = nil, fmt.Errorf("malformed PE image (the signature reader panicked: %v)", v)
		}
	}()
	return secureboot.Signatures(r, size, certs)
}
