// Package rootfs holds what imgfab knows about the composed root tree, independent of the
// filesystem it is written as: finding the kernel, initrd and os-release in it. The filesystem
// writers live in sub-packages (rootfs/ext4).
//
// Security: the tree comes from images imgfab does not control. It is only ever read through an
// fs.FS view of the filesystem imgfab wrote, never through the host's filesystem, so symlinks in
// it resolve inside the image (an absolute target means the image root) and cannot reach host
// files. Path safety of the layer entries themselves is enforced earlier, in package layers, and
// again by the filesystem writer (a parent that is not a directory is refused).
package rootfs
