// Package layers turns an image source into one flattened tar stream.
//
// It has three steps:
//
//   - [Resolve] opens a source — an OCI image layout ("oci:DIR[:TAG]"), a `docker save`
//     tarball ("docker-archive:FILE[:TAG]") or a registry reference ("docker://REF" or a bare
//     REF) — and picks one image for a platform (default linux/amd64) out of (nested) indexes.
//     It reads and checks the image's manifest and config: every digest in them is valid before
//     anything is done with it.
//   - [ImageLayers] lists the image's layers bottom-first. Opening a layer checks the digest and
//     size of the blob as it streams past and decompresses it by its magic bytes (gzip, zstd, or
//     plain tar). [ExtraLayer] makes a layer from a host directory or tar file.
//   - [Flatten] composes the layers into ONE tar stream, top layer first, with OCI whiteouts and
//     opaque directories applied, each path at most once. It decompresses and parses ahead of its
//     consumer in its own goroutine, through a buffered pipe of a few MiB.
//
// # Work bounded by the input's real bytes
//
// The rule for every reader here: work and memory are bounded by the bytes the input really has,
// never by a size or a count it claims, and what is named again and again is read once or
// budgeted. (Sparse files are budgeted rather than free: their holes cost CPU time in proportion
// to their logical size, because the output stream carries them as zeros; see Limits below and
// MaxSparseBytes.) Concretely:
//
//   - An index is fetched and walked at most once however many entries name it (by digest): nine
//     levels of indexes each naming the next sixteen times are nine fetches, not 16^9. An index may
//     have at most 1,000 entries, at most 4,096 entries are examined in all over the nested
//     indexes of one Resolve, and indexes nest at most 8 deep; past a limit the error names the
//     index (its digest) and the numbers.
//   - A manifest or index blob is read only up to 4 MiB (registries refuse bigger manifests), an OCI
//     layout's index.json up to 16 MiB, a config blob up to 16 MiB; a descriptor claiming more is
//     refused before the read.
//   - An image may have at most [MaxLayers] (16,384) layers, refused before any layer is read
//     (Docker builds at most 127 and overlayfs stacks 500; OCI sets no limit). Each layer's blob is
//     opened by digest in constant time: resolving and flattening n layers is O(n) (10,000 small
//     layers take about a second). go-containerregistry's images would parse the whole manifest,
//     config or docker-archive tar again for every layer looked up (O(n²)): Resolve reads layouts
//     and docker-archives itself (a docker-archive is indexed in one pass over its tar headers) and
//     fetches registry blobs by digest.
//   - A layer named by a digest that a layer above has too is not read again: its bytes are the
//     same and all of its entries are shadowed by the copy above.
//   - Flatten's state grows with the number of entries (paths), never with their bytes. Paths are
//     numbered in a tree (a node found from its parent's and its last component), so an entry costs
//     work in proportion to its name's length, not its length times its depth; names and hardlink
//     targets are at most 4,095 bytes (PATH_MAX with its NUL; a PAX path may be 1 MiB). A chain of
//     hidden hardlinks is followed once, not once per link to it.
//
// # Digests
//
// Every digest read from an index, a manifest or a config (index entries, the config digest,
// layer digests, rootfs.diff_ids) must be "sha256:" and 64 lowercase hex digits; anything else is
// refused up front, naming where it was read: `manifest layer 3: digest "sha256:../../x": not 64
// hex digits`. Only a checked digest ever becomes part of a path (blobs/sha256/HEX).
//
// # Numbers
//
// Numbers of a tar header that the filesystem writer narrows are range-checked as the header is
// read, the error naming the layer, the entry and the value. Out of range is refused, never wrapped
// and never clamped:
//
//   - uid and gid: 0 to [MaxID] (2^32−2; 2^32−1 is (uid_t)−1, "no id"). A PAX uid=4294967296 would
//     otherwise be stored as 0: root.
//   - mtime, atime and ctime (PAX records or header fields): [MinTime] to [MaxTime] seconds,
//     −2^31 (1901-12-13T20:45:52Z) to 3·2^32+2^31−1 (2446-05-10T22:38:55Z), what ext4's 256-byte
//     inodes store (a signed 32-bit field and two epoch bits).
//   - mode: permission bits (07777) and the file type bits (0170000) some tar writers set; the type
//     is the typeflag's.
//   - sizes: archive/tar refuses negative sizes; a size larger than the stream is a truncated layer.
//   - device numbers: the filesystem writer refuses what does not fit its encoding (ext4: 12-bit
//     major, 20-bit minor), naming the layer through [LayerPAXKey].
//
// # Digest checks
//
// Every blob is checked: manifests of an OCI layout against their index descriptor, the config blob
// against the manifest, each layer blob against its manifest digest and size. A layer's check
// completes when its blob reaches EOF; a mismatch is returned as a read error of the layer stream
// and so by Flatten's Read, naming the layer and both digests. A docker-archive has no compressed
// digests; its layers are checked against the config's diff_ids instead (sha256 of the
// uncompressed tar), and the config against the digest in its file name. It holds no registry
// manifest either: the digest of an image from a docker-archive is its config's digest (Docker's
// image ID).
//
// # Security
//
// Nothing is ever written to the host: the composed tree exists only as the output stream.
// Still the tree must never "leave the root", because its consumer lays it into a filesystem.
// Flatten refuses, with an [*UnsafeEntryError] naming the layer and the entry:
//   - absolute names, and names whose cleaned form starts with ".." ("./a/../b" is fine: it is "b");
//   - names containing NUL, longer than 4,095 bytes, or with a component longer than 255 bytes;
//   - entries reached through a symlink of the same layer ("etc -> /tmp" then "etc/x"), in either
//     order. Across layers a symlink is simply shadowed: an upper "etc/x" makes "etc" a directory
//     there, which hides a lower "etc" symlink;
//   - hardlinks whose target is absolute or escapes, is a directory, or is not a name seen earlier in
//     the same layer nor visible from a lower layer. When the target is missing because it was
//     whited out, hidden by an opaque directory or replaced, the error says so and names the layer
//     that did it (the error names the link's layer and the link, and comes after the entries
//     before it, whole);
//   - whiteouts of "..", of "." (the root), and ".wh." components that are not the last component;
//   - typeflags other than regular file, directory, symlink, hardlink, char/block device and FIFO.
//
// Truncated tars, truncated gzip/zstd streams and blobs that are not tars are errors naming the layer.
// State is kept in maps keyed by path: memory grows with the number of entries, never with bytes.
// Blobs of an OCI layout and docker archives are opened only if they are regular files (a FIFO is
// refused, not opened: the open would block).
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
//     proportion to the logical size, about 100 s of one core per TiB. The sparse files of one
//     image may therefore span at most [MaxSparseBytes] (64 GiB) in all: a 10 KiB layer holding a
//     1 TiB sparse file (a huge /var/log/lastlog, for instance) is refused, naming the layer and
//     the entry, instead of running for minutes.
//   - Host xattrs of an [ExtraLayer] directory are not read; its root directory itself is not emitted.
package layers
