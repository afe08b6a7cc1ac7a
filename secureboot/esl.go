package secureboot

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf16"
)

// GUID is an EFI_GUID in its in-memory (and on-disk) byte order: the first three fields
// little-endian, the last eight bytes as written (UEFI specification, Appendix A "GUID and
// Time Formats").
type GUID [16]byte

// ParseGUID parses the text form "8be4df61-93ca-11d2-aa0d-00e098032b8c".
func ParseGUID(s string) (GUID, error) {
	var g GUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("GUID %q: want the form 8be4df61-93ca-11d2-aa0d-00e098032b8c", s)
	}
	g = GUID{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]}
	copy(g[8:], b[8:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

func (g GUID) String() string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:])
}

// GUIDs of the UEFI specification.
var (
	// GlobalVariable is EFI_GLOBAL_VARIABLE, the vendor GUID of PK and KEK (§3.3 "Globally
	// Defined Variables").
	GlobalVariable = mustGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// ImageSecurityDatabase is EFI_IMAGE_SECURITY_DATABASE_GUID, the vendor GUID of db and dbx
	// (§32.6.1 "UEFI Image Variable GUID & Variable Name").
	ImageSecurityDatabase = mustGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// certX509 is EFI_CERT_X509_GUID, the signature type of a DER X.509 certificate (§32.4.1
	// "Signature Database").
	certX509 = mustGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// certTypePKCS7 is EFI_CERT_TYPE_PKCS7_GUID, the CertType of an authenticated variable's
	// WIN_CERTIFICATE_UEFI_GUID (§8.2.2 "Using the EFI_VARIABLE_AUTHENTICATION_2 descriptor").
	certTypePKCS7 = mustGUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
)

// Variable attributes (UEFI specification §8.2 "Variable Services", GetVariable()).
const (
	AttrNonVolatile        = 0x01 // EFI_VARIABLE_NON_VOLATILE
	AttrBootServiceAccess  = 0x02 // EFI_VARIABLE_BOOTSERVICE_ACCESS
	AttrRuntimeAccess      = 0x04 // EFI_VARIABLE_RUNTIME_ACCESS
	AttrTimeBasedAuthWrite = 0x20 // EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS
	// SecureBootVariableAttrs (0x27) are the attributes PK, KEK and db are written with: what
	// AuthVariable signs over, efitools' default and what systemd-boot passes to SetVariable.
	SecureBootVariableAttrs = AttrNonVolatile | AttrBootServiceAccess | AttrRuntimeAccess | AttrTimeBasedAuthWrite
)

const (
	winCertTypeEFIGUID       = 0x0ef1                 // WIN_CERT_TYPE_EFI_GUID (§32.2.4 "WIN_CERTIFICATE_UEFI_GUID")
	winCertUEFIGUIDHeaderLen = winCertHeaderSize + 16 // WIN_CERTIFICATE, then CertType
	eslHeaderSize            = 16 + 4 + 4 + 4         // §32.4.1 EFI_SIGNATURE_LIST: SignatureType, ListSize, HeaderSize, SignatureSize
)

// ESL is an EFI_SIGNATURE_LIST (UEFI specification §32.4.1 "Signature Database") of one
// EFI_SIGNATURE_DATA: the certificate's DER as an EFI_CERT_X509_GUID entry owned by owner, with
// no signature header; the bytes of efitools' `cert-to-efi-sig-list -g OWNER CRT`.
func ESL(cert *x509.Certificate, owner GUID) []byte {
	sigSize := 16 + len(cert.Raw)
	b := make([]byte, eslHeaderSize, eslHeaderSize+sigSize)
	copy(b[0:], certX509[:])
	le.PutUint32(b[16:], uint32(eslHeaderSize+sigSize)) // SignatureListSize
	le.PutUint32(b[20:], 0)                             // SignatureHeaderSize
	le.PutUint32(b[24:], uint32(sigSize))               // SignatureSize
	b = append(b, owner[:]...)                          // EFI_SIGNATURE_DATA.SignatureOwner
	return append(b, cert.Raw...)
}

