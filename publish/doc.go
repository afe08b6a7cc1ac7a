// Package publish is what the publish targets share: a Target pushes an Artifact (an opened disk
// image plus what is known about it) to where machines boot from it and returns a Result. Each
// target is its own package, using the provider's official SDK and its standard credential chain:
//
//   - publish/aws: an AMI, from a snapshot written through the EBS direct APIs or imported from S3
//   - publish/gcp: a Compute Engine image, from a GCE tarball in Cloud Storage
//   - publish/azure: an Azure managed image, or an image version in an Azure Compute Gallery,
//     from a page blob holding a fixed VHD
//   - publish/oci: a KubeVirt containerDisk (or a multi-arch index of them, PushIndex) or an OCI
//     artifact in a registry
//
// Every target carries the disk's architecture (Artifact.Arch, amd64 or arm64) into what it makes.
//
// Each has a test server beside it, named as net/http/httptest is: awstest, gcptest, azuretest,
// ocitest (tests only).
//
// Progress goes out as Event values through a Progress callback; no package of publish prints.
// Besides the types, this package holds the few helpers every target uses: Parallel (bounded
// workers), NewStepError and Redact (errors that name the step and carry no secret).
//
// # Security
//
// Credentials come only from the SDKs' standard chains (environment, shared config files, instance
// metadata, ~/.docker/config.json for registries). They are never printed, never written to disk
// and never put into an error message: errors from the SDKs are wrapped with the step that failed
// (NewStepError, which redacts the secrets it is given), and each target has a test that no secret
// appears in any output.
//
// # Idempotence
//
// Re-running the same push does not create a second image: each target first looks for an image
// with the same name (AWS, GCP, Azure) or the same digest (registries) and returns it, with
// Result.Existing set.
package publish
