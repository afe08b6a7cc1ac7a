package secureboot

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Signer is a key and its certificate: what signs images (a db key) and variable updates (PK
// for PK and KEK, KEK for db).
type Signer struct {
	Key  *rsa.PrivateKey
	Cert *x509.Certificate
}

// NewSigner pairs key with cert, checking that cert holds key's public half.
func NewSigner(key *rsa.PrivateKey, cert *x509.Certificate) (*Signer, error) {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("certificate %q holds a %s key, not RSA", cert.Subject, cert.PublicKeyAlgorithm)
	}
	if !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("the key does not match certificate %q", cert.Subject)
	}
	return &Signer{Key: key, Cert: cert}, nil
}

// LoadSigner reads a key and its certificate from PEM files, as sbsign takes them: an
// unencrypted RSA key (PKCS #1 "RSA PRIVATE KEY" or PKCS #8 "PRIVATE KEY") and an X.509
// "CERTIFICATE". Errors name the file and what is wrong with it.
func LoadSigner(keyPath, certPath string) (*Signer, error) {
	key, err := loadKey(keyPath)
	if err != nil {
		return nil, err
	}
	cert, err := loadCert(certPath)
	if err != nil {
		return nil, err
	}
	s, err := NewSigner(key, cert)
	if err != nil {
		return nil, fmt.Errorf("key %s and certificate %s: %w", keyPath, certPath, err)
	}
	return s, nil
}

func loadKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("signing key %s: no PEM private key in it", path)
		}
		switch {
		case blk.Type == "RSA PRIVATE KEY" && blk.Headers["Proc-Type"] != "", blk.Type == "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("signing key %s is encrypted: give an unencrypted key (openssl pkey -in KEY -out PLAIN)", path)
		case blk.Type == "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("signing key %s: %w", path, err)
			}
			return k, nil
		case blk.Type == "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("signing key %s: %w", path, err)
			}
			switch k := k.(type) {
			case *rsa.PrivateKey:
				return k, nil
			case *ecdsa.PrivateKey:
				return nil, fmt.Errorf("signing key %s is an ECDSA key, not RSA (UEFI Secure Boot signing here takes RSA keys)", path)
			case ed25519.PrivateKey:
				return nil, fmt.Errorf("signing key %s is an Ed25519 key, not RSA (UEFI Secure Boot signing here takes RSA keys)", path)
			default:
				return nil, fmt.Errorf("signing key %s is a %T, not an RSA key", path, k)
			}
		case strings.HasSuffix(blk.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("signing key %s is a PEM %q, not an RSA key", path, blk.Type)
		}
	}
}

func loadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing certificate: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("signing certificate %s: no PEM CERTIFICATE in it", path)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing certificate %s: %w", path, err)
		}
		return c, nil
	}
}

// KeyOptions are CreateKeys's parameters; the zero value is usable.
type KeyOptions struct {
	// CommonName starts each certificate's CN: "imgfab" (the default) gives "imgfab Platform
	// Key", "imgfab Key Exchange Key" and "imgfab Signature Database Key".
	CommonName string
	// Owner is the SignatureOwner of the signature list entries; zero means one derived from
	// the PK's public key (a version 8 UUID of its SHA-256), so it is the same whenever the
	// lists are rebuilt from the keys.
	Owner GUID
	// Time is the .auth files' timestamp and the certificates' NotBefore (they are valid 20
	// years); zero means now. The firmware refuses a later update of a variable with an older
	// timestamp.
	Time time.Time
	// Bits is the RSA key size: 2048 (the default, which every firmware takes), 3072 or 4096.
	Bits int
	// Rand is where the certificates' serial numbers come from (nil: crypto/rand). Go 1.26
	// generates RSA keys from its own secure source whatever reader it is given, so the keys
	// differ between runs; tests pin them with testing/cryptotest.SetGlobalRandom.
	Rand io.Reader
}

// keyNames are the Secure Boot keys CreateKeys makes, in the order they are made: each signs
// the authenticated variable of the next (PK signs its own).
var keyNames = []struct{ name, long string }{
	{"PK", "Platform Key"},
	{"KEK", "Key Exchange Key"},
	{"db", "Signature Database Key"},
}

