package initrd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"path"
	"slices"
	"strings"
)

// Summary is what an initrd carries, as `imgfab check` needs it.
type Summary struct {
	Segments       []string // compression of each segment ("none", "gzip", "zstd", …)
	Files          int      // entries of every kind (trailers not counted)
	Modules        []string // sorted, unique names of the kernel modules (*.ko, *.ko.xz, *.ko.zst, *.ko.gz regular files anywhere), '-' as '_'
	KernelVersions []string // sorted VERs of lib/modules/VER/ and usr/lib/modules/VER/
	Builtin        []string // sorted, unique modules listed in the modules.builtin files of those directories, normalised like Modules

	paths map[string]struct{}
}

// Has reports whether the initrd has an entry at name ("usr/sbin/fsck.ext4", "/sbin/fsck"; a
// leading "/" is ignored). Names are as archived: lib/x and usr/lib/x are different paths even
// when lib is a symlink to usr/lib.
func (s *Summary) Has(name string) bool {
	_, ok := s.paths[cleanName(name)]
	return ok
}

// Summarize reads the whole initrd r and reports its segments, modules and kernel versions. On
// error it returns what it read before the fault with the error.
func Summarize(ctx context.Context, r io.Reader) (*Summary, error) {
	return summarize(ctx, r, defaultLimits)
}

func summarize(ctx context.Context, r io.Reader, lim limits) (*Summary, error) {
	rd := newReader(ctx, r, lim)
	s := &Summary{paths: map[string]struct{}{}}
	mods, vers, builtin := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var names int64
	err := func() error {
		for {
			e, err := rd.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			s.Files++
			if _, ok := s.paths[e.Name]; !ok {
				if names += int64(len(e.Name)); names > lim.names {
					return rd.entryErr(ErrLimit, "%s: names of more than %d bytes in all", e.Name, lim.names)
				}
				s.paths[e.Name] = struct{}{}
			}
			ver, rest := kernelDir(e.Name)
			if ver != "" && (rest != "" || e.Mode.IsDir()) {
				vers[ver] = true
			}
			if !e.Mode.IsRegular() {
				continue
			}
			if m := moduleName(path.Base(e.Name)); m != "" {
				mods[m] = true
			}
			if ver != "" && rest == "modules.builtin" {
				if e.Size > lim.builtin {
					return rd.entryErr(ErrLimit, "%s: %d bytes, more than %d", e.Name, e.Size, lim.builtin)
				}
				b, err := io.ReadAll(rd)
				if err != nil {
					return err
				}
				sc := bufio.NewScanner(bytes.NewReader(b))
				sc.Buffer(nil, len(b)+1)
				for sc.Scan() {
					if m := moduleName(path.Base(strings.TrimSpace(sc.Text()))); m != "" {
						builtin[m] = true
					}
				}
				if sc.Err() != nil {
					return rd.entryErr(sc.Err(), "%s", e.Name)
				}
			}
		}
	}()
	s.Segments = rd.Segments()
	s.Modules, s.KernelVersions, s.Builtin = sorted(mods), sorted(vers), sorted(builtin)
	if err != nil {
		return s, err
	}
	if len(s.Segments) == 0 {
		return s, inputErr(rd.in.off, nil, "no archive (%d bytes of zero padding)", rd.in.off)
	}
	return s, nil
}

// kernelDir splits a name under lib/modules/VER/ or usr/lib/modules/VER/ into VER and the rest
// of the path (empty for the directory itself); "" when it is not under one.
func kernelDir(name string) (ver, rest string) {
	n, ok := strings.CutPrefix(name, "usr/")
	if n, ok = strings.CutPrefix(n, "lib/modules/"); !ok || n == "" {
		return "", ""
	}
	ver, rest, _ = strings.Cut(n, "/")
	return ver, rest
}

// moduleName is a module's name from its file name (nvme.ko, xen-blkfront.ko.xz →
// xen_blkfront, as modprobe and /sys/module name it); "" for other files.
func moduleName(base string) string {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if m, ok := strings.CutSuffix(base, ext); ok && m != "" {
			return strings.ReplaceAll(m, "-", "_")
		}
	}
	return ""
}

func sorted(m map[string]bool) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}
