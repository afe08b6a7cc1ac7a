package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/inspect"
)

const inspectHelp = `Usage: imgfab inspect [--json] [--verify-verity] [--cert FILE]... DISK

Show what is on a disk image: format and virtual size, the partition table, each partition's type
and filesystem, the boot entries on the EFI system partition, the kernel command line, kernel and
initrd, the OS from the root filesystem's os-release (ext2/3/4 or EROFS), the root's dm-verity
hash tree (superblock, roothash=, whether the partition GUIDs are the root hash's halves) and the
Authenticode signatures of the EFI binaries under /EFI on the ESP. DISK may be raw, qcow2, VMDK,
VHD or a GCE image tarball (the format is detected from the content). Nothing outside imgfab runs
and nothing is written.

--verify-verity recomputes the hash tree from the root partition (reading all of it) and says
whether it is the one on the disk and its root hash roothash=; a mismatch is reported, not an
error. --cert (PEM or DER, repeatable; a PEM file may hold several) says whether each signature
verifies against those certificates, as firmware checks its db.

Examples:
  imgfab inspect disk.qcow2
  imgfab inspect --json disk.vmdk | jq .cmdline
  imgfab inspect --verify-verity --cert sb-keys/db.crt disk.raw

Flags:
`

func runInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("inspect", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	asJSON := fl.Bool("json", false, "print the report as JSON on stdout")
	verify := fl.Bool("verify-verity", false, "recompute the root's dm-verity hash tree and compare it with the disk's and roothash= (reads the whole root partition)")
	certFiles := fl.StringArray("cert", nil, "verify the EFI binaries' signatures against the certificate(s) in `FILE` (PEM or DER; repeatable)")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprint(stdout, inspectHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() != 1 {
		return usagef("want exactly one DISK, got %d arguments", fl.NArg())
	}
	opts := inspect.Options{VerifyVerity: *verify}
	for _, f := range *certFiles {
		cs, err := readCerts(f)
		if err != nil {
			return fmt.Errorf("--cert %s: %w", f, err)
		}
		opts.Certs = append(opts.Certs, cs...)
	}
	img, err := diskfmt.Open(ctx, fl.Arg(0))
	if err != nil {
		return err
	}
	defer img.Close()
	rep, err := inspect.InspectWith(ctx, img, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", fl.Arg(0), err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(stdout, fl.Arg(0), rep)
	for _, w := range rep.Warnings {
		fmt.Fprintf(stderr, "imgfab inspect: warning: %s\n", w)
	}
	return nil
}

func printReport(w io.Writer, name string, r inspect.Report) {
	fmt.Fprintf(w, "%s: %s, %s virtual (%d bytes)\n", name, r.Format, human(r.VirtualSize), r.VirtualSize)
	fmt.Fprintf(w, "partition table: %s", r.PartitionTable)
	if r.DiskGUID != "" {
		fmt.Fprintf(w, ", disk GUID %s", r.DiskGUID)
	}
	fmt.Fprintln(w)
	// Columns as wide as the longest name and type ("root-x86-64-verity"), at least 12 and 14.
	nameW, typeW := 12, 14
	typeOf := func(p inspect.Partition) string {
		if p.Type == "" {
			return p.TypeGUID
		}
		return p.Type
	}
	for _, p := range r.Partitions {
		nameW, typeW = max(nameW, len(orDash(p.Name))), max(typeW, len(typeOf(p)))
	}
	for _, p := range r.Partitions {
		fmt.Fprintf(w, "  %d  %-*s %-*s %9s at %-9s", p.Number, nameW, orDash(p.Name), typeW, typeOf(p), human(p.Size), human(p.Offset))
		if fs := p.Filesystem; fs != nil {
			fmt.Fprintf(w, "  %s", fs.Type)
			if fs.Label != "" {
				fmt.Fprintf(w, " label=%q", fs.Label)
			}
			if fs.UUID != "" {
				fmt.Fprintf(w, " uuid=%s", fs.UUID)
			}
		}
		if p.GUID != "" {
			fmt.Fprintf(w, "  partuuid=%s", strings.ToLower(p.GUID))
		}
		fmt.Fprintln(w)
	}
	if r.BootMode != "" {
		fmt.Fprintf(w, "boot mode: %s", r.BootMode)
		if r.Architecture != "" {
			fmt.Fprintf(w, " (%s)", r.Architecture)
		}
		if r.UEFILoader != "" {
			fmt.Fprintf(w, "; uefi %s", r.UEFILoader)
		}
		if bb := r.BIOS; bb != nil {
			fmt.Fprintf(w, "; bios %s", bb.Loader)
			if bb.CoreSectors > 0 {
				fmt.Fprintf(w, " (core.img at LBA %d, %d sectors, %s)", bb.CoreLBA, bb.CoreSectors, orDash(bb.CoreIn))
			}
		}
		fmt.Fprintln(w)
	}
	if b := r.Boot; b != nil {
		fmt.Fprintf(w, "boot: %s on partition %d", orDash(r.Loader), b.ESP)
		if b.Fallback {
			fmt.Fprintf(w, ", %s present", b.FallbackPath)
		}
		fmt.Fprintln(w)
		for _, e := range b.Entries {
			mark := " "
			if e.Default {
				mark = "*"
			}
			fmt.Fprintf(w, "  %s %s: %s (version %s)\n      linux %s\n", mark, e.ID, orDash(e.Title), orDash(e.Version), orDash(e.Linux))
			for _, i := range e.Initrd {
				fmt.Fprintf(w, "      initrd %s\n", i)
			}
			fmt.Fprintf(w, "      options %s\n", e.Options)
		}
	}
	if r.Cmdline != "" {
		fmt.Fprintf(w, "cmdline: %s\n", r.Cmdline)
	}
	if r.Kernel != "" {
		fmt.Fprintf(w, "kernel: %s (%s)\n", r.Kernel, r.KernelVersion)
	}
	if r.Initrd != "" {
		fmt.Fprintf(w, "initrd: %s\n", r.Initrd)
	}
	if r.Root != nil {
		fmt.Fprintf(w, "root: partition %d (by %s)\n", r.Root.Partition, r.Root.By)
	}
	if v := r.Verity; v != nil {
		printVerity(w, v)
	}
	if o := r.OS; o != nil {
		name := o.PrettyName
		if name == "" {
			name = strings.TrimSpace(o.Name + " " + o.VersionID)
		}
		fmt.Fprintf(w, "os: %s (id %s, version %s)\n", orDash(name), orDash(o.ID), orDash(o.VersionID))
	}
	if len(r.EFIBinaries) > 0 {
		fmt.Fprintln(w, "efi binaries:")
		for _, b := range r.EFIBinaries {
			printEFIBinary(w, b)
		}
	}
}

func printVerity(w io.Writer, v *inspect.Verity) {
	fmt.Fprintf(w, "verity: hash partition %d", v.Partition)
	if v.DataPartition != 0 {
		fmt.Fprintf(w, " for partition %d", v.DataPartition)
	}
	if v.Superblock && v.Algorithm != "" {
		fmt.Fprintf(w, ": %s (hash type %d), %d data blocks of %d bytes, %d-byte hash blocks\n", v.Algorithm, v.HashType, v.DataBlocks, v.DataBlockSize, v.HashBlockSize)
		fmt.Fprintf(w, "  salt %s\n  uuid %s\n", orDash(v.Salt), orDash(v.UUID))
	} else if !v.Superblock {
		fmt.Fprintf(w, ": no verity superblock\n")
	} else {
		fmt.Fprintln(w, ": unreadable superblock")
	}
	if v.RootHash != "" {
		fmt.Fprintf(w, "  roothash %s (kernel command line)\n", v.RootHash)
	} else {
		fmt.Fprintln(w, "  no roothash= on the kernel command line")
	}
	if v.GUIDsMatch != nil {
		if *v.GUIDsMatch {
			fmt.Fprintln(w, "  partition GUIDs: the root hash's halves (found by roothash= alone)")
		} else {
			fmt.Fprintln(w, "  partition GUIDs: NOT the root hash's halves (see the warnings)")
		}
	}
	c := v.Verify
	switch {
	case c == nil:
	case c.Error != "":
		fmt.Fprintf(w, "  verify: not done: %s\n", c.Error)
	default:
		verdict := "MISMATCH"
		if c.OK {
			verdict = "ok"
		}
		fmt.Fprintf(w, "  verify: %s: computed root hash %s", verdict, c.RootHash)
		switch {
		case v.RootHash == "":
		case c.RootHashMatch:
			fmt.Fprint(w, " = roothash=")
		default:
			fmt.Fprint(w, " != roothash=")
		}
		if c.TreeMatch {
			fmt.Fprintf(w, "; all %d hash blocks equal the disk's\n", c.HashBlocks)
		} else {
			fmt.Fprintf(w, "; %d of %d hash blocks differ from the disk's (the first: block %d)\n", c.BadHashBlocks, c.HashBlocks, c.FirstBadHashBlock)
		}
	}
}

func printEFIBinary(w io.Writer, b inspect.EFIBinary) {
	fmt.Fprintf(w, "  %s (%s)", b.Path, human(b.Size))
	switch {
	case b.Error != "":
		fmt.Fprintf(w, ": signatures not read: %s\n", b.Error)
		return
	case len(b.Signatures) == 0:
		fmt.Fprintln(w, ": unsigned")
		return
	}
	fmt.Fprintln(w)
	for _, s := range b.Signatures {
		fmt.Fprintf(w, "      signed by %q", orDash(s.Subject))
		if s.Issuer != "" && s.Issuer != s.Subject {
			fmt.Fprintf(w, " (issuer %q)", s.Issuer)
		}
		var facts []string
		if s.DigestOK {
			facts = append(facts, orDash(s.Digest)+" digest ok")
		} else {
			facts = append(facts, orDash(s.Digest)+" digest MISMATCH")
		}
		if !s.SignatureOK {
			facts = append(facts, "signature BAD")
		}
		if s.Verified != nil {
			if *s.Verified {
				facts = append(facts, "verified by --cert")
			} else {
				facts = append(facts, "NOT verified by --cert")
			}
		}
		fmt.Fprintf(w, ": %s", strings.Join(facts, ", "))
		if s.Error != "" {
			fmt.Fprintf(w, " (%s)", s.Error)
		}
		fmt.Fprintln(w)
	}
}

// readCerts reads the certificates of a PEM file (every CERTIFICATE block) or one DER certificate.
func readCerts(name string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("no PEM CERTIFICATE block, and not a DER certificate: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// human prints a byte count in the largest binary unit that keeps one decimal honest.
func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	u := 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d %s", int64(f), units[u])
	}
	return fmt.Sprintf("%.1f %s", f, units[u])
}
