// Package azure publishes a disk image as an Azure managed image, or as an image version in an
// Azure Compute Gallery. Target uploads the disk as a fixed VHD (converted on the fly from any
// other format) to a page blob, in parallel Put Page requests of at most 4 MiB that skip the
// ranges that are all zero, then creates a managed image from the blob (Hyper-V generation V2 for
// a disk that boots UEFI, V1 for BIOS only; see HyperVGeneration) or, with Target.Gallery, an
// image version from the blob in an image definition of the disk's architecture (x64 or Arm64)
// and generation, creating the gallery and the definition when they are missing.
//
// An arm64 disk (Artifact.Arch) needs a gallery: a managed image has no architecture property
// (Azure takes it for x64), an image definition does. Its generation is V2 (Azure's Arm64 VMs
// boot UEFI); an explicit V1 with arm64 is an error.
//
// The upload is idempotent and resumable: blob metadata records the content hash, so a rerun
// sends nothing for a complete blob and only the missing ranges for an interrupted one. An image
// of the same name (or an image version) made from the same content is returned as it is
// (Result.Existing); one made from other content is an error, and so is an existing image
// definition of another architecture, generation or OS.
//
// # Credentials
//
// The blob is written with the storage account's shared key when StorageKey is set
// (AZURE_STORAGE_KEY for the CLI), else with Credential. Credential also authenticates the
// resource manager; the CLI passes azidentity's default chain (AZURE_CLIENT_ID, AZURE_TENANT_ID
// and AZURE_CLIENT_SECRET, workload or managed identity, `az login`). The storage key and
// AZURE_CLIENT_SECRET are removed from every error.
//
// # Limits
//
//   - The VHD's data size is a whole number of MiB (Azure's rule); a fixed VHD file that is not
//     is rewrapped from its guest bytes.
//   - Images are Linux, generalized; creating one needs a subscription, a resource group and a
//     location (SkipImage uploads the blob only).
//   - Metadata names are imgfab_sha256 and imgfab_pending_sha256 ('_', since they must be C#
//     identifiers).
package azure
