// Command mkoci packs directories as a container image: an OCI image layout (and optionally a
// `docker save`-style tarball). It exists to make test fixtures for imgfab without a container engine.
//
//	go run ./testdata/mkoci -o OUTDIR -tag TAG [-docker] [-epoch N] [-gzip|-zstd|-none]
//	    [-docker-archive FILE] LAYERDIR [LAYERDIR...]
//
// Each LAYERDIR becomes one layer, bottom first. A layer is a PAX tar made by a sorted walk of the
// directory: names relative to LAYERDIR without a "./" prefix (directories end in "/", the directory
// itself is not an entry); uid, gid, mode (with setuid, setgid, sticky) and mtime (whole seconds,
// clamped to -epoch when given) from lstat; character and block devices with major/minor; fifos;
// symlinks; hard links (found by device+inode: the second and later names become TypeLink to the
// first name met in walk order); the xattrs security.capability and user.* as PAX SCHILY.xattr.*
// records. User and group names are left empty. Sockets cannot be put in a tar and are skipped with a
// warning on stderr. Whiteouts are expressed by files named ".wh.NAME" or ".wh..wh..opq" in a layer
// directory: they are copied as they are.
//
// The image config has created = -epoch (0 when not given), architecture amd64, os linux, and the
// diff_ids of the layers. The manifest is annotated in index.json with
// org.opencontainers.image.ref.name=TAG. With -docker the manifest, config and layers carry Docker v2
// schema 2 media types instead of OCI ones (a zstd layer keeps the OCI zstd media type: Docker has
// none of its own).
//
// Output is deterministic: the same trees give byte-identical blobs. Layers are streamed: each is
// written once, compressed, to a temporary file next to OUTDIR while its digests are computed, and
// copied into the layout from there; no layer is held in memory.
//
// Security: mkoci reads whatever the invoking user can read under the layer directories and never
// follows symlinks (lstat, Lgetxattr). It refuses to write into a non-empty OUTDIR.
package main