// efiTime is the EFI_TIME of t in UTC (UEFI specification §8.3 GetTime()): Year u16, Month,
// Day, Hour, Minute, Second, Pad1, Nanosecond u32, TimeZone i16, Daylight, Pad2. For a
// time-based authenticated variable Pad1, Nanosecond, TimeZone, Daylight and Pad2 are zero
// (§8.2.2), and so is everything below the second.
func efiTime(t time.Time) [16]byte {
	t = t.UTC()
	var b [16]byte
	le.PutUint16(b[0:], uint16(t.Year()))
	b[2], b[3], b[4], b[5], b[6] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	return b
}

// VendorGUID is the vendor GUID of the Secure Boot variable name: EFI_GLOBAL_VARIABLE for PK and
// KEK, EFI_IMAGE_SECURITY_DATABASE_GUID for db and dbx (as efitools' sign-efi-sig-list picks
// it).
func VendorGUID(name string) (GUID, error) {
	switch name {
	case "PK", "KEK":
		return GlobalVariable, nil
	case "db", "dbx":
		return ImageSecurityDatabase, nil
	}
	return GUID{}, fmt.Errorf("secure boot variable %q: want PK, KEK, db or dbx", name)
}

// AuthVariable returns the authenticated variable update that sets the Secure Boot variable
// name (PK, KEK, db or dbx) to esl at time t, signed by s: an EFI_VARIABLE_AUTHENTICATION_2
// (UEFI specification §8.2.2) — EFI_TIME t, then a WIN_CERTIFICATE_UEFI_GUID of CertType
// EFI_CERT_TYPE_PKCS7_GUID holding a PKCS #7 SignedData over VariableName (UTF-16LE, no NUL)
// || VendorGuid || Attributes (SecureBootVariableAttrs, u32 LE) || TimeStamp || esl — followed
// by esl. This is what SetVariable() takes as Data, with SecureBootVariableAttrs, and the bytes
// of efitools' `sign-efi-sig-list -t "YYYY-MM-DD HH:MM:SS" -k KEY -c CRT NAME ESL OUT`.
func (s *Signer) AuthVariable(name string, esl []byte, t time.Time) ([]byte, error) {
	vendor, err := VendorGUID(name)
	if err != nil {
		return nil, err
	}
	ts := efiTime(t)
	var payload []byte
	for _, u := range utf16.Encode([]rune(name)) {
		payload = le.AppendUint16(payload, u)
	}
	payload = append(payload, vendor[:]...)
	payload = le.AppendUint32(payload, SecureBootVariableAttrs)
	payload = append(payload, ts[:]...)
	payload = append(payload, esl...)
	p7, err := s.signDetached(payload)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", name, err)
	}
	b := append([]byte(nil), ts[:]...)
	b = le.AppendUint32(b, uint32(winCertUEFIGUIDHeaderLen+len(p7))) // Hdr.dwLength
	b = le.AppendUint16(b, winCertRevision2)                         // Hdr.wRevision
	b = le.AppendUint16(b, winCertTypeEFIGUID)                       // Hdr.wCertificateType
	b = append(b, certTypePKCS7[:]...)                               // CertType
	b = append(b, p7...)                                             // CertData
	return append(b, esl...), nil
}

// EnrollDir is where on the ESP systemd-boot looks for the keys it enrolls by itself (with
// `secure-boot-enroll force` in loader.conf); see the package documentation.
const EnrollDir = "/loader/keys/auto"

// AutoEnrollFiles reads db.auth, KEK.auth and PK.auth from dir (as CreateKeys writes them) and
// returns them by their path on the ESP: EnrollDir + "/db.auth" and so on.
func AutoEnrollFiles(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, name := range []string{"db", "KEK", "PK"} {
		p := filepath.Join(dir, name+".auth")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("secure boot keys: %w", err)
		}
		if len(b) < 16+winCertUEFIGUIDHeaderLen {
			return nil, fmt.Errorf("secure boot keys: %s: %d bytes, too short for an authenticated variable", p, len(b))
		}
		files[EnrollDir+"/"+name+".auth"] = b
	}
	return files, nil
}
