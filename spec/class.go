package spec

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	fileKeys       = []string{"classes"}
	classKeys      = []string{"from", "platforms", "layers", "kernel", "boot", "disk", "esp_size", "source_date_epoch", "no_journal", "rootfs", "verity", "secure_boot", "first_boot", "files", "directories", "users", "groups", "hostname", "timezone", "units", "partitions", "outputs", "publish"}
	kernelKeys     = []string{"cmdline"}
	firstBootKeys  = []string{"grow", "keep"}
	bootKeys       = []string{"mode", "table", "uki", "chain"}
	secureBootKeys = []string{"key", "cert", "enroll"}
	diskKeys       = []string{"size"}
	fileEntryKeys  = []string{"path", "content", "source", "mode", "owner"}
	dirKeys        = []string{"path", "mode", "owner"}
	userKeys       = []string{"name", "uid", "gid", "groups", "shell", "home", "ssh_authorized_keys", "password_hash"}
	groupKeys      = []string{"name", "gid"}
	unitsKeys      = []string{"enable", "disable", "mask"}
	partKeys       = []string{"mount", "size", "fs", "label", "type"}
	outputKeys     = []string{"path", "format", "compress"}
)

// Defaults filled by Canonical and documented in docs/CLASSFILE.md.
const (
	DefaultPlatform = "linux/amd64"
	DefaultFileMode = 0o644
	DefaultDirMode  = 0o755
	DefaultShell    = "/bin/sh"
	DefaultESPSize  = 256 << 20
	// MaxEpoch is the latest source_date_epoch (2106-02-07): gzip, tar and VHD hold 32 bits.
	MaxEpoch = 1<<32 - 1
	// MaxDiskSize is the largest disk imgfab builds, 64 TiB.
	MaxDiskSize = 64 << 40
	// MinESPSize and MaxESPSize bound esp_size.
	MinESPSize = 1 << 20
	MaxESPSize = 32 << 30
)

func (d *decoder) file1(root *yaml.Node, f *File) {
	top := d.fields(root, "", fileKeys, nil)
	cl, ok := top["classes"]
	if !ok {
		d.fail(root, "", "no classes: want a mapping classes: {NAME: {from: …}, …}")
	}
	m := d.value(cl.val, "classes")
	if m.Kind != yaml.MappingNode {
		d.fail(m, "classes", "want a mapping of class names to classes, got %s", describe(m))
	}
	if len(m.Content) == 0 {
		d.fail(m, "classes", "no classes: want at least one")
	}
	if len(m.Content)/2 > MaxClasses {
		d.fail(m, "classes", "%d classes, more than the %d allowed", len(m.Content)/2, MaxClasses)
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.fail(k, "classes", "want a class name, got %s", describe(k))
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, "classes", "duplicate class %q (first at line %d, column %d)", k.Value, first.Line, first.Column)
		}
		seen[k.Value] = k
		if msg := checkClassName(k.Value); msg != "" {
			d.fail(k, "classes", "%s", msg)
		}
		c := d.class(k, v)
		f.Classes = append(f.Classes, c)
		f.byName[c.Name] = c
	}
	d.crossFile(f)
}

// class decodes one class: from, platforms, then each section of classSections given, then the checks across them.
func (d *decoder) class(k, v *yaml.Node) *Class {
	path := "classes." + k.Value
	c := &Class{Name: k.Value, Pos: d.pos(k), Dir: d.dir}
	fs := d.fields(v, path, classKeys, refuseClassKey)
	d.classFrom(c, v, fs, path)
	d.classPlatforms(c, fs, path)
	for _, s := range classSections {
		if f, ok := fs[s.key]; ok {
			s.decode(d, c, f.val, path+"."+s.key)
		}
	}
	d.crossClass(c, path)
	return c
}

// refuseClassKey is the message for a class key often written by mistake, or "".
func refuseClassKey(key string) string {
	switch key {
	case "password", "ssh_keys", "user":
		return fmt.Sprintf("unknown key %q (users go in users: [{name: …}])", key)
	case "platform":
		return `unknown key "platform": write platforms: [linux/amd64, …]`
	case "output":
		return `unknown key "output": write outputs: [{path: …}]`
	}
	return ""
}

