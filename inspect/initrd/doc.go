// Package initrd reads Linux initramfs images: which files an initrd carries, its kernel modules
// and kernel versions (Summarize, for `imgfab check`), or every entry and its data (Reader).
//
// An initramfs is a concatenation of segments, read as the kernel's unpacker reads them
// (init/initramfs.c, unpack_to_rootfs): an uncompressed newc cpio archive (magic 070701, or
// 070702 whose check field is the sum of a regular file's data bytes, verified here), starting
// 4-aligned, or a compressed stream whose content is one or more newc archives: gzip, zstd, xz,
// lz4 (the legacy `lz4 -l` format), lzma and bzip2; zero padding may come between and after them.
// Early-microcode initrds (Debian, Fedora) are an uncompressed archive then a compressed one. Each
// archive ends with the entry TRAILER!!!; each compressed stream is one segment, as in the kernel:
// one gzip member, one zstd frame, one xz stream (lz4 has no end marker and runs to the end of the
// input; bzip2 streams back to back are read as one segment). Anything else where a segment or
// archive should start is an error naming its offset and first bytes, as are lzo (which the
// kernel knows) and cpio formats other than newc.
//
// # Our own reader
//
// There is no maintained Go newc reader that takes the concatenated, compressed segments, and the
// two we looked at are not written for hostile input: github.com/cavaliergopher/cpio allocates the
// name from the header's name size unchecked (up to 4 GiB), slices name[:size-1] (a panic at 0),
// reads the 110-byte header with one Read (not ReadFull) and stops at the first trailer;
// u-root's pkg/cpio wants an io.ReaderAt, allocates the name size likewise and reads only 070701.
// The newc part is ~200 lines here, with the limits below and errors that name the field.
// Decompression is klauspost/compress (gzip, zstd), ulikunitz/xz (xz, lzma), compress/bzip2 and
// pierrec/lz4 (whose reader takes the legacy format). A compressed stream's end is found from its
// own framing (frame.go walks zstd frames and xz streams) so that no decoder reads into the next
// segment, as the kernel's decompressors report how much they consumed.
//
// # Limits
//
// The initrd is untrusted (it comes from the disk image). Every number it gives is checked before
// it is used to allocate, loop or skip:
//
//   - archive bytes (uncompressed segments plus decompressed content): 4 GiB in all, so a
//     compression bomb stops there (the largest initrds we know hold well under 1 GiB);
//   - entries: 1,000,000 headers (Debian's generic initrd has ~1,200);
//   - name size: 4096 bytes with its NUL and symlink target: 4096 bytes (PATH_MAX, the kernel's
//     own limits); a file's size field is 8 hex digits, so at most 4 GiB - 1, and its data is
//     read in 32 KiB pieces, never allocated whole;
//   - zero padding: 1 MiB in one run (tools pad to 4 bytes, cpio to 512, some to a page);
//   - segments: 256 (real initrds have one to four);
//   - zstd window, xz and lzma dictionary: 128 MiB (xz -9 and lzma -9 use 64 MiB, zstd -19 8 MiB):
//     the decoders allocate them from the stream's header, so a larger claim is an error first;
//   - Summarize: a modules.builtin file of at most 4 MiB, and 64 MiB of names kept for Has.
//
// Errors are *Error, naming the segment, its compression and input offset, the entry and its
// offset in the segment's content, and the field; one over a limit wraps ErrLimit. The reader
// never panics on its input (FuzzReader), stops at the first error and honours its context
// (Summarize) between entries and at each read of the input.
package initrd
