package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/secureboot"
)

const keysHelp = `Usage: imgfab keys create [--common-name NAME] DIR

Make your own Secure Boot keys in DIR (which must not exist or be empty): for each of PK, KEK and
db an RSA key (NAME.key, mode 0600), a self-signed certificate (NAME.crt), an EFI signature list
(NAME.esl) and the signed update that enrolls it (NAME.auth: PK signed by PK, KEK by PK, db by KEK).

Sign a build with the db key, and give it the directory to enroll from:
  imgfab build SOURCE --rootfs erofs --verity --uki --sign-key DIR/db.key --sign-cert DIR/db.crt \
    --enroll-keys DIR -o disk.qcow2
On a machine whose firmware is in setup mode (no platform key: a new VM's empty variable store),
systemd-boot enrolls the .auth files from the ESP (/loader/keys/auto) on its first start and resets;
from then on the firmware runs only binaries signed with your db key. Keep the .key files secret:
the keys are the machine's trust.

Examples:
  imgfab keys create ./sb-keys
  imgfab keys create --common-name "ACME fleet" ./sb-keys

Flags:
`

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("keys", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	cn := fl.String("common-name", "imgfab", "the certificates' common name prefix (\"NAME PK\", \"NAME KEK\", \"NAME db\")")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprint(stdout, keysHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() != 2 || fl.Arg(0) != "create" {
		return usagef("want: keys create DIR")
	}
	dir := fl.Arg(1)
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("keys create: %s is not empty: keys are never overwritten", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	opt := secureboot.KeyOptions{CommonName: *cn, Time: time.Now().UTC().Truncate(time.Second), Rand: rand.Reader}
	if err := secureboot.CreateKeys(dir, opt); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	fmt.Fprintf(stderr, "imgfab keys: PK, KEK and db keys, certificates, .esl and .auth files in %s\n", dir)
	return nil
}