// classSections decode a class's optional sections after platforms, in this order (groups before users).
var classSections = []struct {
	key    string
	decode func(d *decoder, c *Class, n *yaml.Node, path string)
}{
	{"layers", (*decoder).classLayers},
	{"kernel", (*decoder).classKernel},
	{"boot", func(d *decoder, c *Class, n *yaml.Node, path string) { d.boot(n, path, &c.Boot) }},
	{"disk", (*decoder).classDisk},
	{"esp_size", (*decoder).classESPSize},
	{"source_date_epoch", (*decoder).classEpoch},
	{"no_journal", func(d *decoder, c *Class, n *yaml.Node, path string) { c.NoJournal = d.boolean(n, path) }},
	{"rootfs", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.RootFS, c.RootFSPos = d.oneOf(n, path, "ext4", "erofs"), d.pos(n)
	}},
	{"verity", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Verity, c.VerityPos = d.boolean(n, path), d.pos(n)
	}},
	{"secure_boot", (*decoder).classSecureBoot},
	{"first_boot", (*decoder).classFirstBoot},
	{"files", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Files = decodeList(d, n, path, "files ({path, content or source, mode, owner})", (*decoder).fileEntry)
	}},
	{"directories", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Directories = decodeList(d, n, path, "directories ({path, mode, owner})", (*decoder).directory)
	}},
	{"groups", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Groups = decodeList(d, n, path, "groups ({name, gid})", (*decoder).group)
	}},
	{"users", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Users = decodeList(d, n, path, "users ({name, uid, …})", (*decoder).user)
	}},
	{"hostname", (*decoder).classHostname},
	{"timezone", (*decoder).classTimezone},
	{"units", func(d *decoder, c *Class, n *yaml.Node, path string) { d.units(n, path, &c.Units) }},
	{"partitions", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Partitions = decodeList(d, n, path, "partitions ({mount, size, fs})", (*decoder).partition)
	}},
	{"outputs", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Outputs = decodeList(d, n, path, "outputs ({path, format, compress})", (*decoder).output)
	}},
	{"publish", func(d *decoder, c *Class, n *yaml.Node, path string) {
		c.Publish = decodeList(d, n, path, "publish targets ({target: aws|gcp|azure|oci, …})", (*decoder).publish)
	}},
}

