// Package deflate compresses whole buffers into DEFLATE (RFC 1951) and zlib (RFC 1950) streams
// with zlib's own algorithm: hash chains over 3-byte strings, lazy matching with zlib's level
// tables (good/lazy/nice length, chain limit, and its "3-byte match too far" rule), blocks of up to
// 16383 symbols, and for each block the smallest of stored, fixed-Huffman and dynamic-Huffman coding.
//
// Why our own: the VMDK writer must not produce larger grains than qemu-img, which uses C zlib.
// Go's compress/flate never emits 3-byte matches (its minimum is 4) and is ~0.9 % larger than C
// zlib at the same level on real disk grains; klauspost/compress trades size for speed (~3 %
// larger). cgo is not an option (imgfab is one static binary). This encoder is about 1.2 % smaller
// than C zlib at level 6 on real disk data (BENCHMARKS.md), at about 1.4× its CPU time per core;
// diskfmt uses it for VMDK grains and for the gzip segments of GCE tarballs and raw.gz, all
// compressed on every core. AppendSegment makes independent segments that concatenate into one
// stream (sync-flushed), for parallel compression of a long input.
//
// Limits: one-shot only (the whole input is in memory, as a VMDK grain or a qcow2 cluster is),
// at most MaxInput (4 GiB) per call;
// memory is constant (a 32 KiB window of chain links and a 32 Ki-entry hash head, ~260 KiB per
// Encoder) whatever the input size. An Encoder is not safe for concurrent use; use one per
// goroutine. The output is a function of the input and the level only.
package deflate
