package secureboot

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// testKeys are PK, KEK and db made once by CreateKeys for all tests.
var testKeys = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "secureboot-test-keys")
	if err != nil {
		return "", err
	}
	return dir, CreateKeys(dir, KeyOptions{CommonName: "imgfab test", Time: testTime})
})

var testTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := testKeys(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// keyDir returns the test keys' directory.
func keyDir(t *testing.T) string {
	t.Helper()
	dir, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadTestSigner(t *testing.T, name string) *Signer {
	t.Helper()
	dir := keyDir(t)
	s, err := LoadSigner(filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// efiBinaries are the unsigned EFI binaries of Debian's systemd-boot-efi: from the host, or from
// the Debian fixture's tree.
func efiBinaries(t *testing.T) []string {
	t.Helper()
	names := []string{"systemd-bootx64.efi", "linuxx64.efi.stub"}
	var paths []string
	for _, n := range names {
		p := filepath.Join("/usr/lib/systemd/boot/efi", n)
		if _, err := os.Stat(p); err != nil {
			p = testtool.Fixture(t, filepath.Join("debian", "layer1", "usr", "lib", "systemd", "boot", "efi", n), "mkdebian.sh")
		}
		paths = append(paths, p)
	}
	return paths
}

func fileOpener(path string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(path) }
}

func signStream(t *testing.T, s *Signer, path string) []byte {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size, open, err := s.SignPEStream(fileOpener(path), st.Size())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("SignPEStream said %d bytes, streamed %d", size, len(b))
	}
	return b
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sbverify runs `sbverify --cert CRT FILE` and reports whether it accepted the file.
func sbverify(t *testing.T, crt string, b []byte) (bool, string) {
	t.Helper()
	bin := testtool.Need(t, "sbverify", "sbsigntool")
	out, err := exec.Command(bin, "--cert", crt, writeTemp(t, "signed.efi", b)).CombinedOutput()
	ok := err == nil && strings.Contains(string(out), "Signature verification OK")
	return ok, string(out)
}

// certTable returns the signed image's Certificate Table entry and its first WIN_CERTIFICATE's
// PKCS #7 bytes.
func certTable(t *testing.T, signed []byte) (addr, size int64, p7 []byte) {
	t.Helper()
	need, err := headerSpan(signed, int64(len(signed)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := parsePE(signed[:need], int64(len(signed)))
	if err != nil {
		t.Fatal(err)
	}
	n := int64(le.Uint32(signed[l.certAddr:]))
	return l.certAddr, l.certSize, signed[l.certAddr+winCertHeaderSize : l.certAddr+n]
}

// TestSignPEAgainstSbsigntool signs systemd-boot and the systemd stub in memory and streamed:
// the same bytes, twice; `sbverify --cert db.crt` accepts them and rejects them with another
// certificate or with a byte changed; `sbattach --attach` of our signature onto the unsigned image
// gives our bytes exactly (padding, WIN_CERTIFICATE, directory entry, CheckSum); and sbsign's
// signature of the same image differs only in its signed attributes (OpenSSL adds signingTime
// and SMIMECapabilities): the same SpcIndirectDataContent, certificate and signer.
func TestSignPEAgainstSbsigntool(t *testing.T) {
	sbattach := testtool.Need(t, "sbattach", "sbsigntool")
	sbsign := testtool.Need(t, "sbsign", "sbsigntool")
	s := loadTestSigner(t, "db")
	dir := keyDir(t)
	dbCrt, kekCrt := filepath.Join(dir, "db.crt"), filepath.Join(dir, "KEK.crt")
	for _, path := range efiBinaries(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			pe, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := s.SignPE(pe)
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.SignPE(pe)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, again) {
				t.Error("two SignPE runs differ")
			}
			if streamed := signStream(t, s, path); !bytes.Equal(ours, streamed) {
				t.Errorf("SignPEStream differs from SignPE (%d vs %d bytes, first difference at %d)", len(streamed), len(ours), firstDiff(ours, streamed))
			}

			if ok, out := sbverify(t, dbCrt, ours); !ok {
				t.Errorf("sbverify --cert db.crt rejects our signature:\n%s", out)
			}
			if ok, out := sbverify(t, kekCrt, ours); ok {
				t.Errorf("sbverify --cert KEK.crt accepts a db signature:\n%s", out)
			}
			flipped := bytes.Clone(ours)
			flipped[len(pe)/2] ^= 0x01
			if ok, out := sbverify(t, dbCrt, flipped); ok {
				t.Errorf("sbverify accepts the image with a byte changed:\n%s", out)
			}

			// sbattach: sbsigntool's own padding, table and checksum around our signature.
			addr, size, p7 := certTable(t, ours)
			if addr != alignUp(int64(len(pe)), 8) || size != int64(len(ours))-addr || size%8 != 0 {
				t.Errorf("Certificate Table at %d+%d in a %d-byte file signed from %d bytes", addr, size, len(ours), len(pe))
			}
			sigPath := writeTemp(t, "sig.p7", p7)
			attached := writeTemp(t, "attached.efi", pe)
			if out, err := exec.Command(sbattach, "--attach", sigPath, attached).CombinedOutput(); err != nil {
				t.Fatalf("sbattach: %v\n%s", err, out)
			}
			if theirs, _ := os.ReadFile(attached); !bytes.Equal(theirs, ours) {
				t.Errorf("sbattach --attach of our signature gives other bytes (%d vs %d, first difference at %d)", len(theirs), len(ours), firstDiff(theirs, ours))
			}

			// sbsign: same content and signer, other attributes.
			sbsigned := filepath.Join(t.TempDir(), "sbsigned.efi")
			if out, err := exec.Command(sbsign, "--key", filepath.Join(dir, "db.key"), "--cert", dbCrt, "--output", sbsigned, path).CombinedOutput(); err != nil {
				t.Fatalf("sbsign: %v\n%s", err, out)
			}
			theirs, err := os.ReadFile(sbsigned)
			if err != nil {
				t.Fatal(err)
			}
			taddr, _, tp7 := certTable(t, theirs)
			if taddr != addr || !bytes.Equal(theirs[:addr], withSigFieldsOf(ours[:addr], theirs)) {
				t.Errorf("sbsign's image before the Certificate Table differs from ours in more than the CheckSum and the table's size (tables at %d and %d)", taddr, addr)
			}
			o, th := parseP7(t, p7), parseP7(t, tp7)
			if !bytes.Equal(o.ContentInfo.Content.Bytes, th.ContentInfo.Content.Bytes) {
				t.Error("SpcIndirectDataContent differs from sbsign's")
			}
			if !bytes.Equal(o.Certificates.Raw, th.Certificates.Raw) {
				t.Error("certificates differ from sbsign's")
			}
			if len(th.SignerInfos) != 1 || !bytes.Equal(o.SignerInfos[0].IssuerAndSerial.Issuer.FullBytes, th.SignerInfos[0].IssuerAndSerial.Issuer.FullBytes) {
				t.Error("signer differs from sbsign's")
			}
			if got, want := attrTypes(t, o.SignerInfos[0]), "1.2.840.113549.1.9.3 1.2.840.113549.1.9.4"; got != want {
				t.Errorf("our signed attributes %s, want %s (contentType, messageDigest)", got, want)
			}
			t.Logf("sbsign's signed attributes: %s", attrTypes(t, th.SignerInfos[0]))
		})
	}
}

// withSigFieldsOf returns a copy of head with the fields that depend on the signature's bytes
// taken from other: the CheckSum and the Certificate Table's size.
func withSigFieldsOf(head, other []byte) []byte {
	need, _ := headerSpan(head, int64(len(head)))
	l, err := parsePE(head[:need], int64(len(head)))
	if err != nil {
		return nil
	}
	b := bytes.Clone(head)
	copy(b[l.checksum:l.checksum+4], other[l.checksum:])
	copy(b[l.certDir+4:l.certDir+8], other[l.certDir+4:])
	return b
}

func parseP7(t *testing.T, der []byte) p7SignedData {
	t.Helper()
	var ci p7ContentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		t.Fatal(err)
	}
	var sd p7SignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	return sd
}

func attrTypes(t *testing.T, si p7SignerInfo) string {
	t.Helper()
	b, err := contents(si.AuthAttrs.Raw)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for len(b) > 0 {
		var a p7Attribute
		if b, err = asn1.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		types = append(types, a.Type.String())
	}
	return strings.Join(types, " ")
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// gapPE is a small PE32+ image whose two sections leave a gap between them and whose file ends
// with 13 bytes after the last section: the digest's trailing region then starts at the count
// of bytes hashed (inside the last section), which SignPEStream reads with a second pass.
func gapPE() []byte {
	const (
		lfanew  = 0x40
		optSize = 240
		hdrs    = 0x200
	)
	b := make([]byte, 0x6000+13)
	b[0], b[1] = 'M', 'Z'
	le.PutUint32(b[peSigOffsetAt:], lfanew)
	copy(b[lfanew:], "PE\x00\x00")
	coff := lfanew + 4
	le.PutUint16(b[coff:], 0x8664) // Machine: AMD64
	le.PutUint16(b[coff+coffNumSecs:], 2)
	le.PutUint16(b[coff+coffOptSize:], optSize)
	le.PutUint16(b[coff+18:], 0x2022) // Characteristics: executable, large address aware, DLL
	opt := coff + coffHeaderSize
	le.PutUint16(b[opt:], magicPE32Plus)
	le.PutUint32(b[opt+32:], 0x1000) // SectionAlignment
	le.PutUint32(b[opt+36:], 0x200)  // FileAlignment
	le.PutUint32(b[opt+56:], 0x5000) // SizeOfImage
	le.PutUint32(b[opt+optSizeOfHdrs:], hdrs)
	le.PutUint16(b[opt+68:], 10) // Subsystem: EFI application
	le.PutUint32(b[opt+optNumRVA64:], 16)
	sec := opt + optSize
	for i, s := range []struct {
		name    string
		va, raw uint32
	}{{".text", 0x1000, 0x200}, {".data", 0x3000, 0x4000}} {
		h := b[sec+i*secHeaderSize:]
		copy(h, s.name)
		le.PutUint32(h[8:], 0x2000) // VirtualSize
		le.PutUint32(h[12:], s.va)  // VirtualAddress
		le.PutUint32(h[secSizeOfRaw:], 0x2000)
		le.PutUint32(h[secPtrToRaw:], s.raw)
		le.PutUint32(h[36:], 0x60000020)
	}
	for i := hdrs; i < len(b); i++ {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// TestSignGapPE: on an image with a gap between sections and an unaligned tail, SignPE and
// SignPEStream agree (the stream goes back once for the trailing region), sbverify accepts the
// result (so the digest has sbsign's trailing region) and sbattach gives the same bytes.
func TestSignGapPE(t *testing.T) {
	sbattach := testtool.Need(t, "sbattach", "sbsigntool")
	s := loadTestSigner(t, "db")
	pe := gapPE()
	ours, err := s.SignPE(pe)
	if err != nil {
		t.Fatal(err)
	}
	opens := 0
	size, open, err := s.SignPEStream(func() (io.ReadCloser, error) {
		opens++
		return io.NopCloser(bytes.NewReader(pe)), nil
	}, int64(len(pe)))
	if err != nil {
		t.Fatal(err)
	}
	if opens != 2 {
		t.Errorf("SignPEStream opened the image %d times, want 2 (one pass and one re-read of the gap)", opens)
	}
	rc, _ := open()
	streamed, _ := io.ReadAll(rc)
	if int64(len(streamed)) != size || !bytes.Equal(streamed, ours) {
		t.Errorf("SignPEStream differs from SignPE (first difference at %d)", firstDiff(ours, streamed))
	}
	if ok, out := sbverify(t, filepath.Join(keyDir(t), "db.crt"), ours); !ok {
		t.Errorf("sbverify rejects the signed gap image:\n%s", out)
	}
	_, _, p7 := certTable(t, ours)
	attached := writeTemp(t, "attached.efi", pe)
	if out, err := exec.Command(sbattach, "--attach", writeTemp(t, "sig.p7", p7), attached).CombinedOutput(); err != nil {
		t.Fatalf("sbattach: %v\n%s", err, out)
	}
	if theirs, _ := os.ReadFile(attached); !bytes.Equal(theirs, ours) {
		t.Errorf("sbattach gives other bytes (first difference at %d)", firstDiff(theirs, ours))
	}
	sigs, err := Signatures(bytes.NewReader(ours), int64(len(ours)), []*x509.Certificate{s.Cert})
	if err != nil || len(sigs) != 1 || !sigs[0].Verified {
		t.Errorf("Signatures: %+v, %v", sigs, err)
	}
}

// TestSignPEStreamErrors: a stream shorter or longer than its size, an image that changed
// between the pass and the output, a signed image and a file that is not PE are errors.
func TestSignPEStreamErrors(t *testing.T) {
	s := loadTestSigner(t, "db")
	pe := gapPE()
	from := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	if _, _, err := s.SignPEStream(from(pe[:len(pe)-1]), int64(len(pe))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short stream: %v", err)
	}
	if _, _, err := s.SignPEStream(from(append(bytes.Clone(pe), 0)), int64(len(pe))); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("long stream: %v", err)
	}
	cur := bytes.Clone(pe)
	_, open, err := s.SignPEStream(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(cur)), nil }, int64(len(pe)))
	if err != nil {
		t.Fatal(err)
	}
	cur[0x100] ^= 1
	if _, err := open(); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("changed headers: %v", err)
	}
	signed, err := s.SignPE(pe)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignPE(signed); !errors.Is(err, ErrSigned) {
		t.Errorf("SignPE of a signed image: %v", err)
	}
	if _, _, err := s.SignPEStream(from(signed), int64(len(signed))); !errors.Is(err, ErrSigned) {
		t.Errorf("SignPEStream of a signed image: %v", err)
	}
	if _, err := s.SignPE([]byte("#!/bin/sh\necho not a PE image, just long enough for the DOS header check to run\n")); err == nil || !strings.Contains(err.Error(), "not a PE") {
		t.Errorf("not PE: %v", err)
	}
}

// TestChecksum: the checksum of a signed image is the PE checksum of the whole file (CheckSum
// counting as zero), computed here the plain way.
func TestChecksum(t *testing.T) {
	s := loadTestSigner(t, "db")
	signed, err := s.SignPE(gapPE())
	if err != nil {
		t.Fatal(err)
	}
	l, _ := parsePE(signed, int64(len(signed)))
	b := bytes.Clone(signed)
	clear(b[l.checksum : l.checksum+4])
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(le.Uint16(b[i:]))
		sum = sum&0xffff + sum>>16
	}
	if want, got := sum+uint32(len(b)), le.Uint32(signed[l.checksum:]); got != want {
		t.Errorf("CheckSum %#x, want %#x", got, want)
	}
}
