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
// A build writes its disk once: [Qcow2Sink] is a disk being built that goes straight into a qcow2
// file (data clusters in the order they are first written, tables after them, the header last),
// so a build to qcow2 needs no scratch raw; its bytes differ from the "qcow2" Format's for the
// same guest, which is the same. A raw or fixed VHD output can be written as a mirror of the disk
// being built ([Mirrored], [FinishMirror]): the build makes each of its writes to that file too.
// The file the disk is built in hands its pages to writeback as it goes ([WritebackFile]).
// [WriteOutput] hashes an output as it is written, on another core, when asked to, and [FileSum]
// hashes a finished file from its start.
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
// The rule for every reader and writer: work and memory are bounded by the input's actual bytes
// (or by the output's real data), never by a size or count the input claims. Every size, count
// and offset read from a file is range-checked on its own before it is multiplied or added, so
// nothing wraps. An open reads its tables (qcow2 L1 and L2, VMDK grain directory and tables, VHD
// BAT) once, and they must be distinct parts of the file, so it reads at most about the file.
// Shared or repeated references are detected: the guest data a reader maps must fit in what the
// file holds (read_limits.go; a FormatError names the table entry and its offset):
//
//   - qcow2: no two entries of the active L1/L2 tables use the same host cluster (one bit per
//     cluster of the file), and compressed clusters map at most 1032 times the file's size,
//     deflate's largest ratio; a zstd image whose clusters average more than that over the whole
//     file (long runs of one repeated non-zero byte) is refused too;
//   - VMDK: the grain tables, the plain grains and a sector per compressed grain together fit in
//     the file, and compressed grains map at most 1032 times its size;
//   - VHD (dynamic): the BAT and the allocated blocks, each its bitmap and data, fit in the file.
//
// The extents a reader reports total at most twice the data it maps (a table's runs become one
// extent only where they are dense), so a caller that reads them all is bounded too; ReadAt takes
// no context, open-time walks are bounded by the file. The writers check their context between
// clusters, grains and blocks, and refuse before any work a disk larger than the format holds:
// qcow2 more than qemu's 32 MiB L1 table maps (2 PiB), VMDK more than 62 TiB (VMware's largest
// virtual disk; the grain directory is then 7.75 MiB), VHD more than 2040 GiB.
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
