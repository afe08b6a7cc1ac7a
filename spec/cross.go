package spec

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// crossClass checks what no single value shows: repeated paths, names and ids.
func (d *decoder) crossClass(c *Class, path string) {
	paths := map[string]string{}
	for i, f := range c.Files {
		p := fmt.Sprintf("%s.files[%d]", path, i)
		if prev, dup := paths[f.Path]; dup {
			d.failAt(f.Pos, p, "%s is already written by %s", f.Path, prev)
		}
		paths[f.Path] = p
	}
	for i, dir := range c.Directories {
		p := fmt.Sprintf("%s.directories[%d]", path, i)
		if prev, dup := paths[dir.Path]; dup {
			d.failAt(dir.Pos, p, "%s is already made by %s", dir.Path, prev)
		}
		paths[dir.Path] = p
	}

	names, gids := map[string]string{}, map[uint32]string{}
	for i, g := range c.Groups {
		p := fmt.Sprintf("%s.groups[%d]", path, i)
		if prev, dup := names[g.Name]; dup {
			d.failAt(g.Pos, p, "group %s is already defined by %s", g.Name, prev)
		}
		if prev, dup := gids[g.GID]; dup {
			d.failAt(g.Pos, p, "gid %d is already taken by %s", g.GID, prev)
		}
		names[g.Name], gids[g.GID] = p, p
	}
	users, uids := map[string]string{}, map[uint32]string{}
	for i, u := range c.Users {
		p := fmt.Sprintf("%s.users[%d]", path, i)
		if prev, dup := users[u.Name]; dup {
			d.failAt(u.Pos, p, "user %s is already defined by %s", u.Name, prev)
		}
		if prev, dup := uids[u.UID]; dup {
			d.failAt(u.Pos, p, "uid %d is already taken by %s", u.UID, prev)
		}
		users[u.Name], uids[u.UID] = p, p
		if u.PrimaryGroup == "" {
			continue
		}
		// The user's own group, made with gid = uid.
		if prev, dup := names[u.Name]; dup {
			d.failAt(u.Pos, p, "the user's own group %s clashes with %s (give gid to use an existing group)", u.Name, prev)
		}
		if prev, dup := gids[u.GID]; dup {
			d.failAt(u.Pos, p, "the user's own group would get gid %d, already taken by %s (give gid)", u.GID, prev)
		}
		names[u.Name], gids[u.GID] = p, p
	}

	mounts, labels := map[string]string{}, map[string]string{}
	for i, part := range c.Partitions {
		p := fmt.Sprintf("%s.partitions[%d]", path, i)
		if part.Mount != "" {
			if prev, dup := mounts[part.Mount]; dup {
				d.failAt(part.Pos, p, "%s is already mounted by %s", part.Mount, prev)
			}
			mounts[part.Mount] = p
		}
		if part.Label != "" {
			if prev, dup := labels[part.Label]; dup {
				d.failAt(part.Pos, p, "label %s is already used by %s", part.Label, prev)
			}
			labels[part.Label] = p
		}
	}
	d.crossReadOnly(c, path)
	if c.Boot.Table == "mbr" && len(c.Partitions) > 2 {
		d.failAt(c.Partitions[2].Pos, fmt.Sprintf("%s.partitions[2]", path), "an MBR holds 4 primary partitions, the ESP and the root and 2 more: use table gpt")
	}

	for i, p := range c.Publish {
		for j := range i {
			if c.Publish[j].Target == p.Target && equalParams(c.Publish[j].Params, p.Params) {
				d.failAt(p.Pos, fmt.Sprintf("%s.publish[%d]", path, i), "the same as %s.publish[%d]", path, j)
			}
		}
	}
}

