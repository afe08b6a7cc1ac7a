package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/api/option"

	"github.com/imgfab/imgfab/publish/gcp"
)

func init() { pushTargets["gcp"] = pushGCP }

const pushGCPHelp = `Usage: imgfab push gcp [flags] DISK --project P --bucket B --name NAME

Upload DISK to Cloud Storage as a GCE image tarball (gzip'd GNU tar holding disk.raw, sized to a
whole GiB) and create the Compute Engine image NAME from it. A GCE tarball (imgfab build -o
NAME.tar.gz) is uploaded as it is; any other format is converted while it uploads, with no
temporary file. The upload is resumable and chunked; failed chunks are retried. guestOsFeatures:
UEFI_COMPATIBLE when the disk boots UEFI, GVNIC and VIRTIO_SCSI_MULTIQUEUE always, plus any
--guest-os-feature. A rerun finds the image of that name and does nothing; when only the object
is there with the same crc32c, it is not uploaded again.

Credentials: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
application-default login, the metadata server). They are never printed or stored.
Endpoints for emulators and tests: --storage-endpoint ($IMGFAB_GCP_ENDPOINT_STORAGE),
--compute-endpoint ($IMGFAB_GCP_ENDPOINT_COMPUTE).

Examples:
  imgfab push gcp disk.tar.gz --project my-proj --bucket my-images --name web-1 --family web
  imgfab push gcp disk.qcow2 --project my-proj --bucket my-images --name web-2 --label team=os --json

Flags:
`

func pushGCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("push gcp", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	t := &gcp.Target{}
	fl.StringVar(&t.Project, "project", os.Getenv("GOOGLE_CLOUD_PROJECT"), "project of the image ($GOOGLE_CLOUD_PROJECT)")
	fl.StringVar(&t.Bucket, "bucket", "", "Cloud Storage bucket for the tarball")
	fl.StringVar(&t.Image, "name", "", "image name: lower-case letters, digits, '-'")
	fl.StringVar(&t.Object, "object", "", "object name (default imgfab/NAME.tar.gz)")
	fl.StringVar(&t.Family, "family", "", "image family")
	labels := fl.StringArray("label", nil, "K=V label on the image (repeatable)")
	fl.StringArrayVar(&t.GuestOSFeatures, "guest-os-feature", nil, "extra guestOsFeatures type, e.g. SEV_CAPABLE (repeatable)")
	chunkMiB := fl.Int("chunk-size", 16, "upload chunk size in MiB")
	fl.DurationVar(&t.PollInterval, "poll-interval", 2*time.Second, "pause between operation polls")
	storageEP := fl.String("storage-endpoint", os.Getenv("IMGFAB_GCP_ENDPOINT_STORAGE"), "Cloud Storage JSON API URL, e.g. http://127.0.0.1:4443/storage/v1/")
	computeEP := fl.String("compute-endpoint", os.Getenv("IMGFAB_GCP_ENDPOINT_COMPUTE"), "Compute Engine API URL, e.g. http://127.0.0.1:8080/compute/v1/")
	asJSON := fl.Bool("json", false, "print the result as JSON")
	noCheck := fl.Bool("no-check", false, "push without running imgfab check for gcp first")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("push gcp: %v", err)
	}
	if *help {
		fmt.Fprint(stdout, pushGCPHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() != 1 {
		return usagef("push gcp: want one DISK, got %d arguments", fl.NArg())
	}
	if t.Project == "" || t.Bucket == "" || t.Image == "" {
		return usagef("push gcp: --project (or $GOOGLE_CLOUD_PROJECT), --bucket and --name are required")
	}
	if *chunkMiB < 1 || *chunkMiB > 1024 {
		return usagef("push gcp: --chunk-size %d: want 1 to 1024 (MiB)", *chunkMiB)
	}
	if t.PollInterval < 0 || t.PollInterval > 10*time.Minute {
		return usagef("push gcp: --poll-interval %v: want 0 to 10m", t.PollInterval)
	}
	t.ChunkSize = *chunkMiB << 20
	var err error
	if t.Labels, err = parseKV("push gcp", "--label", *labels); err != nil {
		return err
	}
	if *storageEP != "" {
		t.StorageOptions = append(t.StorageOptions, option.WithEndpoint(*storageEP))
	}
	if *computeEP != "" {
		t.ComputeOptions = append(t.ComputeOptions, option.WithEndpoint(*computeEP))
	}
	return pushDisk(ctx, t, fl.Arg(0), stdout, stderr, *asJSON, *noCheck)
}
