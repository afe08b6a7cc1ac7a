package bootloader

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
)

// MaxKernelImage bounds a kernel decompressed at build time (a gzip-compressed arm64 Image, as
// Ubuntu ships): the largest arm64 kernels are near 60 MiB.
const MaxKernelImage = 256 << 20

// kernelImage is the kernel as a loader gets it: the image's file, or its decompressed content
// when the distribution ships a form no EFI loader starts (a gzip-compressed arm64 Image).
type kernelImage struct {
	src         string
	size        int64
	gzipped     bool
	machine     uint16 // the PE machine; 0 when the kernel has no PE header (no EFI stub)
	sizeOfImage uint32 // the PE SizeOfImage, for a UKI's .linux section
}

func (k *kernelImage) open(tree fs.FS) (io.ReadCloser, error) {
	f, err := tree.Open(k.src)
	if err != nil || !k.gzipped {
		return f, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	zr.Multistream(false)
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(zr, k.size), f}, nil
}

// fileSpec is the kernel as the ESP file dst.
func (k *kernelImage) fileSpec(tree fs.FS, dst string) FileSpec {
	return FileSpec{Path: dst, Size: k.size, Open: func() (io.ReadCloser, error) { return k.open(tree) }}
}

// readKernel finds out the form of the image's kernel: an EFI-stub PE (x86 bzImage, arm64 Image
// with its stub, an EFI zboot image), a plain arm64 Image, or a gzip-compressed one, which is
// decompressed (bounded by MaxKernelImage). A kernel for another architecture than arch is an
// error naming both.
func readKernel(tree fs.FS, arch Arch, src string) (*kernelImage, error) {
	arch = arch.orDefault()
	st, err := fs.Stat(tree, src)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	k := &kernelImage{src: src, size: st.Size()}
	head, err := readHead(tree, src, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("kernel /%s: %w", src, err)
	}
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		if k.size, err = gunzipSize(tree, src); err != nil {
			return nil, fmt.Errorf("kernel /%s (gzip): %w", src, err)
		}
		k.gzipped = true
		if head, err = k.head(tree); err != nil {
			return nil, fmt.Errorf("kernel /%s (gzip): %w", src, err)
		}
	}
	if m, soi, ok := peHeader(head); ok {
		k.machine, k.sizeOfImage = m, soi
	}
	if m := k.arch(head); m != "" && m != arch.Machine {
		return nil, fmt.Errorf("kernel /%s is for %s, but the image is %s (its config's architecture)", src, m, arch.Name)
	}
	return k, nil
}

// arch is the kernel's architecture as MachineName says it: from its PE machine, else from the
// arm64 Image header's magic ("ARM\x64" at 0x38) or the x86 boot protocol's ("HdrS" at 0x202);
// "" when neither is there.
func (k *kernelImage) arch(head []byte) string {
	switch {
	case k.machine != 0:
		return MachineName(k.machine)
	case len(head) >= 0x3c && binary.LittleEndian.Uint32(head[0x38:]) == 0x644d5241:
		return "arm64"
	case len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS":
		return "x86-64"
	}
	return ""
}

func (k *kernelImage) head(tree fs.FS) ([]byte, error) {
	r, err := k.open(tree)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, 64<<10)
	n, err := io.ReadFull(r, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return b[:n], nil
}

func readHead(tree fs.FS, src string, n int) ([]byte, error) {
	f, err := tree.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return b[:m], nil
}

// gunzipSize decompresses src once to learn its size (the ESP is laid out before it is written).
func gunzipSize(tree fs.FS, src string) (int64, error) {
	f, err := tree.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	zr.Multistream(false)
	n, err := io.Copy(io.Discard, io.LimitReader(zr, MaxKernelImage+1))
	if err != nil {
		return 0, err
	}
	if n > MaxKernelImage {
		return 0, fmt.Errorf("more than %d MiB decompressed", MaxKernelImage>>20)
	}
	return n, nil
}

// kernelFile is the image's kernel as the ESP file dst, in a form the loader starts.
func kernelFile(cfg Config, dst string) (FileSpec, error) {
	k, err := readKernel(cfg.Tree, cfg.Arch, cfg.Kernel.Linux)
	if err != nil {
		return FileSpec{}, err
	}
	return k.fileSpec(cfg.Tree, dst), nil
}
