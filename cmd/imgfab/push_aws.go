package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/publish/aws"
)

func init() { pushTargets["aws"] = pushAWS }

const pushAWSHelp = `Usage: imgfab push aws [flags] DISK --name NAME [--region R]

Upload DISK to AWS and register the AMI NAME; print its id.

--via ebs (the default) writes an EBS snapshot with the EBS direct APIs: StartSnapshot, one
PutSnapshotBlock per 512 KiB block that is not all zero (SHA-256 checked, in parallel, retried on
throttling, 5xx and dropped connections), CompleteSnapshot with the linear aggregate checksum,
then waits for the snapshot to be completed. No bucket and no vmimport role are needed.
--via s3 uploads the disk to --bucket (multipart, resumable: a rerun sends only the missing
parts) and imports it with ImportSnapshot (needs the vmimport service role): a VMDK or VHD file is
uploaded as it is, any other format as the raw guest disk.

The AMI: architecture x86_64, root /dev/xvda (gp3, deleted on termination), HVM, ENA, and the boot
mode from what the disk boots: uefi, legacy-bios, or uefi-preferred when it boots both.
A rerun is safe: an AMI of the same name (owned by you) is printed as already there, and a
completed snapshot of the same disk (tag imgfab:sha256) is reused instead of uploading again.

Credentials and region come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID/
AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, SSO, instance metadata); they are never printed or
stored. Endpoints can be overridden for tests or private endpoints with the flags below or
$IMGFAB_AWS_ENDPOINT_EBS, $IMGFAB_AWS_ENDPOINT_EC2, $IMGFAB_AWS_ENDPOINT_S3 (S3 then path-style).

Examples:
  imgfab push aws disk.raw --name web-2024-06-01 --region eu-west-1
  imgfab push aws disk.qcow2 --name web --tpm --imdsv2 --tag team=os --json
  imgfab push aws disk.vmdk --name web --via s3 --bucket my-imports

Flags:
`

func pushAWS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("push aws", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	t := &aws.Target{}
	fl.StringVar(&t.ImageName, "name", "", "AMI name (required)")
	fl.StringVar(&t.Region, "region", "", "region (default: the SDK chain's, e.g. $AWS_REGION)")
	fl.StringVar(&t.Via, "via", "ebs", "ebs (EBS direct APIs) or s3 (S3 + ImportSnapshot)")
	fl.StringVar(&t.Bucket, "bucket", "", "S3 bucket for --via s3")
	fl.BoolVar(&t.TPM, "tpm", false, "NitroTPM: TpmSupport v2.0 (UEFI boot modes only)")
	fl.BoolVar(&t.IMDSv2, "imdsv2", false, "require IMDSv2 on instances (ImdsSupport v2.0)")
	fl.StringVar(&t.BootMode, "boot-mode", "auto", "auto (from the disk), uefi, legacy-bios or uefi-preferred")
	tags := fl.StringArray("tag", nil, "K=V tag on the snapshot and the AMI (repeatable)")
	fl.Int64Var(&t.VolumeSizeGiB, "volume-size", 0, "root volume and snapshot size in GiB (default: the disk's size rounded up)")
	fl.IntVar(&t.Workers, "parallel", 0, "parallel uploads (default 32 blocks for ebs, 8 parts for s3)")
	fl.Int64Var(&t.PartSize, "part-size", 0, "S3 part size in bytes (default 64 MiB)")
	fl.StringVar(&t.EndpointEBS, "endpoint-ebs", os.Getenv("IMGFAB_AWS_ENDPOINT_EBS"), "EBS direct API endpoint URL")
	fl.StringVar(&t.EndpointEC2, "endpoint-ec2", os.Getenv("IMGFAB_AWS_ENDPOINT_EC2"), "EC2 API endpoint URL")
	fl.StringVar(&t.EndpointS3, "endpoint-s3", os.Getenv("IMGFAB_AWS_ENDPOINT_S3"), "S3 endpoint URL (path-style)")
	fl.DurationVar(&t.PollInterval, "poll-interval", 0, "time between snapshot/import status polls (default 5s)")
	asJSON := fl.Bool("json", false, "print the result as JSON")
	noCheck := fl.Bool("no-check", false, "push without running imgfab check for aws (or aws-arm64) first")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("push aws: %v", err)
	}
	if *help {
		fmt.Fprint(stdout, pushAWSHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() != 1 {
		return usagef("push aws: want one DISK, got %d arguments", fl.NArg())
	}
	if t.ImageName == "" {
		return usagef("push aws: --name is required")
	}
	if t.Via != "ebs" && t.Via != "s3" {
		return usagef("push aws: --via %q: want ebs or s3", t.Via)
	}
	if t.Via == "s3" && t.Bucket == "" {
		return usagef("push aws: --via s3 needs --bucket")
	}
	if t.Via == "ebs" && t.Bucket != "" {
		return usagef("push aws: --bucket is for --via s3")
	}
	switch {
	case t.VolumeSizeGiB < 0 || t.VolumeSizeGiB > 65536:
		return usagef("push aws: --volume-size %d: want 1 to 65536 GiB (EBS's largest volume), or 0 for the disk's size", t.VolumeSizeGiB)
	case t.Workers < 0 || t.Workers > 256:
		return usagef("push aws: --parallel %d: want 1 to 256, or 0 for the default", t.Workers)
	case t.PartSize != 0 && (t.PartSize < 5<<20 || t.PartSize > 5<<30):
		return usagef("push aws: --part-size %d: want 5 MiB to 5 GiB (S3's part limits), or 0 for 64 MiB", t.PartSize)
	case t.PollInterval < 0 || t.PollInterval > 10*time.Minute:
		return usagef("push aws: --poll-interval %v: want 0 (default 5s) to 10m", t.PollInterval)
	}
	switch t.BootMode {
	case "auto", "uefi", "legacy-bios", "uefi-preferred":
	default:
		return usagef("push aws: --boot-mode %q: want auto, uefi, legacy-bios or uefi-preferred", t.BootMode)
	}
	var err error
	if t.Tags, err = parseKV("push aws", "--tag", *tags); err != nil {
		return err
	}
	return pushDisk(ctx, t, fl.Arg(0), stdout, stderr, *asJSON, *noCheck, awsSecretEnv...)
}

// awsSecretEnv are the environment variables whose values never appear in imgfab's output.
var awsSecretEnv = []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