// CreateKeys makes a Platform Key, a Key Exchange Key and a signature database key in dir
// (created 0700 if missing), each as NAME.key (the RSA private key, PKCS #8 PEM, mode 0600),
// NAME.crt (its self-signed X.509 certificate, PEM), NAME.esl (a signature list of the
// certificate, see ESL) and NAME.auth (the authenticated variable update that enrolls the list:
// PK.auth signed by PK, KEK.auth by PK, db.auth by KEK; see AuthVariable). It never overwrites:
// if any of the twelve files exists, nothing is written. Sign images with LoadSigner(dir/db.key,
// dir/db.crt); put the .auth files on the ESP with AutoEnrollFiles.
func CreateKeys(dir string, opt KeyOptions) error {
	if opt.CommonName == "" {
		opt.CommonName = "imgfab"
	}
	if opt.Time.IsZero() {
		opt.Time = time.Now()
	}
	opt.Time = opt.Time.UTC().Truncate(time.Second)
	if y := opt.Time.Year(); y < 1900 || y > 9999-20 {
		return fmt.Errorf("secure boot keys: time %s: EFI_TIME takes years 1900 to 9999", opt.Time)
	}
	switch opt.Bits {
	case 0:
		opt.Bits = 2048
	case 2048, 3072, 4096:
	default:
		return fmt.Errorf("secure boot keys: RSA %d: want 2048, 3072 or 4096 bits", opt.Bits)
	}
	if opt.Rand == nil {
		opt.Rand = rand.Reader
	}
	var paths []string
	for _, k := range keyNames {
		for _, ext := range []string{".key", ".crt", ".esl", ".auth"} {
			p := filepath.Join(dir, k.name+ext)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("secure boot keys: %s exists: not overwriting keys", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("secure boot keys: %w", err)
			}
			paths = append(paths, p)
		}
	}

	signers := make([]*Signer, len(keyNames))
	for i, k := range keyNames {
		s, err := newKey(opt, opt.CommonName+" "+k.long)
		if err != nil {
			return fmt.Errorf("secure boot keys: %s: %w", k.name, err)
		}
		signers[i] = s
	}
	if opt.Owner == (GUID{}) {
		opt.Owner = derivedOwner(signers[0].Cert)
	}
	files := map[string][]byte{}
	for i, k := range keyNames {
		s := signers[i]
		keyDER, err := x509.MarshalPKCS8PrivateKey(s.Key)
		if err != nil {
			return fmt.Errorf("secure boot keys: %s: %w", k.name, err)
		}
		esl := ESL(s.Cert, opt.Owner)
		auth, err := signers[max(i-1, 0)].AuthVariable(k.name, esl, opt.Time)
		if err != nil {
			return fmt.Errorf("secure boot keys: %w", err)
		}
		files[k.name+".key"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		files[k.name+".crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Cert.Raw})
		files[k.name+".esl"] = esl
		files[k.name+".auth"] = auth
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secure boot keys: %w", err)
	}
	var written []string
	for _, p := range paths {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".key") {
			mode = 0o600
		}
		if err := writeNew(p, files[filepath.Base(p)], mode); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return fmt.Errorf("secure boot keys: %w", err)
		}
		written = append(written, p)
	}
	return nil
}

// writeNew writes b to a new file at path, failing if it exists.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// newKey makes an RSA key and a self-signed certificate for it named cn, as `openssl req -x509`
// does: a CA certificate (basic constraints CA:TRUE) for signatures and certificate signing,
// SHA-256 with RSA. UEFI firmware checks neither dates nor key usage; sbverify and openssl do.
func newKey(opt KeyOptions, cn string) (*Signer, error) {
	key, err := rsa.GenerateKey(opt.Rand, opt.Bits)
	if err != nil {
		return nil, err
	}
	var sn [16]byte
	if _, err := io.ReadFull(opt.Rand, sn[:]); err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	sn[0] = sn[0]&0x7f | 0x40 // positive, 16 bytes long (RFC 5280 §4.1.2.2: at most 20)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sn[:]),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             opt.Time,
		NotAfter:              opt.Time.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(opt.Rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Signer{Key: key, Cert: cert}, nil
}

// derivedOwner is a version 8 UUID (RFC 9562 §5.8) of the SHA-256 of the PK's public key.
func derivedOwner(pk *x509.Certificate) GUID {
	h := sha256.Sum256(append([]byte("imgfab secure boot owner\x00"), pk.RawSubjectPublicKeyInfo...))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x80                                   // version 8
	u[8] = u[8]&0x3f | 0x80                                   // variant 10
	g := GUID{u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6]} // text order to EFI_GUID order
	copy(g[8:], u[8:])
	return g
}
