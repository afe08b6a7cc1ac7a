package assemble

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/secureboot"
)

// SignOptions sign the EFI binaries of the ESP with the user's own Secure Boot key.
type SignOptions struct {
	Key, Cert string // PEM files: an RSA private key and its X.509 certificate (the db key)
	// Enroll, when set, is a directory with PK.auth, KEK.auth and db.auth (`imgfab keys create`):
	// they go to the ESP's /loader/keys/auto/, and loader.conf says `secure-boot-enroll force`, so
	// that systemd-boot enrolls them when the firmware is in setup mode (a new VM's empty store).
	Enroll string
}

// SignedResult is one signed EFI binary, for --json.
type SignedResult struct {
	Path    string `json:"path"`    // on the ESP
	Subject string `json:"subject"` // the signing certificate's subject
}

// signer is a loaded SignOptions.
type signer struct {
	s      *secureboot.Signer
	enroll map[string][]byte // "PK.auth" → its bytes; nil without Enroll
}

// enrollFiles are the signed variable updates systemd-boot's secure-boot-enroll reads.
var enrollFiles = []string{"PK.auth", "KEK.auth", "db.auth"}

// loadSigner checks the signing options against the plan and loads the key.
func loadSigner(p Plan) (*signer, error) {
	o := p.Sign
	if o == nil {
		return nil, nil
	}
	switch {
	case o.Key == "" || o.Cert == "":
		return nil, errors.New("--sign-key and --sign-cert go together")
	case p.Boot.Chain != "":
		return nil, errors.New("--sign-key signs imgfab's own boot chain (systemd-boot and the UKI); it does not go with --boot-chain shim")
	case !p.Boot.UKI:
		return nil, errors.New("--sign-key needs --uki: the kernel command line (with the root hash) and the initrd must be inside the signed binary, or anyone could change them")
	case p.Boot.Mode == "bios":
		return nil, errors.New("--sign-key is for UEFI Secure Boot; --boot bios has no EFI binaries")
	}
	s, err := secureboot.LoadSigner(o.Key, o.Cert)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	sg := &signer{s: s}
	if o.Enroll != "" {
		sg.enroll = map[string][]byte{}
		for _, n := range enrollFiles {
			b, err := os.ReadFile(filepath.Join(o.Enroll, n))
			if err != nil {
				return nil, fmt.Errorf("--enroll-keys: %w (make the keys with `imgfab keys create DIR`)", err)
			}
			if len(b) > 64<<10 {
				return nil, fmt.Errorf("--enroll-keys: %s is %d bytes, more than a signed key list holds (64 KiB)", n, len(b))
			}
			sg.enroll[n] = b
		}
	}
	return sg, nil
}

// sign signs every EFI binary among files and adds the keys to enroll.
func (sg *signer) sign(setup bootloader.Setup, files []bootloader.FileSpec) ([]bootloader.FileSpec, []SignedResult, error) {
	out := make([]bootloader.FileSpec, 0, len(files)+len(sg.enroll))
	var signed []SignedResult
	hasLoaderConf := false
	for _, f := range files {
		switch {
		case strings.HasSuffix(strings.ToLower(f.Path), ".efi"):
			size, open, err := sg.s.SignPEStream(f.Open, f.Size)
			if err != nil {
				return nil, nil, fmt.Errorf("signing %s: %w", f.Path, err)
			}
			f.Size, f.Open = size, open
			signed = append(signed, SignedResult{Path: f.Path, Subject: sg.s.Cert.Subject.String()})
		case f.Path == "/loader/loader.conf" && sg.enroll != nil:
			hasLoaderConf = true
			conf, err := readSpec(f)
			if err != nil {
				return nil, nil, err
			}
			conf = append(conf, "secure-boot-enroll force\n"...)
			f = bootloader.FileSpec{Path: f.Path, Size: int64(len(conf)), Open: func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(conf)), nil
			}}
		}
		out = append(out, f)
	}
	if sg.enroll != nil {
		if !hasLoaderConf {
			return nil, nil, fmt.Errorf("--enroll-keys: the keys are enrolled by systemd-boot, and the image has none (%s boots without it); install systemd-boot-efi, or enroll the keys in the firmware yourself", setup.Loader)
		}
		for _, n := range enrollFiles {
			b := sg.enroll[n]
			out = append(out, bootloader.FileSpec{Path: "/loader/keys/auto/" + n, Size: int64(len(b)), Open: func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(b)), nil
			}})
		}
	}
	return out, signed, nil
}

// readSpec reads a small ESP file.
func readSpec(f bootloader.FileSpec) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 1<<20))
}
