package customize

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

func (b *builder) hostname(c Config) error {
	h, where := c.Hostname, c.HostnameWhere
	if h == "" {
		return nil
	}
	if err := checkHostname(h); err != nil {
		return errorf(where, "hostname %q: %v", h, err)
	}
	name, err := b.place(where, "etc/hostname")
	if err != nil {
		return err
	}
	if err := b.writeGenerated(where, "hostname", name, []byte(h+"\n"), 0o644, 0, 0); err != nil {
		return err
	}
	b.op(Op{Op: "hostname", Path: "/etc/hostname", Detail: h, Where: where})

	names := h
	if short, _, ok := strings.Cut(h, "."); ok {
		names = h + " " + short
	}
	want := "127.0.1.1\t" + names
	old, _, ok, err := b.readFile("etc/hosts")
	if err != nil {
		return errorf(where, "hostname: reading /etc/hosts: %v", err)
	}
	var out []byte
	if !ok {
		out = []byte("127.0.0.1\tlocalhost\n" + want + "\n\n" +
			"# The following lines are desirable for IPv6 capable hosts\n" +
			"::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n")
	} else {
		var lines []string
		done := false
		for _, l := range splitLines(old) {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.1.1" {
				if !done {
					lines = append(lines, want)
				} // a second 127.0.1.1 line is dropped: the name is this one
				done = true
				continue
			}
			lines = append(lines, l)
		}
		if !done {
			// Debian's installer puts it after the 127.0.0.1 line.
			at := len(lines)
			for i, l := range lines {
				if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.0.1" {
					at = i + 1
					break
				}
			}
			lines = append(lines[:at], append([]string{want}, lines[at:]...)...)
		}
		out = joinLines(lines)
	}
	hn, err := b.place(where, "etc/hosts")
	if err != nil {
		return err
	}
	if err := b.writeGenerated(where, "hostname", hn, out, 0o644, 0, 0); err != nil {
		return err
	}
	b.op(Op{Op: "hostname", Path: "/etc/hosts", Detail: want, Where: where})
	return nil
}

func checkHostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("%d bytes (at most 253)", len(h))
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("label %q must be 1 to 63 bytes", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", l)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a letter, digit or '-'", r)
			}
		}
	}
	return nil
}

// splitLines splits a text file into lines, without the final newline's empty line.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.Split(s, "\n")
}

