// Package aws publishes a disk image as an Amazon Machine Image (AMI). Target writes an EBS
// snapshot of the disk and registers the AMI from it, in one of two ways:
//
//   - Via "ebs" (the default): the EBS direct APIs (StartSnapshot, PutSnapshotBlock for each
//     512 KiB block that is not all zero, CompleteSnapshot). No bucket, no import role.
//   - Via "s3": a resumable multipart upload to S3 (content-addressed key, see S3Key), then
//     ImportSnapshot. VMDK and VHD files go as they are, any other format as its raw guest bytes.
//
// A push is idempotent: an AMI of the same name owned by the account is returned as it is
// (Result.Existing), and a completed snapshot tagged with the disk's content hash (imgfab:sha256)
// is reused instead of uploading again.
//
// # Credentials
//
// The AWS SDK's default chain, unless Target.Config is set: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE with ~/.aws/config and
// ~/.aws/credentials (SSO included), or an EC2 instance role. The region is Target.Region, else
// the chain's (AWS_REGION). The secret key and session token are removed from every error.
//
// # Limits
//
//   - The volume is at most 65536 GiB (EBS); it is the disk's size rounded up to a whole GiB
//     unless VolumeSizeGiB asks for more.
//   - The disk is read twice (a scan that hashes every block, then the upload); a block that
//     changed in between fails the push.
//   - A snapshot started through the EBS direct APIs errors out after 60 minutes without a put.
//   - Via "s3" needs the vmimport service role in the account and a bucket in the region; parts
//     are at least 5 MiB and at most 10,000 (the part size is raised to fit).
//   - The AMI's architecture is the disk's (Artifact.Arch): x86_64 for amd64, arm64 for arm64.
//     An arm64 AMI is always registered with boot mode uefi (Graviton boots UEFI only): with
//     arm64, an explicit legacy-bios or uefi-preferred, or a disk known to boot only BIOS, is an
//     error. An AMI of the same name but another architecture is an error, not a reuse.
//   - TPM (NitroTPM) needs a UEFI boot mode.
package aws
