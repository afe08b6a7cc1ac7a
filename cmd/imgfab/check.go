package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/check"
	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/oci"
)

const checkHelp = `Usage: imgfab check [--json] DISK --target TARGET

Say whether DISK fits TARGET before it is uploaded: each rule passes, fails or warns, with what to
do in one line and the documentation it follows (docs/CHECK.md lists every rule). DISK is read with
imgfab's own readers (partition table, ESP, boot entries, initrd, root filesystem), in any format
imgfab reads; nothing is written and nothing outside imgfab runs.

Targets: ` + "%s" + `

Rules: the firmware and CPU the disk boots, root= and console=ttyS0 on the kernel command line,
the storage and network drivers in the initrd or the kernel, the initrd's kernel version, a
metadata agent (cloud-init) and its datasource, network configuration, growth of the root on
first boot, per-machine identity (machine-id, SSH host keys, random seed, credential secret),
/etc/fstab (root, ESP, devices), size limits, the cloud's container format (GCE tarball of whole
GiB, fixed VHD of whole MiB for Azure, the format a target imports).

Examples:
  imgfab check disk.qcow2 --target aws
  imgfab check disk.tar.gz --target gcp --json | jq '.rules[] | select(.status == "fail")'
  imgfab check disk.vhd --target azure

Exit status: 0 when no rule fails (warnings do not fail), 1 when a rule fails or DISK cannot be
read, 2 usage error.

Flags:
`

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("check", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	target := fl.StringP("target", "t", "", "where the disk goes: "+strings.Join(check.Targets(), ", "))
	asJSON := fl.Bool("json", false, "print the report as JSON on stdout")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprintf(stdout, checkHelp+fl.FlagUsages(), strings.Join(check.Targets(), ", "))
		return errHelp
	}
	if fl.NArg() != 1 {
		return usagef("want exactly one DISK, got %d arguments", fl.NArg())
	}
	if *target == "" {
		return usagef("--target is required (%s)", strings.Join(check.Targets(), ", "))
	}
	if !isCheckTarget(*target) {
		return usagef("--target %q: want one of %s", *target, strings.Join(check.Targets(), ", "))
	}
	failed, err := checkDisk(ctx, *target, fl.Arg(0), stdout, *asJSON)
	if err != nil {
		return err
	}
	if failed != nil {
		return failed
	}
	return nil
}

func isCheckTarget(t string) bool {
	for _, n := range check.Targets() {
		if n == t {
			return true
		}
	}
	return false
}

// checkFailed is the error of a check with failing rules (exit 1).
type checkFailed struct {
	target string
	n      int
}

func (e *checkFailed) Error() string {
	if e.n == 1 {
		return "1 rule fails for " + e.target
	}
	return fmt.Sprintf("%d rules fail for %s", e.n, e.target)
}

// gatherDisk opens disk and reads its facts; the file's size is filled in.
func gatherDisk(ctx context.Context, disk string) (*check.Facts, error) {
	img, err := diskfmt.Open(ctx, disk)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	return gatherImage(ctx, img, disk)
}

func gatherImage(ctx context.Context, img diskfmt.Image, disk string) (*check.Facts, error) {
	f, err := check.Gather(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", disk, err)
	}
	if fi, err := os.Stat(disk); err == nil {
		f.Container.FileSize = fi.Size()
	}
	return f, nil
}

// checkDisk checks disk for target and prints the report on w (JSON or text). failed is non-nil
// when a rule fails; err when the disk cannot be read.
func checkDisk(ctx context.Context, target, disk string, w io.Writer, asJSON bool) (failed error, err error) {
	f, err := gatherDisk(ctx, disk)
	if err != nil {
		return nil, err
	}
	rep, err := check.Check(ctx, f, target)
	if err != nil {
		return nil, err
	}
	rep.Disk = disk
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return nil, err
		}
	} else {
		printCheck(w, rep)
	}
	if rep.Failed() {
		return &checkFailed{target: target, n: rep.Summary.Fail}, nil
	}
	return nil, nil
}

