package secureboot

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// TestCreateKeysAgainstEfitools: every NAME.auth is byte for byte what efitools'
// sign-efi-sig-list makes of NAME.esl with the same signer and timestamp (PK signs PK and KEK,
// KEK signs db); every NAME.esl is cert-to-efi-sig-list's of NAME.crt with the same owner, and
// sig-list-to-certs gets the certificate back; keys are 0600.
func TestCreateKeysAgainstEfitools(t *testing.T) {
	sign := testtool.Need(t, "sign-efi-sig-list", "efitools")
	toESL := testtool.Need(t, "cert-to-efi-sig-list", "efitools")
	toCerts := testtool.Need(t, "sig-list-to-certs", "efitools")
	dir := keyDir(t)
	pk := loadTestSigner(t, "PK")
	owner := derivedOwner(pk.Cert)
	signer := map[string]string{"PK": "PK", "KEK": "PK", "db": "KEK"}
	for _, name := range []string{"PK", "KEK", "db"} {
		t.Run(name, func(t *testing.T) {
			p := func(n, ext string) string { return filepath.Join(dir, n+ext) }
			st, err := os.Stat(p(name, ".key"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s.key mode %v, want 0600", name, st.Mode().Perm())
			}
			ours, err := os.ReadFile(p(name, ".auth"))
			if err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			theirs := filepath.Join(tmp, name+".auth")
			s := signer[name]
			cmd := exec.Command(sign, "-t", testTime.Format(time.DateTime), "-k", p(s, ".key"), "-c", p(s, ".crt"), name, p(name, ".esl"), theirs)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sign-efi-sig-list: %v\n%s", err, out)
			}
			if b, _ := os.ReadFile(theirs); !bytes.Equal(b, ours) {
				t.Errorf("%s.auth differs from sign-efi-sig-list's (%d vs %d bytes, first difference at %d)", name, len(ours), len(b), firstDiff(ours, b))
			}

			esl := filepath.Join(tmp, name+".esl")
			if out, err := exec.Command(toESL, "-g", owner.String(), p(name, ".crt"), esl).CombinedOutput(); err != nil {
				t.Fatalf("cert-to-efi-sig-list: %v\n%s", err, out)
			}
			want, _ := os.ReadFile(esl)
			if got, _ := os.ReadFile(p(name, ".esl")); !bytes.Equal(got, want) {
				t.Errorf("%s.esl differs from cert-to-efi-sig-list's", name)
			}
			cmd = exec.Command(toCerts, p(name, ".esl"), filepath.Join(tmp, "cert"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sig-list-to-certs: %v\n%s", err, out)
			}
			der, err := os.ReadFile(filepath.Join(tmp, "cert-0.der"))
			if err != nil {
				t.Fatal(err)
			}
			crt, _ := os.ReadFile(p(name, ".crt"))
			if blk, _ := pem.Decode(crt); blk == nil || !bytes.Equal(blk.Bytes, der) {
				t.Errorf("sig-list-to-certs gets another certificate out of %s.esl", name)
			}
		})
	}
}

// TestCreateKeysReproducible: with the same randomness, time and options, CreateKeys writes the
// same bytes (nothing else, such as the clock, goes in); it refuses to overwrite a key set.
func TestCreateKeysReproducible(t *testing.T) {
	var sets [2]map[string][]byte
	for i := range sets {
		cryptotest.SetGlobalRandom(t, 42)
		dir := filepath.Join(t.TempDir(), "keys")
		if err := CreateKeys(dir, KeyOptions{Time: testTime}); err != nil {
			t.Fatal(err)
		}
		sets[i] = map[string][]byte{}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			sets[i][e.Name()], _ = os.ReadFile(filepath.Join(dir, e.Name()))
		}
		if len(ents) != 12 {
			t.Errorf("%d files, want 12", len(ents))
		}
		if i == 1 {
			if err := CreateKeys(dir, KeyOptions{Time: testTime}); err == nil || !strings.Contains(err.Error(), "not overwriting") {
				t.Errorf("CreateKeys over a key set: %v", err)
			}
		}
	}
	for name, b := range sets[0] {
		if !bytes.Equal(b, sets[1][name]) {
			t.Errorf("%s differs between two runs", name)
		}
	}
	crt, _ := pem.Decode(sets[0]["db.crt"])
	c, err := x509.ParseCertificate(crt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "imgfab Signature Database Key" || !c.NotBefore.Equal(testTime) {
		t.Errorf("db certificate: CN %q, NotBefore %v", c.Subject.CommonName, c.NotBefore)
	}
}

// TestLoadSignerErrors: a missing file, a key that does not match the certificate, a key that is
// not RSA or is encrypted are errors naming the file; PKCS #1 and PKCS #8 keys load.
func TestLoadSignerErrors(t *testing.T) {
	dir := keyDir(t)
	tmp := t.TempDir()
	db := loadTestSigner(t, "db")
	dbKey, dbCrt := filepath.Join(dir, "db.key"), filepath.Join(dir, "db.crt")
	write := func(name string, blk *pem.Block) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkcs1 := write("pkcs1.key", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(db.Key)})
	if s, err := LoadSigner(pkcs1, dbCrt); err != nil || !s.Key.Equal(db.Key) {
		t.Errorf("PKCS #1 key: %v", err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec8, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecSEC1, _ := x509.MarshalECPrivateKey(ec)
	for _, c := range []struct {
		name, key, crt string
		want           []string
	}{
		{"missing key", filepath.Join(tmp, "none.key"), dbCrt, []string{"none.key", "no such file"}},
		{"missing cert", dbKey, filepath.Join(tmp, "none.crt"), []string{"none.crt", "no such file"}},
		{"mismatch", dbKey, filepath.Join(dir, "KEK.crt"), []string{"db.key", "KEK.crt", "does not match"}},
		{"ecdsa pkcs8", write("ec8.key", &pem.Block{Type: "PRIVATE KEY", Bytes: ec8}), dbCrt, []string{"ec8.key", "ECDSA", "not RSA"}},
		{"ec sec1", write("ec.key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: ecSEC1}), dbCrt, []string{"ec.key", "not an RSA key"}},
		{"encrypted", write("enc.key", &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}), dbCrt, []string{"enc.key", "encrypted"}},
		{"cert as key", dbCrt, dbCrt, []string{"db.crt", "no PEM private key"}},
		{"key as cert", dbKey, dbKey, []string{"db.key", "no PEM CERTIFICATE"}},
	} {
		_, err := LoadSigner(c.key, c.crt)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want it to say %q", c.name, err, w)
			}
		}
	}
}

func TestGUID(t *testing.T) {
	g, err := ParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	if err != nil {
		t.Fatal(err)
	}
	// EFI_GLOBAL_VARIABLE as the UEFI specification declares it: {0x8BE4DF61, 0x93CA, 0x11d2, {0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C}}.
	want := GUID{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	if g != want || g != GlobalVariable || g.String() != "8be4df61-93ca-11d2-aa0d-00e098032b8c" {
		t.Errorf("ParseGUID: % x, String %s", g, g)
	}
	for _, bad := range []string{"", "8be4df6193ca11d2aa0d00e098032b8c", "8be4df61-93ca-11d2-aa0d-00e098032b8", "zbe4df61-93ca-11d2-aa0d-00e098032b8c"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) accepted", bad)
		}
	}
	o := derivedOwner(loadTestSigner(t, "PK").Cert)
	if s := o.String(); s[14] != '8' || !strings.ContainsAny(s[19:20], "89ab") {
		t.Errorf("derived owner %s is not a version 8 UUID", s)
	}
}

func TestAutoEnrollFiles(t *testing.T) {
	files, err := AutoEnrollFiles(keyDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"db", "KEK", "PK"} {
		if len(files["/loader/keys/auto/"+n+".auth"]) == 0 {
			t.Errorf("no /loader/keys/auto/%s.auth in %v", n, files)
		}
	}
	if _, err := AutoEnrollFiles(t.TempDir()); err == nil || !strings.Contains(err.Error(), "db.auth") {
		t.Errorf("empty directory: %v", err)
	}
}
