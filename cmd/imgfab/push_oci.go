package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/oci"
)

func init() { pushTargets["oci"] = pushOCI }

const pushOCIHelp = `Usage: imgfab push oci [flags] DISK... REGISTRY/REPO:TAG

Push a disk to an OCI registry. By default as a KubeVirt containerDisk: a single-layer image
whose layer holds the disk as qcow2 at /disk/disk.img (owner 107:107, mode 0444); a disk in
another format is converted to qcow2 first, in a temporary file beside DISK. With --artifact,
as an OCI artifact (artifactType application/vnd.imgfab.disk.v1): the disk file as it is, one
blob of media type application/vnd.imgfab.disk.FORMAT, with annotations for the format, the
virtual size and the boot modes.

Several disks (one per architecture: amd64, arm64, as read from each disk's loader) are pushed
as one multi-platform image index of containerDisks, one manifest per platform, so that KubeVirt
on either architecture pulls its own.

The same disk always gives the same manifest digest (timestamps are the Unix epoch, or
$SOURCE_DATE_EPOCH), so pushing it again uploads nothing. Credentials come from
~/.docker/config.json ($DOCKER_CONFIG) and its credential helpers, as docker login writes them.

Examples:
  imgfab push oci disk.qcow2 registry.example.com/vms/web:1.0
  imgfab push oci disk.raw 127.0.0.1:5000/vms/web:dev --insecure
  imgfab push oci web-amd64.qcow2 web-arm64.qcow2 registry.example.com/vms/web:1.0
  imgfab push oci disk.vmdk ghcr.io/me/disks:web --artifact --json

Flags:
`

func pushOCI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("push oci", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	var (
		artifact = fl.Bool("artifact", false, "push an OCI artifact (the disk as one blob) instead of a containerDisk")
		insecure = fl.Bool("insecure", false, "allow a plain-HTTP registry (a loopback test registry)")
		asJSON   = fl.Bool("json", false, "print the result as JSON")
		noCheck  = fl.Bool("no-check", false, "push without running imgfab check for kubevirt first")
		help     = fl.BoolP("help", "h", false, "show this help")
	)
	if err := fl.Parse(args); err != nil {
		return usagef("push oci: %v", err)
	}
	if *help {
		fmt.Fprint(stdout, pushOCIHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() < 2 {
		return usagef("push oci: want DISK... and REGISTRY/REPO:TAG, got %d arguments", fl.NArg())
	}
	if fl.NArg() > 2 && *artifact {
		return usagef("push oci: --artifact pushes one disk; several disks make an index of containerDisks")
	}
	created := time.Unix(0, 0)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return usagef("push oci: SOURCE_DATE_EPOCH %q is not a number of seconds", s)
		}
		created = time.Unix(n, 0)
	}
	disks, ref := fl.Args()[:fl.NArg()-1], fl.Arg(fl.NArg()-1)
	t := &oci.Target{Ref: ref, Artifact: *artifact, Insecure: *insecure, Created: created}
	if len(disks) == 1 {
		return pushDisk(ctx, t, disks[0], stdout, stderr, *asJSON, *noCheck)
	}
	return pushIndex(ctx, t, disks, stdout, stderr, *asJSON, *noCheck)
}

// pushIndex pushes several disks as one image index of containerDisks, each checked for kubevirt
// first unless noCheck.
func pushIndex(ctx context.Context, t *oci.Target, disks []string, stdout, stderr io.Writer, asJSON, noCheck bool) error {
	var as []publish.Artifact
	for _, d := range disks {
		a, closeDisk, err := openArtifact(ctx, d)
		if err != nil {
			return err
		}
		defer closeDisk()
		if !noCheck {
			if err := checkBeforePush(ctx, t, a, stderr); err != nil {
				return err
			}
		}
		as = append(as, a)
	}
	prog := newPushProgress(stderr)
	fmt.Fprintf(stderr, "imgfab push: oci: uploading %d disks as one index to %s…\n", len(as), t.Ref)
	res, err := t.PushIndex(ctx, as, prog.event)
	prog.done()
	if err != nil {
		return err
	}
	return printPushResult(stdout, res, asJSON)
}
