// Package erofs writes a read-only EROFS filesystem image in one pass from a tar stream.
//
// A [Writer] takes tar entries ([Writer.Add]) in any order and appends each regular file's whole 4 KiB
// blocks to dst at a data cursor as they arrive (from block 1; block 0 holds the superblock). A file's tail
// (its last size%4096 bytes) is kept in memory until [Writer.Close] and stored inline right after its inode
// (EROFS_INODE_FLAT_INLINE); if inode, xattrs and tail would not fit one block, the tail is written at once
// as one more zero-padded data block and the file is EROFS_INODE_FLAT_PLAIN. Close then lays out the
// metadata area after the data (meta_blkaddr is its first block): every inode as a 64-byte extended inode
// with its inline xattrs and inline tail, never across a block boundary; then the directories' whole dirent
// blocks; then it writes the superblock with its crc32c (EROFS_FEATURE_COMPAT_SB_CHKSUM). Memory grows with
// the number of entries (names, xattrs, tails under 4 KiB), never with whole files.
//
// The on-disk format follows the kernel's fs/erofs/erofs_fs.h: 4 KiB blocks, uncompressed ("plain") layout
// only, no shared xattrs, no long xattr prefixes, no chunk-based files, no extra devices. Directories are
// blocks of 12-byte dirents followed by their names, sorted by name bytes ("." and ".." included), each
// block self-contained; a directory's last block is inline when it fits. Symlink targets are inline data.
// Devices store new_encode_dev in i_u. [Writer.Size] is the image size after Close.
//
// Output is deterministic: UUID, label and time come from [Options]; nids follow a sorted walk of the tree
// (the root first, then each directory's children, sorted, before its subdirectories); nothing depends on
// the clock or on map iteration order. The result passes fsck.erofs --extract.
//
// # Why our own writer
//
// imgfab builds images in one static binary and does not run outside programs such as mkfs.erofs at build
// time. github.com/erofs/go-erofs (v0.3.1) has a reader and, since recently, a writer too (erofs.Create),
// but that writer takes files through an fs-like API rather than tar headers, spools file data through a
// temporary file on the host (or needs an external data file) and copies it again at Close, needs an
// io.WriteSeeker, and does none of the tar-specific checks below. This package streams each file once into
// its final place, takes tar entries directly and applies the same rules as rootfs/ext4. go-erofs's reader
// is used in the tests as an independent oracle, alongside fsck.erofs from erofs-utils.
//
// # Limits
//
//   - Uncompressed only; files have no holes (all-zero blocks are stored).
//   - Inode, xattrs and inline tail share one block: the xattrs of one entry (12-byte header plus 4-byte
//     aligned entries) must fit in 4032 bytes, else the entry is refused.
//   - The image is at most 2^32 blocks (16 TiB); the root is nid 0 (root_nid is 16 bits).
//   - A later entry for a path already added is an error ("duplicate entry"), except a directory entry for
//     an existing directory, which sets its metadata — the same rules as rootfs/ext4.
//   - Only mtime is stored (EROFS has no atime or ctime); hardlink entries take the target's metadata.
//   - Memory is a few hundred bytes per entry plus names, xattr values and inline tails (< 4 KiB per file).
//   - After an error while streaming a file body (short body, write error) the Writer is unusable and the
//     partial data in dst is not a filesystem.
//
// # Security
//
// The input is untrusted. Paths must be clean relative paths (no "..", no leading "/", no empty or "."
// components, no NUL); names over 255 bytes, symlink targets over 4095 bytes, xattrs outside the user.,
// trusted., security. and system.posix_acl_{access,default} names (ACLs must be well-formed VFS ACLs,
// stored as is), device numbers beyond 12-bit major / 20-bit minor, sockets and tar types other than
// regular, dir, symlink, hardlink, char, block and fifo are errors that name the entry. Nothing is ever
// written outside dst[0:Size()), and nothing touches the host filesystem.
package erofs
