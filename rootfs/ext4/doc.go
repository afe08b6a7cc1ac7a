// Package ext4 writes an ext4 filesystem image in one pass from a tar stream.
//
// A [Writer] takes tar entries ([Writer.Add]) in any order and appends each regular file's data at a cursor
// as it arrives, with large sequential writes; all-zero 4 KiB blocks become holes. Inode metadata,
// directory entries and xattrs stay in memory (memory grows with the number of entries, never with file
// bytes). [Writer.Close] then places directories, slow symlinks, extent-tree blocks, EA blocks, bitmaps,
// inode tables and the journal after the data, and writes the group descriptors and superblocks. With
// Options.Size == 0 the geometry is provisional while data streams in and Close shrinks the filesystem to
// what was used plus headroom. [Writer.FS] gives a read-only fs.FS view of the result.
//
// The on-disk format follows the verified fact sheet in docs/EXT4.md (cited as §N in comments) and the
// kernel's Documentation/filesystems/ext4: 4 KiB blocks, 256-byte inodes, 64-bit descriptors, flex_bg,
// metadata_csum, extents, a journal, no resize_inode. Directories of up to 2 blocks are linear; larger ones
// are hashed (htree, signed half_md4, one or two index levels), because e2fsck -fy would otherwise
// rebuild them and so change the image.
//
// Output is deterministic: UUID, hash seed and time come from [Options]; inode numbers follow a sorted tree walk and
// directory entries are sorted by name (by hash in htree leaves). The result passes `e2fsck -fn` without
// messages, and `e2fsck -fy` changes nothing but the superblock's check times.
//
// # Why our own writer
//
// go-diskfs's ext4 writer is about 4x slower than `mke2fs -d`, quadratic in directory size, has no
// hardlinks, devices, fifos or xattrs, derives ctime and the hash seed from the clock, and panics on
// 248-byte names. mke2fs is an outside program, which imgfab does not run at build time.
//
// # Limits
//
//   - An htree directory holds at most 507×510 leaf blocks (tens of millions of entries; no large_dir).
//   - With a fixed Size, a last group too small for its metadata plus 50 blocks is dropped (as mke2fs
//     does), so Size() can be a little below Options.Size.
//   - Sockets and tar types other than regular, dir, symlink, hardlink, char, block and fifo are refused.
//   - Xattrs must fit in the inode (96 bytes) plus one 4 KiB EA block per inode; EA blocks are not shared.
//   - dst must read zeros where nothing was written (a fresh sparse file): all-zero inode tables, the
//     journal body and file holes are never written.
//   - Memory is about 350 bytes per entry (names included) plus xattr values and extent lists.
//
// # Security
//
// The input is untrusted. Paths must be clean relative paths (no "..", no leading "/", no empty or "."
// components, no NUL); names over 255 bytes, symlink targets over 4095 bytes, unknown xattr namespaces,
// more than 65000 hardlinks and unsupported tar types are errors. Nothing is ever written outside
// dst[0:Size()), and nothing touches the host filesystem. The FS view resolves symlinks inside the image
// only (absolute targets against the image root, ".." never above it, at most 40 links).
package ext4
