// Package publish uploads a finished disk image to where machines boot from it: AWS (EBS direct
// APIs → snapshot → AMI, or S3 + ImportSnapshot), Google Cloud (GCS + images.insert), Azure (page
// blob + managed image) and OCI registries (KubeVirt containerDisk, or an OCI artifact). One file
// per target, each using the provider's official SDK and its standard credential chain.
//
// A Target pushes an Artifact (an opened disk image plus what is known about it) and returns a
// Result. Progress goes out as values through a callback; the package never prints.
//
// # Security
//
// Credentials come only from the SDKs' standard chains (environment, shared config files, instance
// metadata, ~/.docker/config.json for registries). They are never printed, never written to disk
// and never put into an error message: errors from the SDKs are wrapped with the step that failed,
// and a test checks that no secret appears in any output.
//
// # Idempotence
//
// Re-running the same push does not create a second image: each target first looks for an image
// with the same name (AWS, GCP, Azure) or the same digest (registries) and returns it.
package publish
