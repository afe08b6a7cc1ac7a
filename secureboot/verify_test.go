package secureboot

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

func signatures(t *testing.T, b []byte, roots ...*x509.Certificate) []Signature {
	t.Helper()
	sigs, err := Signatures(bytes.NewReader(b), int64(len(b)), roots)
	if err != nil {
		t.Fatal(err)
	}
	return sigs
}

// TestSignatures: our signature and sbsign's are read back with the signer, a matching digest
// and a good signature, Verified against db.crt and not against KEK.crt; a changed byte breaks
// the digest only; an unsigned image has no signatures.
func TestSignatures(t *testing.T) {
	sbsign := testtool.Need(t, "sbsign", "sbsigntool")
	db, kek := loadTestSigner(t, "db"), loadTestSigner(t, "KEK")
	path := efiBinaries(t)[0]
	pe, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sigs := signatures(t, pe, db.Cert); len(sigs) != 0 {
		t.Errorf("unsigned image: %+v", sigs)
	}
	ours, err := db.SignPE(pe)
	if err != nil {
		t.Fatal(err)
	}
	sbsigned := filepath.Join(t.TempDir(), "sbsigned.efi")
	dir := keyDir(t)
	if out, err := exec.Command(sbsign, "--key", filepath.Join(dir, "db.key"), "--cert", filepath.Join(dir, "db.crt"), "--output", sbsigned, path).CombinedOutput(); err != nil {
		t.Fatalf("sbsign: %v\n%s", err, out)
	}
	theirs, err := os.ReadFile(sbsigned)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ours": ours, "sbsign": theirs} {
		sigs := signatures(t, b, db.Cert)
		want := Signature{Subject: "CN=imgfab test Signature Database Key", Issuer: "CN=imgfab test Signature Database Key",
			Digest: "SHA-256", DigestOK: true, SignatureOK: true, Verified: true}
		if len(sigs) != 1 || sigs[0] != want {
			t.Errorf("%s: %+v, want %+v", name, sigs, want)
		}
		if sigs := signatures(t, b, kek.Cert); len(sigs) != 1 || sigs[0].Verified || !strings.Contains(sigs[0].Err, "does not chain") {
			t.Errorf("%s against KEK: %+v", name, sigs)
		}
		if sigs := signatures(t, b); len(sigs) != 1 || sigs[0].Verified || !sigs[0].DigestOK || sigs[0].Err != "" {
			t.Errorf("%s without roots: %+v", name, sigs)
		}
		flipped := bytes.Clone(b)
		flipped[len(pe)/2] ^= 1
		if sigs := signatures(t, flipped, db.Cert); len(sigs) != 1 || sigs[0].DigestOK || !sigs[0].SignatureOK || sigs[0].Verified || !strings.Contains(sigs[0].Err, "digest mismatch") {
			t.Errorf("%s with a byte changed: %+v", name, sigs)
		}
		// A byte of the signature itself: the signer's signature no longer verifies.
		addr, _, p7 := certTable(t, b)
		broken := bytes.Clone(b)
		broken[addr+winCertHeaderSize+int64(len(p7))-10] ^= 1
		if sigs := signatures(t, broken, db.Cert); len(sigs) != 1 || sigs[0].SignatureOK || sigs[0].Verified {
			t.Errorf("%s with its signature changed: %+v", name, sigs)
		}
	}
}

// TestSignaturesMicrosoft: the Debian shim, signed by Microsoft with its own tools, reads back
// with a matching digest and a good signature: the digest is computed as Microsoft computes it.
func TestSignaturesMicrosoft(t *testing.T) {
	path := testtool.Fixture(t, filepath.Join("debian-sb", "sb", "usr", "lib", "shim", "shimx64.efi.signed"), "mkdebian-sb.sh")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sigs := signatures(t, b)
	if len(sigs) == 0 {
		t.Fatal("no signatures")
	}
	for _, s := range sigs {
		t.Logf("%+v", s)
		if !s.DigestOK || !s.SignatureOK || !strings.Contains(s.Subject, "Microsoft") {
			t.Errorf("shim signature: %+v", s)
		}
	}
	// Its own issuer chain is not in the signature's roots: no verification without roots.
	if sigs[0].Verified {
		t.Error("Verified without roots")
	}
}

// FuzzSignatures: Signatures never panics on a damaged signed image, and an image it reads
// without error keeps reading the same.
func FuzzSignatures(f *testing.F) {
	dir, err := testKeys()
	if err != nil {
		f.Fatal(err)
	}
	s, err := LoadSigner(filepath.Join(dir, "db.key"), filepath.Join(dir, "db.crt"))
	if err != nil {
		f.Fatal(err)
	}
	signed, err := s.SignPE(gapPE())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed, uint16(0), byte(0))
	f.Add(signed, uint16(0x9c), byte(0xff))              // the Certificate Table entry
	f.Add(signed, uint16(len(signed)-0x500), byte(0x80)) // inside the PKCS #7
	f.Fuzz(func(t *testing.T, b []byte, at uint16, x byte) {
		if len(b) > 0 {
			b = bytes.Clone(b)
			b[int(at)%len(b)] ^= x
		}
		sigs1, err1 := Signatures(bytes.NewReader(b), int64(len(b)), []*x509.Certificate{s.Cert})
		sigs2, err2 := Signatures(bytes.NewReader(b), int64(len(b)), []*x509.Certificate{s.Cert})
		if (err1 == nil) != (err2 == nil) || len(sigs1) != len(sigs2) {
			t.Fatalf("two reads differ: %v %v / %v %v", sigs1, err1, sigs2, err2)
		}
		for _, sig := range sigs1 {
			if sig.Verified && (!sig.DigestOK || !sig.SignatureOK) {
				t.Fatalf("verified without digest or signature: %+v", sig)
			}
		}
	})
}
