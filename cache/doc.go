// Package cache is imgfab's local content store: every registry blob fetched once, and the
// finished outputs of class-file builds kept by a key of their inputs.
//
// It is its own package, below layers, rather than a part of layers: layers reads sources
// (and writes nothing to the host, a rule its doc keeps), while the store is a small
// filesystem database that layers writes registry blobs into, that cmd/imgfab writes finished
// outputs into, and that `imgfab cache ls|prune` manage without resolving any image. It
// imports nothing of the module.
//
// # Layout
//
// The store is an OCI image layout (image-spec image-layout.md), so crane, skopeo and umoci
// read it:
//
//	DIR/oci-layout                  {"imageLayoutVersion":"1.0.0"}
//	DIR/index.json                  an image index: one entry per source reference fetched,
//	                                annotated org.opencontainers.image.ref.name = the reference
//	DIR/blobs/sha256/HEX            manifests, indexes, configs, layers, and cached outputs
//	DIR/imgfab-outputs/KEY.json     a finished-output record: the outputs' digests and the result
//	DIR/.lock                       flock(2)ed while index.json or the records are rewritten
//
// # Writes
//
// A blob is written once, to a temporary file in its own directory (blobs/sha256/.tmp-HEX-N,
// created O_EXCL), hashed while it streams, fsynced, checked against its digest and size, and
// only then renamed to its final name (and the directory fsynced). A process killed at any
// point leaves at worst a .tmp- file (removed by Prune), never a partial blob under a final
// name; two processes writing the same blob rename the same bytes. index.json and the records
// are written the same way (a temporary file and a rename) under an exclusive flock of DIR/.lock,
// so concurrent builds sharing a store neither lose an entry nor see half a file.
//
// # Last use
//
// A blob's or record's modification time is its last use: written, or touched when read
// (Open, Touch). Prune removes what was not used for a given time.
package cache
