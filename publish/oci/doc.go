// Package oci pushes a disk image to an OCI registry. By default Target pushes a KubeVirt
// containerDisk: a single-layer image whose gzip'd tar layer holds the disk as qcow2 at
// /disk/disk.img (ContainerDiskPath, owned by 107:107, mode 0444), as KubeVirt's own builder
// writes it. With Artifact set it pushes an OCI artifact instead: the disk file as it is, one blob
// (ArtifactType, DiskMediaTypePrefix).
//
// The image's platform is the disk's architecture (Artifact.Arch): linux/amd64 or linux/arm64, in
// the config. Target.PushIndex pushes several disks of one image, one per architecture, as one
// multi-platform containerDisk: an OCI image index with one manifest per platform (each the
// manifest Push makes of that disk), so that each node pulls its own.
//
// The manifest is reproducible (fixed times, tar headers and gzip level), so a rerun finds the
// tag already at that digest and uploads nothing, and blobs already in the repository are not
// sent again.
//
// # Credentials
//
// go-containerregistry's default keychain (~/.docker/config.json, $DOCKER_CONFIG, credential
// helpers), unless Keychain is set. Every secret the keychain holds for the registry is removed
// from errors.
//
// # Limits
//
//   - A containerDisk of a disk that is not a qcow2 file is converted to a temporary qcow2 file
//     first (in TempDir, else beside the disk): that needs the space of the qcow2.
//   - A retried blob upload starts the blob over.
//   - Insecure allows plain HTTP; without it the registry must speak TLS.
package oci
