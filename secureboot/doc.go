// Package secureboot signs for UEFI Secure Boot with the user's own keys: Authenticode
// signatures of PE/COFF images (SignPE in memory, SignPEStream for a Unified Kernel Image that
// is never held whole), their verification (Signatures, for `imgfab inspect`), and the keys and
// variable updates that enroll them (CreateKeys: PK, KEK and db as .key, .crt, .esl and .auth;
// ESL; Signer.AuthVariable).
//
// It is our own code because the libraries that do this are out of reach: github.com/foxboron/
// go-uefi is not served by the Go module proxy, and no PKCS #7 library is in go.mod (the general
// ones add a signing time and know nothing of Authenticode's SpcIndirectDataContent). The subset
// needed is small: PKCS #7 SignedData with one RSA signer is written with a few DER helpers
// (pkcs7.go) and read with encoding/asn1.
//
// Outputs are byte-reproducible: signatures are RSA PKCS #1 v1.5 with SHA-256 (deterministic),
// with no signing-time attribute and nothing random. What the tests show against the C tools:
//   - A signed image is byte for byte what `sbattach --attach` (sbsigntool) makes of the unsigned
//     image and our signature: same zero padding to 8 bytes (hashed, as sbsign hashes it), same
//     WIN_CERTIFICATE, Certificate Table entry and CheckSum. sbsign's own output differs only
//     inside the PKCS #7: OpenSSL's PKCS7_sign adds signingTime and SMIMECapabilities attributes,
//     so its bytes change every second; the signed content (SpcIndirectDataContent, hence the
//     image digest) is the same bytes. `sbverify --cert` accepts what SignPE and SignPEStream
//     write.
//   - NAME.auth is byte for byte efitools' `sign-efi-sig-list -t "YYYY-MM-DD HH:MM:SS" -k KEY
//     -c CRT NAME NAME.esl`, and NAME.esl `cert-to-efi-sig-list -g OWNER NAME.crt`.
//
// # Enrolling with systemd-boot
//
// systemd-boot 252 (Debian 12's 252.39, src/boot/efi/boot.c secure_boot_discover_keys and
// secure-boot.c secure_boot_enroll_at) enrolls keys from the ESP when the firmware is in Setup
// Mode (or Audit Mode). For each directory /loader/keys/NAME it adds a menu entry "Enroll Secure
// Boot keys: NAME"; with `secure-boot-enroll force` in /loader/loader.conf it also enrolls
// /loader/keys/auto (EnrollDir; the name compared case-insensitively) by itself. The default,
// `manual`, only adds the entries; `off` not even those. Enrolling prints a warning and counts
// down 15 seconds, any key aborting — except under a hypervisor (CPUID's hypervisor bit), where
// it starts at once. It reads db.auth, KEK.auth and PK.auth (these names exactly; all three must
// be there), then calls SetVariable for db (vendor EFI_IMAGE_SECURITY_DATABASE_GUID), KEK and
// PK (EFI_GLOBAL_VARIABLE) in that order with attributes NV|BS|RT|TIME_BASED_AUTHENTICATED_WRITE_ACCESS
// (0x27) and the file's bytes as data, and then resets the machine. The .auth files must
// therefore be EFI_VARIABLE_AUTHENTICATION_2 updates signed over those attributes, which is what
// CreateKeys writes; PK last takes the firmware out of Setup Mode. AutoEnrollFiles gives the
// three files by their ESP paths.
//
// # Limits
//
// RSA keys only (2048 to 4096 bits); signing is SHA-256 only. SignPE and SignPEStream refuse an
// image that is already signed (ErrSigned), has no Certificate Table entry, or has sections
// that overlap or run past its end. Signatures reads SHA-1/256/384/512 digests and RSA
// signers; it does not follow nested signatures, timestamps or dbx revocations.
//
// # Security
//
// Private keys are written 0600 and never overwritten. Signatures reads untrusted images: it
// bounds what it reads (headers to 1 MiB, the Certificate Table to 16 MiB) and reports a bad
// signature in its Err rather than failing.
package secureboot
