package rootfs

import (
	"archive/tar"
	"fmt"
	"strings"
)

// The file type bits of an inode's mode (S_IFMT and its values), as ext4 and EROFS store them.
const (
	ModeType   = 0xF000
	ModeSocket = 0xC000
	ModeLink   = 0xA000
	ModeReg    = 0x8000
	ModeBlock  = 0x6000
	ModeDir    = 0x4000
	ModeChar   = 0x2000
	ModeFifo   = 0x1000
)

// CheckPath reports whether name is a path a filesystem writer takes: "." (the root) or a clean
// relative path — no leading "/", no empty, "." or ".." component, no NUL — whose components are at
// most 255 bytes. The filesystem writers (rootfs/ext4, rootfs/erofs) check every entry with it;
// the error names the entry and is meant to be prefixed with the writer's name.
func CheckPath(name string) error {
	if name == "." {
		return nil
	}
	if name == "" || name[0] == '/' {
		return fmt.Errorf("entry %q: not a clean relative path", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." || strings.IndexByte(c, 0) >= 0 {
			return fmt.Errorf("entry %q: not a clean relative path", name)
		}
		if len(c) > 255 {
			return fmt.Errorf("entry %q: name %.20q... is %d bytes, at most 255", name, c, len(c))
		}
	}
	return nil
}

// EntryMode checks a tar entry's type and the fields that go with it — a symlink target of 1 to
// 4095 bytes, a hardlink target that is a clean path other than the root, device numbers that fit
// new_encode_dev (12-bit major, 20-bit minor) — and returns the file type bits of the inode it
// makes: 0 for a hardlink (it makes none). Sockets and other types are refused. Errors name the
// entry and are meant to be prefixed with the writer's name.
func EntryMode(hdr *tar.Header) (uint16, error) {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		return ModeReg, nil
	case tar.TypeDir:
		return ModeDir, nil
	case tar.TypeSymlink:
		if len(hdr.Linkname) == 0 || len(hdr.Linkname) > 4095 {
			return 0, fmt.Errorf("symlink %q: target is %d bytes, must be 1 to 4095", name, len(hdr.Linkname))
		}
		return ModeLink, nil
	case tar.TypeLink:
		if err := CheckPath(hdr.Linkname); err != nil || hdr.Linkname == "." {
			return 0, fmt.Errorf("hardlink %q: target %q is not a clean relative path", name, hdr.Linkname)
		}
		return 0, nil
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > 0xFFF || hdr.Devminor < 0 || hdr.Devminor > 0xFFFFF {
			return 0, fmt.Errorf("device %q: %d:%d does not fit 12-bit major, 20-bit minor", name, hdr.Devmajor, hdr.Devminor)
		}
		if hdr.Typeflag == tar.TypeBlock {
			return ModeBlock, nil
		}
		return ModeChar, nil
	case tar.TypeFifo:
		return ModeFifo, nil
	}
	return 0, fmt.Errorf("entry %q: unsupported tar type %q", name, hdr.Typeflag)
}
