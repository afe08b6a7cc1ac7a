package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Kernel is a bootable kernel found in a tree: paths are relative to the tree's root.
type Kernel struct {
	Version string // "6.1.0-28-amd64", "lts"
	Linux   string // "boot/vmlinuz-6.1.0-28-amd64"
	Initrd  string // "" when the tree has none for this kernel
}

// KernelNotFoundError lists the places FindKernel looked at.
type KernelNotFoundError struct{ Looked []string }

func (e *KernelNotFoundError) Error() string {
	return "no kernel found in the image (install one, e.g. Debian's linux-image-amd64); looked at: " + strings.Join(e.Looked, ", ")
}

// kernelLayouts are the conventions FindKernel knows, in order of preference.
var kernelLayouts = []struct {
	glob    string                             // kernel image
	version func(p string) string              // version from the kernel path
	initrds func(dir, version string) []string // candidate initrds
}{
	{ // bootable containers (bootc, Fedora CoreOS): the kernel lives with its modules
		glob:    "usr/lib/modules/*/vmlinuz",
		version: func(p string) string { return path.Base(path.Dir(p)) },
		initrds: func(dir, v string) []string { return []string{path.Join("usr/lib/modules", v, "initramfs.img")} },
	},
	{ // Debian, Ubuntu (initrd.img-V), Fedora, Arch-style (initramfs-V.img)
		glob:    "boot/vmlinuz-*",
		version: func(p string) string { return strings.TrimPrefix(path.Base(p), "vmlinuz-") },
		initrds: func(dir, v string) []string {
			return []string{"boot/initrd.img-" + v, "boot/initramfs-" + v + ".img", "boot/initramfs-" + v}
		},
	},
}

// FindKernel finds the newest kernel in fsys and its initrd. It knows
// usr/lib/modules/*/vmlinuz + initramfs.img (bootable containers), boot/vmlinuz-V with
// boot/initrd.img-V (Debian, Ubuntu) or boot/initramfs-V.img (Fedora), and boot/vmlinuz-lts with
// boot/initramfs-lts (Alpine; any boot/vmlinuz-FLAVOR with boot/initramfs-FLAVOR). Symlinks are
// followed inside the tree. Kernels whose name ends in ".old" or that are not regular files are
// skipped. With several kernels the highest version wins.
func FindKernel(fsys fs.FS) (Kernel, error) {
	var looked []string
	for _, l := range kernelLayouts {
		looked = append(looked, "/"+l.glob)
		matches, err := fs.Glob(fsys, l.glob)
		if err != nil {
			return Kernel{}, fmt.Errorf("finding kernel: %w", err)
		}
		var found []Kernel
		for _, m := range matches {
			if strings.HasSuffix(m, ".old") || strings.HasSuffix(m, ".sig") || strings.HasSuffix(m, ".hmac") {
				continue
			}
			if !isRegular(fsys, m) {
				continue
			}
			k := Kernel{Version: l.version(m), Linux: m}
			for _, cand := range l.initrds(path.Dir(m), k.Version) {
				if isRegular(fsys, cand) {
					k.Initrd = cand
					break
				}
			}
			found = append(found, k)
		}
		if len(found) > 0 {
			sort.Slice(found, func(i, j int) bool { return versionLess(found[j].Version, found[i].Version) })
			return found[0], nil
		}
	}
	return Kernel{}, &KernelNotFoundError{Looked: looked}
}

func isRegular(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && st.Mode().IsRegular()
}

// versionLess compares versions the way sort -V does for the usual kernel version strings: runs of
// digits numerically, everything else byte-wise.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, ra := splitRun(a)
		db, rb := splitRun(b)
		if da != db {
			na, ea := strconv.ParseUint(da, 10, 64)
			nb, eb := strconv.ParseUint(db, 10, 64)
			if ea == nil && eb == nil {
				return na < nb
			}
			return da < db
		}
		a, b = ra, rb
	}
	return len(a) < len(b)
}

func splitRun(s string) (run, rest string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

// MaxOSRelease is the largest os-release file OSRelease reads (real ones are well under 1 KiB).
// The size is what the image claims: a sparse file of a terabyte costs a few bytes of a layer.
const MaxOSRelease = 64 << 10

// OSRelease reads etc/os-release (or usr/lib/os-release) from fsys into a map of its keys, with
// quotes removed. A tree with neither gives an empty map and no error; one of more than
// MaxOSRelease bytes, or that is not a regular file, is an error.
func OSRelease(fsys fs.FS) (map[string]string, error) {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := readSmall(fsys, p, MaxOSRelease)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading /%s: %w", p, err)
		}
		return parseOSRelease(string(b)), nil
	}
	return map[string]string{}, nil
}

// readSmall reads the regular file name of fsys, refusing one of more than limit bytes before
// reading it.
func readSmall(fsys fs.FS, name string, limit int64) ([]byte, error) {
	st, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%d bytes, more than the %d read", st.Size(), limit)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than the %d bytes read", limit)
	}
	return b, nil
}

func parseOSRelease(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v)
		}
		m[k] = v
	}
	return m
}