// printCheck prints a report: a summary line, then each rule (failures and warnings with their
// fix and source).
func printCheck(w io.Writer, rep check.Report) {
	s := rep.Summary
	fmt.Fprintf(w, "%s for %s: %d pass, %d fail, %d warn, %d skip\n", rep.Disk, rep.Target, s.Pass, s.Fail, s.Warn, s.Skip)
	width := 0
	for _, r := range rep.Rules {
		width = max(width, len(r.ID))
	}
	for _, r := range rep.Rules {
		st := string(r.Status)
		if r.Status == check.Fail || r.Status == check.Warn {
			st = strings.ToUpper(st)
		}
		fmt.Fprintf(w, "  %-4s  %-*s  %s\n", st, width, r.ID, r.Message)
		if r.Status == check.Fail || r.Status == check.Warn {
			pad := strings.Repeat(" ", width+8)
			if r.Fix != "" {
				fmt.Fprintf(w, "%sfix: %s\n", pad, r.Fix)
			}
			fmt.Fprintf(w, "%ssource: %s\n", pad, r.Source)
		}
	}
}

// pushCheckTarget is the check target of a push, and the format the push converts the disk into
// before sending it ("" when it sends the file as it is): aws (aws-arm64 for a disk whose only
// loader is arm64's) sends the guest bytes; gcp a GCE tarball (a tarball as it is); azure a fixed
// VHD of whole MiB (such a VHD as it is); oci a KubeVirt containerDisk in qcow2 (--artifact: the
// file as it is).
func pushCheckTarget(t publish.Target, f *check.Facts) (target, convertedTo string) {
	c := f.Container
	switch t.Name() {
	case "aws":
		if slices.Contains(f.BootModes, "uefi-aa64") && !slices.Contains(f.BootModes, "uefi-x64") && !slices.Contains(f.BootModes, "bios") {
			return "aws-arm64", ""
		}
		return "aws", ""
	case "gcp":
		if c.Format != "gce" {
			return "gcp", "gce"
		}
		return "gcp", ""
	case "azure":
		const footer, mib = 512, 1 << 20
		if c.Format == "vhd" && c.FileSize > footer && (c.FileSize-footer)%mib == 0 && c.FileSize-footer >= c.VirtualSize {
			return "azure", "" // publish/azure sends such a file as it is
		}
		return "azure", "vhd"
	case "oci":
		if o, ok := t.(*oci.Target); ok && o.Artifact || c.Format == "qcow2" {
			return "kubevirt", ""
		}
		return "kubevirt", "qcow2"
	}
	return "", ""
}

// checkBeforePush runs imgfab check for the push's target on the opened disk. A failing rule
// stops the push before any request: the failures are printed on stderr and the error says how
// to skip the check; warnings are one line on stderr.
func checkBeforePush(ctx context.Context, t publish.Target, a publish.Artifact, stderr io.Writer) error {
	f, err := gatherImage(ctx, a.Image, a.Path)
	if err != nil {
		return fmt.Errorf("checking the disk before the upload: %w (--no-check skips the check)", err)
	}
	target, conv := pushCheckTarget(t, f)
	if target == "" {
		return nil
	}
	f.Container.ConvertedTo = conv
	rep, err := check.Check(ctx, f, target)
	if err != nil {
		return err
	}
	if rep.Failed() {
		fmt.Fprintf(stderr, "imgfab push %s: %s does not pass imgfab check --target %s; nothing was sent:\n", t.Name(), a.Path, target)
		for _, r := range rep.Failures() {
			fmt.Fprintf(stderr, "  FAIL %s: %s\n       fix: %s\n", r.ID, r.Message, r.Fix)
		}
		return fmt.Errorf("%v (imgfab check %s --target %s shows every rule; --no-check pushes anyway)", &checkFailed{target: target, n: rep.Summary.Fail}, a.Path, target)
	}
	if rep.Summary.Warn > 0 {
		var ids []string
		for _, r := range rep.Rules {
			if r.Status == check.Warn {
				ids = append(ids, r.ID)
			}
		}
		fmt.Fprintf(stderr, "imgfab push %s: check for %s: warnings: %s (imgfab check %s --target %s)\n", t.Name(), target, strings.Join(ids, ", "), a.Path, target)
	}
	return nil
}
