package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/imgfab/imgfab/diskfmt"
)

const convertHelp = `Usage: imgfab convert [flags] IN OUT

Convert a disk image between formats, with no outside program. IN may be raw, qcow2 (version 2 or 3,
compressed clusters included), VMDK (monolithicSparse or streamOptimized), VHD (fixed or dynamic)
or a GCE image tarball (disk.raw in a tar.gz, sparse members included); its format is detected
from its content. OUT's format comes from its extension or --format.
OUT is written atomically: it appears only once complete. OUT "-" writes to stdout (give --format;
formats written in one sequential pass only).

Examples:
  imgfab convert disk.raw disk.vmdk                  # streamOptimized VMDK (VMware, AWS)
  imgfab convert disk.qcow2 disk.vhd                 # fixed VHD (Azure)
  imgfab convert disk.vmdk disk.qcow2 --compress zstd
  imgfab convert disk.qcow2 - --format raw | ssh host dd of=/dev/sdb bs=4M

Exit status: 0 success, 1 failure (unreadable or corrupt input: the message names the field and
its offset), 2 usage error.

Flags:
`

func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("convert", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	var (
		format   = fl.String("format", "", "output format (default: from OUT's extension); one of the names below")
		compress = fl.String("compress", "", "compression: deflate or zstd for qcow2; zstd, xz or gzip for raw")
		help     = fl.BoolP("help", "h", false, "show this help")
	)
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprint(stdout, convertHelp+fl.FlagUsages())
		fmt.Fprintf(stdout, "\nOutput formats: %s\n", strings.Join(diskfmt.Names(), ", "))
		return errHelp
	}
	if fl.NArg() != 2 {
		return usagef("want IN and OUT, got %d arguments", fl.NArg())
	}
	in, out := fl.Arg(0), fl.Arg(1)
	name := *format
	if name == "" {
		if out == "-" {
			return usagef("OUT is -: give --format")
		}
		f, err := diskfmt.FromPath(out)
		if err != nil {
			return usagef("%v; give --format", err)
		}
		name = f.Name()
	}
	f, err := diskfmt.New(name, diskfmt.Options{Compress: *compress})
	if err != nil {
		return usagef("%v", err)
	}
	if out == "-" {
		if o, ok := stdout.(*os.File); ok && term.IsTerminal(int(o.Fd())) {
			return usagef("OUT is - but stdout is a terminal; redirect it")
		}
	}

	img, err := diskfmt.Open(ctx, in)
	if err != nil {
		return err
	}
	defer img.Close()
	if out == "-" {
		if err := f.Write(ctx, stdout, img); err != nil {
			return fmt.Errorf("writing %s (%s, %d bytes virtual) to stdout as %s: %w", in, img.Format(), img.Size(), f.Name(), err)
		}
		return nil
	}
	if err := diskfmt.WriteFile(ctx, out, f, img); err != nil {
		return fmt.Errorf("converting %s (%s, %d bytes virtual): %w", in, img.Format(), img.Size(), err)
	}
	fmt.Fprintf(stdout, "%s: %s, %d bytes virtual (from %s, %s)\n", out, f.Name(), img.Size(), in, img.Format())
	return nil
}
