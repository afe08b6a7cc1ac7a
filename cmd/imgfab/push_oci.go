package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/publish/oci"
)

func init() { pushTargets["oci"] = pushOCI }

const pushOCIHelp = `Usage: imgfab push oci [flags] DISK REGISTRY/REPO:TAG

Push a disk to an OCI registry. By default as a KubeVirt containerDisk: a single-layer image
whose layer holds the disk as qcow2 at /disk/disk.img (owner 107:107, mode 0444); a disk in
another format is converted to qcow2 first, in a temporary file beside DISK. With --artifact,
as an OCI artifact (artifactType application/vnd.imgfab.disk.v1): the disk file as it is, one
blob of media type application/vnd.imgfab.disk.FORMAT, with annotations for the format, the
virtual size and the boot modes.

The same disk always gives the same manifest digest (timestamps are the Unix epoch, or
$SOURCE_DATE_EPOCH), so pushing it again uploads nothing. Credentials come from
~/.docker/config.json ($DOCKER_CONFIG) and its credential helpers, as docker login writes them.

Examples:
  imgfab push oci disk.qcow2 registry.example.com/vms/web:1.0
  imgfab push oci disk.raw 127.0.0.1:5000/vms/web:dev --insecure
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
	if fl.NArg() != 2 {
		return usagef("push oci: want DISK and REGISTRY/REPO:TAG, got %d arguments", fl.NArg())
	}
	created := time.Unix(0, 0)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return usagef("push oci: SOURCE_DATE_EPOCH %q is not a number of seconds", s)
		}
		created = time.Unix(n, 0)
	}
	t := &oci.Target{Ref: fl.Arg(1), Artifact: *artifact, Insecure: *insecure, Created: created}
	return pushDisk(ctx, t, fl.Arg(0), stdout, stderr, *asJSON, *noCheck)
}
