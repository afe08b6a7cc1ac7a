package inspect

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/secureboot"
)

// testSigner makes an RSA key and a self-signed certificate named cn.
func testSigner(t *testing.T, cn string) *secureboot.Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1700000000, 0).AddDate(10, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	s, err := secureboot.NewSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEFISignatures: an ESP (mtools) with systemd-boot signed by a test key at the removable-media
// path, the same binary unsigned, a signed copy changed after signing and a file that is no PE
// image. Every *.efi under /EFI is listed with its signatures; the digest check finds the changed
// copy; with the signing certificate the good signature is Verified, with another one it is not,
// and without certificates Verified is not set.
func TestEFISignatures(t *testing.T) {
	mkfs := testtool.Need(t, "mkfs.vfat", "dosfstools")
	mcopy, mmd := testtool.Need(t, "mcopy", "mtools"), testtool.Need(t, "mmd", "mtools")
	sdboot, err := os.ReadFile(testtool.Fixture(t, "demo/root/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "mkdemo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	sg := testSigner(t, "inspect test db")
	signed, err := sg.SignPE(sdboot)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(signed)
	changed[len(sdboot)/2] ^= 0xFF
	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	run(t, mkfs, "-C", "-F", "16", "-n", "ESP", esp, itoa(40*1024))
	for _, d := range []string{"EFI", "EFI/BOOT", "EFI/systemd", "EFI/Linux", "EFI/Linux/deeper"} {
		run(t, mmd, "-i", esp, "::/"+d)
	}
	for p, c := range map[string][]byte{
		"EFI/BOOT/BOOTX64.EFI":                signed,
		"EFI/systemd/systemd-bootx64.efi":     sdboot,
		"EFI/Linux/deeper/changed.efi":        changed,
		"EFI/Linux/not-pe.efi":                []byte("MZ but nothing else"),
		"EFI/Linux/readme.txt":                []byte("not listed"),
		"EFI/systemd/systemd-bootx64.efi.bak": signed,
	} {
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, c, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, mcopy, "-i", esp, src, "::/"+p)
	}
	fsys, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	b := espDisk(t, fsys)
	inspect := func(certs ...*x509.Certificate) []EFIBinary {
		t.Helper()
		img, err := diskfmt.OpenReaderAt(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := InspectWith(context.Background(), img, Options{Certs: certs})
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, x := range rep.EFIBinaries {
			paths = append(paths, x.Path)
		}
		if got := strings.Join(paths, " "); got != "/EFI/BOOT/BOOTX64.EFI /EFI/Linux/deeper/changed.efi /EFI/Linux/not-pe.efi /EFI/systemd/systemd-bootx64.efi" {
			t.Fatalf("EFI binaries %s", got)
		}
		return rep.EFIBinaries
	}
	subject := "CN=inspect test db"
	check := func(what string, bins []EFIBinary, verified *bool) {
		t.Helper()
		good, bad, notPE, unsigned := bins[0], bins[1], bins[2], bins[3]
		if good.Size != int64(len(signed)) || good.Error != "" || len(good.Signatures) != 1 {
			t.Fatalf("%s: %+v", what, good)
		}
		s := good.Signatures[0]
		if s.Subject != subject || s.Issuer != subject || s.Digest != "SHA-256" || !s.DigestOK || !s.SignatureOK ||
			(verified == nil) != (s.Verified == nil) || verified != nil && *verified != *s.Verified {
			t.Errorf("%s: the good signature %+v (verified %v)", what, s, s.Verified)
		}
		if verified == nil && s.Error != "" || verified != nil && *verified == (s.Error != "") {
			t.Errorf("%s: the good signature's error %q", what, s.Error)
		}
		if len(bad.Signatures) != 1 || bad.Signatures[0].DigestOK || !bad.Signatures[0].SignatureOK || bad.Signatures[0].Error == "" ||
			bad.Signatures[0].Verified != nil && *bad.Signatures[0].Verified {
			t.Errorf("%s: the changed binary %+v", what, bad)
		}
		if notPE.Error == "" || len(notPE.Signatures) != 0 {
			t.Errorf("%s: not a PE image: %+v", what, notPE)
		}
		if unsigned.Error != "" || len(unsigned.Signatures) != 0 || unsigned.Size != int64(len(sdboot)) {
			t.Errorf("%s: unsigned: %+v", what, unsigned)
		}
	}
	yes, no := true, false
	check("no certificates", inspect(), nil)
	check("the signer's certificate", inspect(sg.Cert), &yes)
	check("another certificate", inspect(testSigner(t, "someone else").Cert), &no)
	check("both", inspect(testSigner(t, "someone else").Cert, sg.Cert), &yes)
}
