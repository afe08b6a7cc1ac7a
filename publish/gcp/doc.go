// Package gcp publishes a disk image as a Google Compute Engine image. Target uploads the disk as
// a GCE image tarball (gzip'd GNU tar holding disk.raw) to Cloud Storage with a resumable, chunked
// upload, then calls images.insert on it (with a request id derived from the content, so a
// retried insert is the same request) and waits for the global operation.
//
// A file that is already a GCE tarball is uploaded as it is; any other disk is converted while it
// uploads, through a pipe, with no temporary file. An image of the same name is returned as it is
// (Result.Existing), and an object already holding the same bytes (size and CRC32C) is not
// uploaded again.
//
// # Credentials
//
// Application Default Credentials for both Cloud Storage and Compute Engine
// (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, or the metadata
// server), unless StorageOptions and ComputeOptions give others.
//
// # Limits
//
//   - Image names are lower-case letters, digits and '-', start with a letter and have at most
//     63 characters.
//   - An interrupted upload is resumed within the process (from the last committed offset) but not
//     across processes: the Go client does not expose the session URI, so a rerun starts over.
//   - An upload that makes no progress for StallTimeout (default 10 minutes) fails.
//   - The image's architecture is the disk's (Artifact.Arch): X86_64 for amd64, ARM64 for arm64.
//     An ARM64 image is always UEFI_COMPATIBLE (Arm VMs boot UEFI only; a disk known to boot
//     only BIOS is an error). An image of the same name but another architecture is an error,
//     not a reuse.
package gcp