// joinLines joins lines, each ended by a newline.
func joinLines(lines []string) []byte {
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func (b *builder) timezone(c Config) error {
	z, where := c.Timezone, c.TimezoneWhere
	if z == "" {
		return nil
	}
	if _, err := checkPath(where, "timezone", "/"+z); err != nil || strings.ContainsAny(z, " \t\n") {
		return errorf(where, "timezone %q: not a zone name like Europe/Paris", z)
	}
	zf := "usr/share/zoneinfo/" + z
	canon, miss, err := b.resolve(zf, true)
	if err != nil {
		return errorf(where, "timezone %s: %v", z, err)
	}
	if len(miss) > 0 {
		return errorf(where, "timezone %s: /%s is not in the image (is tzdata installed?)", z, zf)
	}
	if n, _, err := b.lstat(canon); err != nil || n.kind != kFile {
		return errorf(where, "timezone %s: /%s is not a file", z, zf)
	}
	name, err := b.place(where, "etc/localtime")
	if err != nil {
		return err
	}
	target := "../usr/share/zoneinfo/" + z
	if err := b.put(&entry{name: name, typ: tar.TypeSymlink, link: target, where: where, what: "timezone"}); err != nil {
		return err
	}
	b.op(Op{Op: "timezone", Path: "/etc/localtime", Target: target, Where: where})
	tz, miss, err := b.resolve("etc/timezone", true)
	if err != nil {
		return errorf(where, "timezone: /etc/timezone: %v", err)
	}
	if len(miss) == 0 {
		if err := b.writeGenerated(where, "timezone", tz, []byte(z+"\n"), 0o644, 0, 0); err != nil {
			return err
		}
		b.op(Op{Op: "timezone", Path: "/etc/timezone", Detail: z, Where: where})
	}
	return nil
}

const unconfiguredFstab = "# UNCONFIGURED FSTAB FOR BASE SYSTEM"

// fstab merges the Config's entries into /etc/fstab and makes their mount points.
func (b *builder) fstab(c Config) error {
	if len(c.Fstab) == 0 {
		return nil
	}
	where := c.Fstab[0].Where
	mounts, add, err := fstabEntries(c.Fstab)
	if err != nil {
		return err
	}
	lines, replaced, err := b.oldFstab(where, mounts)
	if err != nil {
		return err
	}
	lines = append(lines, add...)
	name, err := b.place(where, "etc/fstab")
	if err != nil {
		return err
	}
	if err := b.writeGenerated(where, "fstab", name, joinLines(lines), 0o644, 0, 0); err != nil {
		return err
	}
	detail := fmt.Sprintf("%d entries merged", len(add))
	if replaced {
		detail = fmt.Sprintf("%d entries, replacing the unconfigured base-system file", len(add))
	}
	b.op(Op{Op: "fstab", Path: "/etc/fstab", Detail: detail, Where: where})
	return b.mountPoints(c.Fstab)
}

// fstabEntries checks the entries and formats their lines; mounts maps each mount point (not swap) to its Where.
func fstabEntries(entries []FstabEntry) (mounts map[string]string, add []string, err error) {
	mounts = map[string]string{}
	for _, e := range entries {
		for _, f := range []struct{ what, v string }{{"spec", e.Spec}, {"mount", e.Mount}, {"fs", e.FS}, {"options", e.Options}} {
			if strings.ContainsAny(f.v, " \t\n#") || f.v == "" && f.what != "options" {
				return nil, nil, errorf(e.Where, "fstab %s %q: empty or with blanks or '#'", f.what, f.v)
			}
		}
		swap := e.Mount == "none" || e.Mount == "swap"
		if !swap {
			if _, err := checkPath(e.Where, "fstab mount point", e.Mount); err != nil && e.Mount != "/" {
				return nil, nil, err
			}
		}
		if e.Dump < 0 || e.Pass < 0 || e.Pass > 2 {
			return nil, nil, errorf(e.Where, "fstab %s: dump %d, pass %d (want dump ≥ 0, pass 0 to 2)", e.Mount, e.Dump, e.Pass)
		}
		if !swap {
			if w, dup := mounts[e.Mount]; dup {
				return nil, nil, errorf(e.Where, "fstab mount point %s is also given at %s", e.Mount, whereOr(w))
			}
			mounts[e.Mount] = e.Where
		}
		opts := e.Options
		if opts == "" {
			opts = "defaults"
		}
		add = append(add, fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d", e.Spec, e.Mount, e.FS, opts, e.Dump, e.Pass))
	}
	return mounts, add, nil
}

// oldFstab is the image's /etc/fstab less the lines of mounts, or a fresh header if it has none or an unconfigured one.
func (b *builder) oldFstab(where string, mounts map[string]string) (lines []string, replaced bool, err error) {
	old, _, ok, err := b.readFile("etc/fstab")
	if err != nil {
		return nil, false, errorf(where, "fstab: reading /etc/fstab: %v", err)
	}
	if !ok {
		old = nil
	}
	lines, replaced = keepFstabLines(old, ok, func(m string) bool { _, mine := mounts[m]; return mine })
	return lines, replaced, nil
}

// keepFstabLines is an fstab's lines less those whose mount point drop names, or a fresh header
// when there is no file (ok false) or debootstrap's unconfigured one (replaced true).
func keepFstabLines(old []byte, ok bool, drop func(mount string) bool) (lines []string, replaced bool) {
	if ok && !bytes.Contains(old, []byte(unconfiguredFstab)) {
		for _, l := range splitLines(old) {
			f := strings.Fields(l)
			if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && drop(unescapeFstab(f[1])) {
				continue // replaced by a new line
			}
			lines = append(lines, l)
		}
		return lines, false
	}
	lines = []string{"# /etc/fstab: static file system information, written by imgfab.", "#", "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>"}
	return lines, ok
}

// MergeFstab is the fstab old (ok false: the image has none) with entries added, replacing the
// lines that mount the same points, as a Config's Fstab is merged; replaced reports that old was
// debootstrap's unconfigured file. The first-boot preparation (package firstboot) uses it for
// the root and the ESP.
func MergeFstab(old []byte, ok bool, entries []FstabEntry) (merged []byte, replaced bool, err error) {
	mounts, add, err := fstabEntries(entries)
	if err != nil {
		return nil, false, err
	}
	lines, replaced := keepFstabLines(old, ok, func(m string) bool { _, mine := mounts[m]; return mine })
	return joinLines(append(lines, add...)), replaced, nil
}

// mountPoints makes the entries' mount points that the image lacks, and refuses one that is not a directory.
func (b *builder) mountPoints(entries []FstabEntry) error {
	for _, e := range entries {
		if e.Mount == "none" || e.Mount == "swap" || e.Mount == "/" {
			continue
		}
		rel := e.Mount[1:]
		canon, miss, err := b.resolve(rel, true)
		if err != nil {
			return errorf(e.Where, "fstab mount point %s: %v", e.Mount, err)
		}
		if len(miss) == 0 {
			if n, _, _ := b.lstat(canon); n.kind != kDir {
				return errorf(e.Where, "fstab mount point %s is a %s in the image", e.Mount, n.kindName())
			}
			continue
		}
		if _, err := b.place(e.Where, rel+"/x"); err != nil { // makes the mount point and its parents
			return err
		}
	}
	return nil
}

// unescapeFstab undoes fstab's octal escapes (\040 for a space).
func unescapeFstab(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// loginDefs reads the image's /etc/login.defs once (missing: empty).
func (b *builder) loginDefs() map[string]string {
	if b.defs != nil {
		return b.defs
	}
	b.defs = map[string]string{}
	data, _, ok, err := b.readFile("etc/login.defs")
	if err != nil || !ok {
		return b.defs
	}
	for _, l := range splitLines(data) {
		f := strings.Fields(l)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			b.defs[f[0]] = f[1]
		}
	}
	return b.defs
}

// defNum is a number from login.defs (octal with a leading 0), or def.
func (b *builder) defNum(key string, def int64) int64 {
	v, ok := b.loginDefs()[key]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		return def
	}
	return n
}
