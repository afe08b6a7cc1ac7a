// Package rootfs holds what imgfab knows about the composed root tree, independent of the
// filesystem it is written as: finding the kernel, initrd and os-release in it, and the rules every
// filesystem writer applies to a tar entry ([CheckPath], [EntryMode]). The filesystem writers live
// in sub-packages (rootfs/ext4, rootfs/erofs).
//
// Security: the tree comes from images imgfab does not control. It is only ever read through an
// fs.FS view of the filesystem imgfab wrote, never through the host's filesystem, so symlinks in
// it resolve inside the image (an absolute target means the image root) and cannot reach host
// files. Path safety of the layer entries themselves is enforced earlier, in package layers, and
// again by the filesystem writer (a parent that is not a directory is refused).
//
// Bounds: what is read from the tree costs no more than what the tree really holds, never what a
// size in it claims. os-release is read only if it is a regular file of at most MaxOSRelease bytes
// (a layer of a few bytes can hold a sparse file of a terabyte); FindKernel lists the two
// directories of its conventions and stats the names they hold. Ranges of the entries' numbers
// (ids, times, modes) are checked in package layers, where the layer can be named.
package rootfs