// crossReadOnly checks rootfs, verity and secure_boot against the rest of the class: the rules
// of the build's --rootfs, --verity and --sign-key (package assemble), in the file's words.
func (d *decoder) crossReadOnly(c *Class, path string) {
	if c.Verity && c.RootFS != "erofs" {
		d.failAt(c.VerityPos, path+".verity", "verity needs rootfs: erofs (a read-only root: a writable one cannot be verified)")
	}
	if c.RootFS == "erofs" {
		if c.Boot.Table == "mbr" {
			d.failAt(c.RootFSPos, path+".rootfs", "rootfs erofs needs a GPT disk (boot.table gpt): its /var partition grows on first boot with systemd-repart, which reads GPT only")
		}
		for i, part := range c.Partitions {
			if part.Mount == "/var" {
				d.failAt(part.Pos, fmt.Sprintf("%s.partitions[%d]", path, i), "rootfs erofs makes /var a partition of its own (the last, to grow on first boot): leave this /var partition out")
			}
		}
	}
	// boot refuses uki with mode bios or chain shim, so with uki the signed chain is imgfab's own.
	if c.SecureBoot != nil && !c.Boot.UKI {
		d.failAt(c.SecureBoot.Pos, path+".secure_boot", "secure_boot needs boot.uki: true: the kernel command line (with the root hash) and the initrd must be inside the signed binary, or anyone could change them")
	}
}

func equalParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// crossFile checks that no two outputs of the file, placeholders filled for every class and
// platform, name the same file.
func (d *decoder) crossFile(f *File) {
	type origin struct {
		path     string
		platform string
		pos      Pos
	}
	seen := map[string]origin{}
	for _, c := range f.Classes {
		for _, pl := range c.Platforms {
			for i, o := range c.Outputs {
				p := fmt.Sprintf("classes.%s.outputs[%d]", c.Name, i)
				key := outputKey(c, o, pl)
				if prev, dup := seen[key]; dup {
					hint := ""
					if len(c.Platforms) > 1 && !strings.Contains(o.Path, "{arch}") && !strings.Contains(o.Path, "{platform}") {
						hint = "; put {arch} or {platform} in the path"
					}
					d.failAt(o.Pos, p, "duplicate output path %q for %s: %s at %d:%d writes it for %s too%s",
						expand(o.Path, c.Name, pl), pl, prev.path, prev.pos.Line, prev.pos.Col, prev.platform, hint)
				}
				seen[key] = origin{p, pl.String(), o.Pos}
			}
		}
	}
}

// outputKey is the file an output writes for platform pl: its absolute path, or "-".
func outputKey(c *Class, o Output, pl Platform) string {
	p := expand(o.Path, c.Name, pl)
	if p == "-" {
		return p
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.Dir, p)
	}
	return filepath.Clean(p)
}

// Expand returns the class's outputs for one of its platforms: {class}, {platform} and {arch}
// filled, relative paths made absolute against the file's directory ("-" stays "-"), and
// Format filled from the extension when it was not given.
func (c *Class) Expand(pl Platform) []Output {
	out := make([]Output, len(c.Outputs))
	for i, o := range c.Outputs {
		o.Path = outputKey(c, o, pl)
		if o.Format == "" {
			o.Format, _ = outputFormat(c.Outputs[i])
		}
		out[i] = o
	}
	return out
}

// ExpandPublish returns the class's publish targets for one of its platforms, {class},
// {platform} and {arch} filled in every parameter.
func (c *Class) ExpandPublish(pl Platform) []Publish {
	out := make([]Publish, len(c.Publish))
	for i, p := range c.Publish {
		q := Publish{Target: p.Target, Params: make(map[string]string, len(p.Params)), Pos: p.Pos}
		for k, v := range p.Params {
			q.Params[k] = expand(v, c.Name, pl)
		}
		out[i] = q
	}
	return out
}

// Platform returns the class's platform with the given OCI name ("linux/arm64"), or false.
func (c *Class) Platform(s string) (Platform, bool) {
	i := slices.IndexFunc(c.Platforms, func(p Platform) bool { return p.String() == s })
	if i < 0 {
		return Platform{}, false
	}
	return c.Platforms[i], true
}