// decodeList decodes each item of the list n (of what) with item, at path[i].
func decodeList[T any](d *decoder, n *yaml.Node, path, what string, item func(*decoder, *yaml.Node, string) T) []T {
	var out []T
	for i, it := range d.list(n, path, what) {
		out = append(out, item(d, it, fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

// classFrom decodes the required from: the source image, kept as written and made absolute.
func (d *decoder) classFrom(c *Class, v *yaml.Node, fs map[string]field, path string) {
	from, ok := fs["from"]
	if !ok {
		d.fail(d.value(v, path), path, "no from: want the source image, e.g. from: oci:./layout:TAG or from: docker://REGISTRY/REPO:TAG")
	}
	c.From = d.str(from.val, path+".from")
	c.FromPos = d.pos(from.val)
	abs, msg := checkSource(c.From, d.abs)
	if msg != "" {
		d.fail(from.val, path+".from", "%s", msg)
	}
	c.FromAbs = abs
}

// classPlatforms decodes platforms (a non-empty list without duplicates), or fills the default.
func (d *decoder) classPlatforms(c *Class, fs map[string]field, path string) {
	f, ok := fs["platforms"]
	if !ok {
		c.Platforms = []Platform{{OS: "linux", Arch: "amd64"}}
		return
	}
	items := d.list(f.val, path+".platforms", "platforms")
	if len(items) == 0 {
		d.fail(f.val, path+".platforms", "an empty list: leave platforms out for [%s] or name at least one", DefaultPlatform)
	}
	seen := map[string]bool{}
	for i, it := range items {
		p := fmt.Sprintf("%s.platforms[%d]", path, i)
		s := d.str(it, p)
		pl, msg := parsePlatform(s)
		if msg != "" {
			d.fail(it, p, "%s", msg)
		}
		if seen[pl.String()] {
			d.fail(it, p, "duplicate platform %q", s)
		}
		seen[pl.String()] = true
		pl.Pos = d.pos(it)
		c.Platforms = append(c.Platforms, pl)
	}
}

// classLayers decodes layers: local directories or tar files, kept as written and made absolute.
func (d *decoder) classLayers(c *Class, n *yaml.Node, path string) {
	ls, pos := d.strs(n, path, "directories or tar files", checkLocalPath)
	for i, l := range ls {
		c.Layers = append(c.Layers, Layer{Path: l, Abs: d.abs(l), Pos: pos[i]})
	}
}

// classKernel decodes the kernel section: its cmdline.
func (d *decoder) classKernel(c *Class, n *yaml.Node, path string) {
	kf := d.fields(n, path, kernelKeys, nil)
	if cf, ok := kf["cmdline"]; ok {
		c.Kernel.Cmdline = d.str(cf.val, path+".cmdline")
		if msg := checkCmdline(c.Kernel.Cmdline); msg != "" {
			d.fail(cf.val, path+".cmdline", "%s", msg)
		}
	}
}

// classFirstBoot decodes first_boot: grow (default true) and keep, a list of operation names.
func (d *decoder) classFirstBoot(c *Class, n *yaml.Node, path string) {
	f := d.fields(n, path, firstBootKeys, nil)
	if g, ok := f["grow"]; ok {
		c.FirstBoot.NoGrow = !d.boolean(g.val, path+".grow")
	}
	if k, ok := f["keep"]; ok {
		c.FirstBoot.Keep, c.FirstBoot.KeepPos = d.strs(k.val, path+".keep", "keep (operation names)", nil)
	}
}

// classSecureBoot decodes secure_boot: key and cert (both required), enroll, paths on the build
// host kept as written and made absolute.
func (d *decoder) classSecureBoot(c *Class, n *yaml.Node, path string) {
	fs := d.fields(n, path, secureBootKeys, nil)
	sb := &SecureBoot{Pos: d.pos(d.value(n, path))}
	local := func(key string) (string, string) {
		f, ok := fs[key]
		if !ok {
			return "", ""
		}
		s := d.str(f.val, path+"."+key)
		if msg := checkLocalPath(s); msg != "" {
			d.fail(f.val, path+"."+key, "%s", msg)
		}
		return s, d.abs(s)
	}
	sb.Key, sb.KeyAbs = local("key")
	sb.Cert, sb.CertAbs = local("cert")
	sb.Enroll, sb.EnrollAbs = local("enroll")
	switch {
	case sb.Key == "" && sb.Cert == "":
		d.fail(n, path, "no key and cert: want the db key and its certificate, PEM files (imgfab keys create DIR makes DIR/db.key and DIR/db.crt)")
	case sb.Cert == "":
		d.fail(fs["key"].key, path, "key and cert go together: give cert, the X.509 certificate (PEM) of key")
	case sb.Key == "":
		d.fail(fs["cert"].key, path, "key and cert go together: give key, the RSA private key (PEM) of cert")
	}
	c.SecureBoot = sb
}

// classDisk decodes the disk section: its size, 1MiB to MaxDiskSize, rounded to a MiB.
func (d *decoder) classDisk(c *Class, n *yaml.Node, path string) {
	df := d.fields(n, path, diskKeys, nil)
	if sf, ok := df["size"]; ok {
		size := d.size(sf.val, path+".size")
		if size < 1<<20 || size > MaxDiskSize {
			d.fail(sf.val, path+".size", "want a size from 1MiB to %dTiB, got %s", MaxDiskSize>>40, sf.val.Value)
		}
		c.Disk = Disk{Size: roundMiB(size), Pos: d.pos(sf.val)}
	}
}

// classESPSize decodes esp_size, MinESPSize to MaxESPSize.
func (d *decoder) classESPSize(c *Class, n *yaml.Node, path string) {
	size := d.size(n, path)
	if size < MinESPSize || size > MaxESPSize {
		d.fail(n, path, "want a size from %dMiB to %dGiB, got %s", MinESPSize>>20, MaxESPSize>>30, n.Value)
	}
	c.ESPSize, c.ESPSizePos = size, d.pos(n)
}

// classEpoch decodes source_date_epoch, 0 to MaxEpoch.
func (d *decoder) classEpoch(c *Class, n *yaml.Node, path string) {
	e := d.integer(n, path, 0, MaxEpoch, fmt.Sprintf("a unix time from 0 to %d (1970-01-01 to 2106-02-07)", int64(MaxEpoch)))
	c.SourceDateEpoch = &e
}

// classHostname decodes hostname and checks its shape.
func (d *decoder) classHostname(c *Class, n *yaml.Node, path string) {
	c.Hostname = d.str(n, path)
	if msg := checkHostname(c.Hostname); msg != "" {
		d.fail(n, path, "%s", msg)
	}
}

// classTimezone decodes timezone and checks its shape (not that the zone exists).
func (d *decoder) classTimezone(c *Class, n *yaml.Node, path string) {
	c.Timezone = d.str(n, path)
	c.TimezonePos = d.pos(n)
	if msg := checkTimezone(c.Timezone); msg != "" {
		d.fail(n, path, "%s", msg)
	}
}

func (d *decoder) boot(n *yaml.Node, path string, b *Boot) {
	n = d.value(n, path)
	fs := d.fields(n, path, bootKeys, nil)
	b.Pos = d.pos(n)
	if f, ok := fs["mode"]; ok {
		b.Mode = d.oneOf(f.val, path+".mode", "auto", "uefi", "bios", "hybrid")
	}
	if f, ok := fs["table"]; ok {
		b.Table = d.oneOf(f.val, path+".table", "gpt", "mbr")
	}
	if f, ok := fs["uki"]; ok {
		b.UKI = d.boolean(f.val, path+".uki")
	}
	if f, ok := fs["chain"]; ok {
		b.Chain = d.oneOf(f.val, path+".chain", "", "shim")
	}
	if b.Mode == "bios" && (b.UKI || b.Chain != "") {
		d.fail(n, path, "mode bios boots through GRUB: uki and chain need UEFI (mode auto, uefi or hybrid)")
	}
	if b.UKI && b.Chain != "" {
		d.fail(n, path, "uki and chain: shim exclude each other (the signed GRUB boots a signed kernel)")
	}
}

func (d *decoder) oneOf(n *yaml.Node, path string, allowed ...string) string {
	s := d.str(n, path)
	if !slices.Contains(allowed, s) {
		q := make([]string, len(allowed))
		for i, a := range allowed {
			q[i] = fmt.Sprintf("%q", a)
		}
		d.fail(n, path, "want one of %s, got %q", strings.Join(q, ", "), s)
	}
	return s
}

// size reads a size: a string such as "4GiB" or a plain integer of bytes.
func (d *decoder) size(n *yaml.Node, path string) int64 {
	n = d.value(n, path)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		d.fail(n, path, "want a size such as 4GiB or 512MiB, got %s", describe(n))
	}
	v, msg := ParseSize(n.Value)
	if msg != nil {
		d.fail(n, path, "%v", msg)
	}
	return v
}

func roundMiB(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

func (d *decoder) mode(n *yaml.Node, path string) uint32 {
	n = d.value(n, path)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		d.fail(n, path, `want an octal mode such as "0644", got %s`, describe(n))
	}
	m, ok := parseMode(n.Value)
	if !ok {
		d.fail(n, path, `want an octal mode of 3 or 4 digits 0-7 such as "0644" or "0755", got %q`, n.Value)
	}
	return m
}

func (d *decoder) owner(n *yaml.Node, path string) Owner {
	s := d.str(n, path)
	o, msg := parseOwner(s)
	if msg != "" {
		d.fail(n, path, "%s", msg)
	}
	return o
}

func (d *decoder) fileEntry(n *yaml.Node, path string) FileEntry {
	fs := d.fields(n, path, fileEntryKeys, nil)
	e := FileEntry{Mode: DefaultFileMode, Owner: Owner{"0", "0"}, Pos: d.pos(n)}
	e.Path = d.imagePath(n, fs, path)
	c, hasC := fs["content"]
	s, hasS := fs["source"]
	switch {
	case hasC && hasS:
		d.fail(s.key, path, "both content and source: give exactly one (inline content or a local file)")
	case !hasC && !hasS:
		d.fail(n, path, "neither content nor source: give exactly one (inline content or a local file)")
	case hasC:
		e.Content = d.str(c.val, path+".content")
	default:
		e.Source = d.str(s.val, path+".source")
		if msg := checkLocalPath(e.Source); msg != "" {
			d.fail(s.val, path+".source", "%s", msg)
		}
		e.SourceAbs = d.abs(e.Source)
	}
	if m, ok := fs["mode"]; ok {
		e.Mode = d.mode(m.val, path+".mode")
	}
	if o, ok := fs["owner"]; ok {
		e.Owner = d.owner(o.val, path+".owner")
	}
	return e
}

// imagePath reads the path key of a file or directory: a path in the image.
func (d *decoder) imagePath(n *yaml.Node, fs map[string]field, path string) string {
	p, ok := fs["path"]
	if !ok {
		d.fail(n, path, "no path: want the absolute path in the image, e.g. path: /etc/motd")
	}
	s := d.str(p.val, path+".path")
	if msg := checkImagePath(s); msg != "" {
		d.fail(p.val, path+".path", "%s", msg)
	}
	return s
}

func (d *decoder) directory(n *yaml.Node, path string) Directory {
	fs := d.fields(n, path, dirKeys, nil)
	e := Directory{Mode: DefaultDirMode, Owner: Owner{"0", "0"}, Pos: d.pos(n)}
	e.Path = d.imagePath(n, fs, path)
	if m, ok := fs["mode"]; ok {
		e.Mode = d.mode(m.val, path+".mode")
	}
	if o, ok := fs["owner"]; ok {
		e.Owner = d.owner(o.val, path+".owner")
	}
	return e
}

const idWant = "a number from 1 to 4294967294, not 65535"

func (d *decoder) id(n *yaml.Node, path string) uint32 {
	v := d.integer(n, path, 0, 1<<32-2, idWant)
	if v == 0 {
		d.fail(n, path, "0 is root's: want %s", idWant)
	}
	if v == 65535 {
		d.fail(n, path, "65535 is -1 to 16-bit programs: want %s", idWant)
	}
	return uint32(v)
}

func (d *decoder) user(n *yaml.Node, path string) User {
	fs := d.fields(n, path, userKeys, func(k string) string {
		switch k {
		case "password", "passwd", "plain_password", "plaintext_password":
			return fmt.Sprintf("a plain password (%s) is never accepted: write password_hash with a crypt(3) hash (mkpasswd -m yescrypt, openssl passwd -6) or leave it out for a locked password", k)
		}
		return ""
	})
	u := User{Pos: d.pos(n), PasswordHash: "!"}
	nf, ok := fs["name"]
	if !ok {
		d.fail(n, path, "no name: want the user's login name")
	}
	u.Name = d.str(nf.val, path+".name")
	if msg := checkAccountName(u.Name); msg != "" {
		d.fail(nf.val, path+".name", "%s", msg)
	}
	uf, ok := fs["uid"]
	if !ok {
		d.fail(n, path, "no uid: want the user's numeric id (%s)", idWant)
	}
	u.UID = d.id(uf.val, path+".uid")
	if g, ok := fs["gid"]; ok {
		u.GID = d.id(g.val, path+".gid")
	} else {
		u.GID, u.PrimaryGroup = u.UID, u.Name
	}
	if g, ok := fs["groups"]; ok {
		var pos []Pos
		u.Groups, pos = d.strs(g.val, path+".groups", "group names", checkAccountName)
		seen := map[string]bool{}
		for i, name := range u.Groups {
			if seen[name] {
				d.failAt(pos[i], fmt.Sprintf("%s.groups[%d]", path, i), "duplicate group %q", name)
			}
			seen[name] = true
		}
	}
	u.Home = "/home/" + u.Name
	u.Shell = DefaultShell
	if s, ok := fs["shell"]; ok {
		u.Shell = d.str(s.val, path+".shell")
		if msg := checkAccountPath(u.Shell); msg != "" {
			d.fail(s.val, path+".shell", "%s", msg)
		}
	}
	if h, ok := fs["home"]; ok {
		u.Home = d.str(h.val, path+".home")
		if msg := checkAccountPath(u.Home); msg != "" {
			d.fail(h.val, path+".home", "%s", msg)
		}
	}
	if k, ok := fs["ssh_authorized_keys"]; ok {
		u.SSHAuthorizedKeys, _ = d.strs(k.val, path+".ssh_authorized_keys", "OpenSSH public keys", checkSSHKey)
	}
	if p, ok := fs["password_hash"]; ok {
		u.PasswordHash = d.str(p.val, path+".password_hash")
		if msg := checkPasswordHash(u.PasswordHash); msg != "" {
			d.fail(p.val, path+".password_hash", "%s", msg)
		}
	}
	return u
}

func (d *decoder) group(n *yaml.Node, path string) Group {
	fs := d.fields(n, path, groupKeys, nil)
	g := Group{Pos: d.pos(n)}
	nf, ok := fs["name"]
	if !ok {
		d.fail(n, path, "no name: want the group's name")
	}
	g.Name = d.str(nf.val, path+".name")
	if msg := checkAccountName(g.Name); msg != "" {
		d.fail(nf.val, path+".name", "%s", msg)
	}
	gf, ok := fs["gid"]
	if !ok {
		d.fail(n, path, "no gid: want the group's numeric id (%s)", idWant)
	}
	g.GID = d.id(gf.val, path+".gid")
	return g
}

func (d *decoder) units(n *yaml.Node, path string, u *Units) {
	fs := d.fields(n, path, unitsKeys, nil)
	read := func(key string) []Unit {
		f, ok := fs[key]
		if !ok {
			return nil
		}
		names, pos := d.strs(f.val, path+"."+key, "unit names", checkUnit)
		out := make([]Unit, len(names))
		for i := range names {
			out[i] = Unit{Name: names[i], Pos: pos[i]}
		}
		return out
	}
	u.Enable, u.Disable, u.Mask = read("enable"), read("disable"), read("mask")
	seen := map[string]string{}
	for _, l := range []struct {
		key   string
		units []Unit
	}{{"enable", u.Enable}, {"disable", u.Disable}, {"mask", u.Mask}} {
		for i, x := range l.units {
			if prev, dup := seen[x.Name]; dup {
				d.failAt(x.Pos, fmt.Sprintf("%s.%s[%d]", path, l.key, i), "%s is already in %s: a unit is enabled, disabled or masked, once", x.Name, prev)
			}
			seen[x.Name] = l.key
		}
	}
}

func (d *decoder) partition(n *yaml.Node, path string) Partition {
	fs := d.fields(n, path, partKeys, nil)
	p := Partition{Pos: d.pos(n), FS: "ext4"}
	if f, ok := fs["fs"]; ok {
		p.FS = d.oneOf(f.val, path+".fs", "ext4", "swap", "none")
	}
	m, hasMount := fs["mount"]
	switch {
	case p.FS == "ext4" && !hasMount:
		d.fail(n, path, "no mount: an ext4 partition wants a mount point such as /var (fs: none for a raw partition)")
	case p.FS != "ext4" && hasMount:
		d.fail(m.key, path, "fs %s is not mounted: leave mount out", p.FS)
	case hasMount:
		p.Mount = d.str(m.val, path+".mount")
		if msg := checkMount(p.Mount); msg != "" {
			d.fail(m.val, path+".mount", "%s", msg)
		}
	}
	sf, ok := fs["size"]
	if !ok {
		d.fail(n, path, "no size: want the partition's size, e.g. size: 2GiB")
	}
	p.Size = d.size(sf.val, path+".size")
	if p.Size < 1<<20 || p.Size > MaxDiskSize {
		d.fail(sf.val, path+".size", "want a size from 1MiB to %dTiB, got %s", MaxDiskSize>>40, sf.val.Value)
	}
	p.Size = roundMiB(p.Size)
	if f, ok := fs["label"]; ok {
		p.Label = d.str(f.val, path+".label")
		if msg := checkLabel(p.Label); msg != "" {
			d.fail(f.val, path+".label", "%s", msg)
		}
	}
	p.Type = defaultPartType(p.Mount, p.FS)
	if f, ok := fs["type"]; ok {
		names := slices.Sorted(maps.Keys(partitionTypes))
		p.Type = d.oneOf(f.val, path+".type", names...)
		if (p.Type == "swap") != (p.FS == "swap") {
			d.fail(f.val, path+".type", "type swap goes with fs: swap, and only with it")
		}
	}
	return p
}

func (d *decoder) output(n *yaml.Node, path string) Output {
	fs := d.fields(n, path, outputKeys, nil)
	o := Output{Pos: d.pos(n)}
	pf, ok := fs["path"]
	if !ok {
		d.fail(n, path, "no path: want the output file, e.g. path: out/{class}-{arch}.qcow2")
	}
	o.Path = d.str(pf.val, path+".path")
	if msg := checkOutputPath(o.Path); msg != "" {
		d.fail(pf.val, path+".path", "%s", msg)
	}
	if f, ok := fs["format"]; ok {
		o.Format = d.str(f.val, path+".format")
		if msg := checkFormat(o.Format); msg != "" {
			d.fail(f.val, path+".format", "%s", msg)
		}
	}
	if o.Path == "-" && o.Format == "" {
		d.fail(pf.val, path+".path", `"-" (standard output) needs a format`)
	}
	if f, ok := fs["compress"]; ok {
		o.Compress = d.str(f.val, path+".compress")
	}
	if msg := checkOutputFormat(o); msg != "" {
		at := pf.val
		if f, ok := fs["compress"]; ok {
			at = f.val
		} else if f, ok := fs["format"]; ok {
			at = f.val
		}
		d.fail(at, path, "%s", msg)
	}
	return o
}

func (d *decoder) publish(n *yaml.Node, path string) Publish {
	fs := d.fields(n, path, nil, func(k string) string {
		if isCredentialKey(k) {
			return fmt.Sprintf("%q looks like a credential, and credentials never go in a class file: imgfab push reads them from the environment and the cloud SDKs' own configuration", k)
		}
		return ""
	})
	p := Publish{Pos: d.pos(n), Params: map[string]string{}}
	tf, ok := fs["target"]
	if !ok {
		d.fail(n, path, "no target: want target: aws, gcp, azure or oci")
	}
	p.Target = d.oneOf(tf.val, path+".target", publishTargetNames()...)
	known := publishParams[p.Target]
	m := d.value(n, path)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i].Value
		if k == "target" {
			continue
		}
		f := fs[k]
		if !slices.Contains(known, k) {
			d.fail(f.key, path, "unknown key %q for target %s (known: target, %s)", k, p.Target, strings.Join(known, ", "))
		}
		v := d.value(f.val, path+"."+k)
		if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
			d.fail(v, path+"."+k, "want a string, number or boolean, got %s", describe(v))
		}
		if msg := checkParam(p.Target, k, v.Value); msg != "" {
			d.fail(v, path+"."+k, "%s", msg)
		}
		p.Params[k] = v.Value
	}
	for _, k := range publishRequired[p.Target] {
		if _, ok := p.Params[k]; !ok {
			d.fail(n, path, "no %s: target %s needs it", k, p.Target)
		}
	}
	return p
}
