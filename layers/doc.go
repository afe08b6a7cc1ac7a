// Package layers turns an image source into one flattened tar stream.
//
// It has three steps:
//
//   - [Resolve] opens a source — an OCI image layout ("oci:DIR[:TAG]"), a `docker save`
//     tarball ("docker-archive:FILE[:TAG]") or a registry reference ("docker://REF" or a bare
//     REF) — and picks one image for a platform (default linux/amd64) out of (nested) indexes.
//   - [ImageLayers] lists the image's layers bottom-first. Opening a layer checks the digest and
//     size of the blob as it streams past and decompresses it by its magic bytes (gzip, zstd, or
//     plain tar). [ExtraLayer] makes a layer from a host directory or tar file.
//   - [Flatten] composes the layers into ONE tar stream, top layer first, with OCI whiteouts and
//     opaque directories applied, each path at most once. It decompresses and parses ahead of its
//     consumer in its own goroutine, through a buffered pipe of a few MiB.
//
// # Digest checks
//
// Every blob is checked: manifests of an OCI layout against their index descriptor, the config blob
// against the manifest, each layer blob against its manifest digest and size. A layer's check
// completes when its blob reaches EOF; a mismatch is returned as a read error of the layer stream
// and so by Flatten's Read, naming the layer and both digests. A docker-archive has no compressed
// digests; its layers are checked against the config's diff_ids instead (sha256 of the
// uncompressed tar), and the config against the digest in its file name.
//
// # Security
//
// Nothing is ever written to the host: the composed tree exists only as the output stream.
// Still the tree must never "leave the root", because its consumer lays it into a filesystem.
// Flatten refuses, with an [*UnsafeEntryError] naming the layer and the entry:
//   - absolute names, and names whose cleaned form starts with ".." ("./a/../b" is fine: it is "b");
//   - names containing NUL, or with a component longer than 255 bytes;
//   - entries reached through a symlink of the same layer ("etc -> /tmp" then "etc/x"), in either
//     order. Across layers a symlink is simply shadowed: an upper "etc/x" makes "etc" a directory
//     there, which hides a lower "etc" symlink;
//   - hardlinks whose target is absolute or escapes, is a directory, or is not a name seen earlier in
//     the same layer nor visible from a lower layer;
//   - whiteouts of "..", of "." (the root), and ".wh." components that are not the last component;
//   - typeflags other than regular file, directory, symlink, hardlink, char/block device and FIFO.
//
// Truncated tars, truncated gzip/zstd streams and blobs that are not tars are errors naming the layer.
// State is kept in maps keyed by path: memory grows with the number of entries, never with bytes.
//
// # Limits
//
//   - A path that appears twice in ONE layer is emitted once, the first time (tar semantics would let
//     the second win; streaming cannot take the first back).
//   - A hardlink whose target, in the same layer, is hidden by an upper layer (the target name was
//     deleted or replaced above, the link name was not) needs the target's data, which has already
//     streamed past: the layer is opened and read a second time, and the first visible link name
//     becomes a regular file with that data (further links point to it). This costs a second
//     decompression of that layer, and happens only in that case.
//   - Hardlinks to a name in a lower layer are held back and emitted after everything else, once
//     the target is known to be visible; they carry no data.
//   - Output is PAX format. PAX records other than those that restate header fields (xattrs
//     "SCHILY.xattr.*" and the like) are kept; GNU sparse files become regular files.
//   - A sparse file's holes are expanded to zeros in the stream (archive/tar does not expose the
//     sparse map) and turned back into holes by the ext4 writer. The cost is CPU time in
//     proportion to the logical size: a 10 KiB layer holding a 1 TiB sparse file (a huge
//     /var/log/lastlog, for instance) builds correctly but takes about 100 s of one core.
//   - Host xattrs of an [ExtraLayer] directory are not read; its root directory itself is not emitted.
package layers
