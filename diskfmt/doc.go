// Package diskfmt writes a disk image in the on-disk formats imgfab offers, one file per format
// (raw, qcow2 with optional deflate/zstd cluster compression, VMDK streamOptimized, VHD fixed and
// dynamic, the GCE tar.gz, compressed raw .zst/.xz/.gz), reads raw, qcow2, VMDK and VHD back for
// convert and inspect ([Open]: read_*.go), and creates output files atomically.
//
// A disk is seen as a [Disk]: an [io.ReaderAt] with a size and a sorted list of data [Extent]s;
// everything outside the extents reads as zeros and is never read by a writer. [OpenFile] makes a
// Disk from a sparse raw file using SEEK_DATA/SEEK_HOLE. Package diskfmt knows nothing of
// partitions or filesystems.
//
// Each [Format] registers itself under a name (for --format) and file extensions (see [Lookup],
// [FromPath], [Names]). Writers are deterministic: the same guest bytes give the same output bytes,
// whatever the hole layout of the input (an all-zero cluster written as data and a hole give the
// same result).
//
//   - raw: holes stay holes when the destination is a regular file (seek over them and truncate at
//     the end); all-zero 64 KiB blocks inside extents become holes too. Any other writer (a pipe, a
//     block device) gets every byte, zeros included.
//   - qcow2: version 3, 64 KiB clusters, 16-bit refcounts, no backing file, no header extensions
//     (compressed variants: see qcow2.go and compress.go). Holes and all-zero clusters stay unallocated. The file is written strictly
//     sequentially (header, refcount table, refcount blocks, L1, L2 tables, data in guest order), so
//     it can go to a pipe. The data extents are read twice: once to find the all-zero clusters,
//     once to copy. Memory is one bit per guest cluster that lies in an L2 range holding data, plus
//     fixed 4 MiB buffers.
//
// Progress is reported through a callback set with [WithProgress]; the package never prints.
//
// [CreateOutput] writes to an unnamed file (O_TMPFILE) in the destination's directory, names it
// ".NAME.imgfab-tmp-*" (created exclusively) and renames it into place on [Output.Commit]. A killed
// process leaves nothing behind, and no file that imgfab did not create is ever removed; where
// the filesystem has no O_TMPFILE the temporary file is named from the start (see CreateOutput).
//
// # Limits
//
// The qcow2 disk size must be a multiple of 512 bytes (qemu counts whole sectors). A Disk must not
// change while it is written; a file changed between the two qcow2 passes gives an image with the
// newer data of the allocated clusters only. The readers refuse what they do not support (backing
// files, encryption, differencing VHDs, multi-extent VMDKs) with a [FormatError] naming the field
// and its offset; every table is bounds-checked against the file before it is allocated, so a
// hostile header cannot make them allocate without limit, loop or panic (fuzzed: fuzz_test.go).
//
// A GCE tarball is decompressed once into an unnamed sparse temporary file: the work is its
// decompressed stream (at most deflate's 1032:1 of the file's bytes, never more than 64 TiB plus
// headers), a sparse member's holes (GNU tar -S: old GNU or PAX 0.0/0.1/1.0) cost nothing, the
// temporary directory must allow a sparse file of the disk's size, and the context is checked
// every MiB (see openGCE); the gce and raw.gz writers check it every 1 MiB segment, and gce
// refuses disks over 64 TiB.
//
// # Security
//
// The writers only read the Disk inside its extents and write to the given writer; they follow no
// paths from the data. CreateOutput creates its file with O_TMPFILE (else O_EXCL) beside the destination
// (mode 0666 minus umask, as os.Create) and replaces the destination with rename(2): a symlink at
// the destination is replaced, never followed.
package diskfmt
