package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/inspect"
)

const inspectHelp = `Usage: imgfab inspect [--json] DISK

Show what is on a disk image: format and virtual size, the partition table, each partition's type
and filesystem, the boot entries on the EFI system partition, the kernel command line, kernel and
initrd, and the OS from the root filesystem's os-release. DISK may be raw, qcow2, VMDK, VHD or a
GCE image tarball (the format is detected from the content). Nothing outside imgfab runs and nothing is written.

Examples:
  imgfab inspect disk.qcow2
  imgfab inspect --json disk.vmdk | jq .cmdline

Flags:
`

func runInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("inspect", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	asJSON := fl.Bool("json", false, "print the report as JSON on stdout")
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
	img, err := diskfmt.Open(ctx, fl.Arg(0))
	if err != nil {
		return err
	}
	defer img.Close()
	rep, err := inspect.Inspect(ctx, img)
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
	for _, p := range r.Partitions {
		typ := p.Type
		if typ == "" {
			typ = p.TypeGUID
		}
		fmt.Fprintf(w, "  %d  %-12s %-14s %9s at %-9s", p.Number, orDash(p.Name), typ, human(p.Size), human(p.Offset))
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
	if o := r.OS; o != nil {
		name := o.PrettyName
		if name == "" {
			name = strings.TrimSpace(o.Name + " " + o.VersionID)
		}
		fmt.Fprintf(w, "os: %s (id %s, version %s)\n", orDash(name), orDash(o.ID), orDash(o.VersionID))
	}
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
