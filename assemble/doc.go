// Package assemble wires the stages of `imgfab build` together, and nothing else.
//
// A Plan is plain data (from flags, later from a spec file). Run resolves the image (package
// layers), streams its flattened layers into a one-pass ext4 writer (rootfs/ext4) placed in the
// root partition of the disk being built — the first output itself when it is a raw or an
// uncompressed qcow2 (diskfmt.Qcow2Sink), else a sparse scratch raw beside it — finds the kernel,
// initrd and systemd-boot in the written tree (rootfs, bootloader), fills the ESP, writes the GPT
// last when all sizes are known (partition), and writes the other outputs side by side,
// committing them only when all are written (diskfmt). A raw or fixed VHD that is not the disk
// itself is written as a mirror of it (every write made to both, mirror.go), so it is finished
// with its footer, not copied after the build. With Plan.Checksum each output is hashed as it is
// written, or read back from its start when its first bytes were written last. Run's steps are
// its methods: planBuild, resolve, deriveIDs, buildRoot, boot, writeOutputs. Boot policy (which
// mode, table and loaders) is bootloader's; assemble only computes the command line's root
// reference and writes what bootloader planned.
//
// Determinism: every GUID and UUID comes from a seed hashed from the image digest and the options
// that shape the disk; every timestamp from the source date epoch. Run never prints: progress goes
// to the Plan's Progress callback.
package assemble
