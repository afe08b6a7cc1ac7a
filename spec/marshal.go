package spec

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// canonicalVersion is in every Canonical form, so that a change of the form changes every id.
const canonicalVersion = 1

// Canonical returns the class as compact JSON with sorted keys and every default filled (the
// platform, boot mode and table, ESP size, modes, owners, shells, homes, partition types,
// output formats), paths as written (not resolved, not read: the contents of layers, sources and
// secure_boot's files are hashed by the build's output cache), positions left out. Two files
// that mean the same class give the same bytes whatever their key order, comments, quoting or
// size spelling ("4GiB" or "4096MiB"); its sha256 is the class's id and cache key. Sections
// added after version 1 of the form (first_boot, rootfs and verity, secure_boot) enter it only
// when they are not the default, so that the ids of classes without them stay as they were.
func (c *Class) Canonical() []byte {
	m := map[string]any{
		"imgfab_class":      canonicalVersion,
		"name":              c.Name,
		"from":              c.From,
		"platforms":         mapSlice(c.Platforms, Platform.String),
		"layers":            mapSlice(c.Layers, func(l Layer) string { return l.Path }),
		"kernel":            map[string]any{"cmdline": c.Kernel.Cmdline},
		"boot":              c.Boot.canonical(),
		"disk":              map[string]any{"size": c.Disk.Size},
		"esp_size":          c.espSize(),
		"source_date_epoch": c.SourceDateEpoch,
		"no_journal":        c.NoJournal,
		"files":             mapSlice(c.Files, FileEntry.canonical),
		"directories":       mapSlice(c.Directories, Directory.canonical),
		"users":             mapSlice(c.Users, User.canonical),
		"groups":            mapSlice(c.Groups, Group.canonical),
		"hostname":          c.Hostname,
		"timezone":          c.Timezone,
		"units":             c.Units.canonical(),
		"partitions":        mapSlice(c.Partitions, Partition.canonical),
		"outputs":           mapSlice(c.Outputs, Output.canonical),
		"publish":           mapSlice(c.Publish, Publish.canonical),
	}
	if fb := c.FirstBoot.canonical(); fb != nil {
		m["first_boot"] = fb
	}
	// The read-only root and signing enter only when asked for, so that a class without them
	// keeps its id: rootfs and verity for an erofs root (verity needs one), secure_boot when given.
	if c.RootFS == "erofs" {
		m["rootfs"] = c.RootFS
		m["verity"] = c.Verity
	}
	if sb := c.SecureBoot; sb != nil {
		m["secure_boot"] = map[string]any{"key": sb.Key, "cert": sb.Cert, "enroll": sb.Enroll}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		panic("spec: canonical form: " + err.Error()) // only strings, numbers and bools
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// mapSlice is fn of each element of l, never nil (an empty list is [] in the canonical form).
func mapSlice[T, V any](l []T, fn func(T) V) []V {
	out := make([]V, len(l))
	for i, v := range l {
		out[i] = fn(v)
	}
	return out
}

// nonNil is l, or an empty list for nil (an empty list is [] in the canonical form).
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// canonical is the boot section with the mode ("auto") and table ("gpt") defaults filled.
func (b Boot) canonical() map[string]any {
	if b.Mode == "" {
		b.Mode = "auto"
	}
	if b.Table == "" {
		b.Table = "gpt"
	}
	return map[string]any{"mode": b.Mode, "table": b.Table, "uki": b.UKI, "chain": b.Chain}
}

// espSize is the ESP's size, DefaultESPSize when not given.
func (c *Class) espSize() int64 {
	if c.ESPSize == 0 {
		return DefaultESPSize
	}
	return c.ESPSize
}

// canonical is the file entry with its mode and owner filled, and its source or its content.
func (f FileEntry) canonical() map[string]any {
	m := map[string]any{"path": f.Path, "mode": formatMode(f.Mode), "owner": f.Owner.String()}
	if f.Source != "" {
		m["source"] = f.Source
	} else {
		m["content"] = f.Content
	}
	return m
}

// canonical is the directory with its mode and owner filled.
func (d Directory) canonical() map[string]any {
	return map[string]any{"path": d.Path, "mode": formatMode(d.Mode), "owner": d.Owner.String()}
}

// canonical is the user with every field, lists never null.
func (u User) canonical() map[string]any {
	return map[string]any{
		"name": u.Name, "uid": u.UID, "gid": u.GID, "primary_group": u.PrimaryGroup,
		"groups": nonNil(u.Groups), "shell": u.Shell, "home": u.Home,
		"ssh_authorized_keys": nonNil(u.SSHAuthorizedKeys), "password_hash": u.PasswordHash,
	}
}

// canonical is the group's name and gid.
func (g Group) canonical() map[string]any { return map[string]any{"name": g.Name, "gid": g.GID} }

// canonical is the three unit lists as lists of names.
func (u Units) canonical() map[string]any {
	return map[string]any{"enable": unitNames(u.Enable), "disable": unitNames(u.Disable), "mask": unitNames(u.Mask)}
}

// canonical is the partition, every field (Parse filled fs and type).
func (p Partition) canonical() map[string]any {
	return map[string]any{"mount": p.Mount, "size": p.Size, "fs": p.FS, "label": p.Label, "type": p.Type}
}

// canonical is the output with its format filled (from the path's extension when not given).
func (o Output) canonical() map[string]any {
	format, _ := outputFormat(o)
	return map[string]any{"path": o.Path, "format": format, "compress": o.Compress}
}

// canonical is the publish target and its parameters.
func (p Publish) canonical() map[string]any {
	return map[string]any{"target": p.Target, "params": p.Params}
}

// Marshal returns f as a class file; see [File.YAML].
func Marshal(f *File) ([]byte, error) { return f.YAML(), nil }

// YAML returns f as a class file: keys in the order of docs/CLASSFILE.md, defaults left out,
// paths as written. Parse(f.Name, f.YAML()) gives f back, positions apart.
func (f *File) YAML() []byte {
	classes := mapping()
	for _, c := range f.Classes {
		add(classes, c.Name, c.yamlNode())
	}
	root := mapping()
	add(root, "classes", classes)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		panic("spec: YAML: " + err.Error()) // a tree of plain scalars
	}
	enc.Close()
	return b.Bytes()
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func flow(n *yaml.Node) *yaml.Node { n.Style = yaml.FlowStyle; return n }

func add(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, scalar("!!str", key), v)
}

func scalar(tag, v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v} }
func strNode(s string) *yaml.Node     { return scalar("!!str", s) }
func intNode[T int64 | uint32](v T) *yaml.Node {
	return scalar("!!int", strconv.FormatInt(int64(v), 10))
}
func boolNode(b bool) *yaml.Node { return scalar("!!bool", strconv.FormatBool(b)) }

func strList(l []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	for _, s := range l {
		n.Content = append(n.Content, strNode(s))
	}
	return n
}

// unitNames is the units' names.
func unitNames(l []Unit) []string { return mapSlice(l, func(u Unit) string { return u.Name }) }

func unitList(l []Unit) *yaml.Node { return strList(unitNames(l)) }

// yamlNode is the class's mapping: its sections in the order of docs/CLASSFILE.md, defaults left out.
func (c *Class) yamlNode() *yaml.Node {
	m := mapping()
	for _, s := range []struct {
		key  string
		node *yaml.Node // nil: not given or the default, left out
	}{
		{"from", strNode(c.From)},
		{"platforms", c.platformsYAML()},
		{"layers", seq(c.Layers, func(l Layer) *yaml.Node { return strNode(l.Path) })},
		{"kernel", c.Kernel.yamlNode()},
		{"boot", c.Boot.yamlNode()},
		{"disk", c.Disk.yamlNode()},
		{"esp_size", optSize(c.ESPSize)},
		{"source_date_epoch", optInt(c.SourceDateEpoch)},
		{"no_journal", optTrue(c.NoJournal)},
		{"rootfs", optStr(c.RootFS)},
		{"verity", optTrue(c.Verity)},
		{"secure_boot", c.SecureBoot.yamlNode()},
		{"first_boot", c.FirstBoot.yamlNode()},
		{"files", seq(c.Files, FileEntry.yamlNode)},
		{"directories", seq(c.Directories, Directory.yamlNode)},
		{"users", seq(c.Users, User.yamlNode)},
		{"groups", seq(c.Groups, Group.yamlNode)},
		{"hostname", optStr(c.Hostname)},
		{"timezone", optStr(c.Timezone)},
		{"units", c.Units.yamlNode()},
		{"partitions", seq(c.Partitions, Partition.yamlNode)},
		{"outputs", seq(c.Outputs, Output.yamlNode)},
		{"publish", seq(c.Publish, Publish.yamlNode)},
	} {
		if s.node != nil {
			add(m, s.key, s.node)
		}
	}
	return m
}

// seq is a sequence of item of each element of l; nil for an empty l.
func seq[T any](l []T, item func(T) *yaml.Node) *yaml.Node {
	if len(l) == 0 {
		return nil
	}
	n := &yaml.Node{Kind: yaml.SequenceNode}
	for _, v := range l {
		n.Content = append(n.Content, item(v))
	}
	return n
}

// optStr is s as a string node; nil for "".
func optStr(s string) *yaml.Node {
	if s == "" {
		return nil
	}
	return strNode(s)
}

// optSize is a size as a string node ("4GiB"); nil for 0.
func optSize(n int64) *yaml.Node {
	if n == 0 {
		return nil
	}
	return strNode(formatSize(n))
}

// optInt is *v as an int node; nil for nil.
func optInt(v *int64) *yaml.Node {
	if v == nil {
		return nil
	}
	return intNode(*v)
}

// optTrue is true as a bool node; nil for false.
func optTrue(b bool) *yaml.Node {
	if !b {
		return nil
	}
	return boolNode(true)
}

// platformsYAML is the platforms as a flow list; nil for the default [linux/amd64].
func (c *Class) platformsYAML() *yaml.Node {
	if len(c.Platforms) == 1 && c.Platforms[0].String() == DefaultPlatform {
		return nil
	}
	return flow(strList(mapSlice(c.Platforms, Platform.String)))
}

// yamlNode is the kernel section; nil with no cmdline.
func (k Kernel) yamlNode() *yaml.Node {
	if k.Cmdline == "" {
		return nil
	}
	n := mapping()
	add(n, "cmdline", strNode(k.Cmdline))
	return n
}

// canonical is the first_boot section; nil (left out of the canonical form, so that a class
// without one keeps its id) when it is the default.
func (f FirstBoot) canonical() any {
	if !f.NoGrow && len(f.Keep) == 0 {
		return nil
	}
	keep := slices.Clone(f.Keep)
	slices.Sort(keep)
	return map[string]any{"grow": !f.NoGrow, "keep": slices.Compact(keep)}
}

// yamlNode is the first_boot section's given keys; nil with none.
func (f FirstBoot) yamlNode() *yaml.Node {
	if !f.NoGrow && len(f.Keep) == 0 {
		return nil
	}
	n := mapping()
	if f.NoGrow {
		add(n, "grow", boolNode(false))
	}
	if len(f.Keep) > 0 {
		k := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range f.Keep {
			k.Content = append(k.Content, strNode(s))
		}
		add(n, "keep", k)
	}
	return n
}

// yamlNode is the boot section's given keys; nil with none.
func (b Boot) yamlNode() *yaml.Node {
	if b.Mode == "" && b.Table == "" && !b.UKI && b.Chain == "" {
		return nil
	}
	n := mapping()
	if b.Mode != "" {
		add(n, "mode", strNode(b.Mode))
	}
	if b.Table != "" {
		add(n, "table", strNode(b.Table))
	}
	if b.UKI {
		add(n, "uki", boolNode(true))
	}
	if b.Chain != "" {
		add(n, "chain", strNode(b.Chain))
	}
	return n
}

// yamlNode is the secure_boot section in flow style: key, cert and enroll, each when given (a
// parsed class has key and cert); nil for nil.
func (s *SecureBoot) yamlNode() *yaml.Node {
	if s == nil {
		return nil
	}
	n := mapping()
	for _, kv := range [][2]string{{"key", s.Key}, {"cert", s.Cert}, {"enroll", s.Enroll}} {
		if kv[1] != "" {
			add(n, kv[0], strNode(kv[1]))
		}
	}
	return flow(n)
}

// yamlNode is the disk section; nil with no size.
func (d Disk) yamlNode() *yaml.Node {
	if d.Size == 0 {
		return nil
	}
	n := mapping()
	add(n, "size", strNode(formatSize(d.Size)))
	return n
}

// yamlNode is the file entry: path, source or content, and mode and owner unless the defaults.
func (f FileEntry) yamlNode() *yaml.Node {
	n := mapping()
	add(n, "path", strNode(f.Path))
	if f.Source != "" {
		add(n, "source", strNode(f.Source))
	} else {
		add(n, "content", strNode(f.Content))
	}
	if f.Mode != DefaultFileMode {
		add(n, "mode", strNode(formatMode(f.Mode)))
	}
	if f.Owner != (Owner{"0", "0"}) {
		add(n, "owner", strNode(f.Owner.String()))
	}
	return n
}

// yamlNode is the directory in flow style: path, and mode and owner unless the defaults.
func (d Directory) yamlNode() *yaml.Node {
	n := mapping()
	add(n, "path", strNode(d.Path))
	if d.Mode != DefaultDirMode {
		add(n, "mode", strNode(formatMode(d.Mode)))
	}
	if d.Owner != (Owner{"0", "0"}) {
		add(n, "owner", strNode(d.Owner.String()))
	}
	return flow(n)
}

// yamlNode is the user: name, uid, and the other keys unless the defaults.
func (u User) yamlNode() *yaml.Node {
	n := mapping()
	add(n, "name", strNode(u.Name))
	add(n, "uid", intNode(u.UID))
	if u.PrimaryGroup == "" {
		add(n, "gid", intNode(u.GID))
	}
	if u.Groups != nil {
		add(n, "groups", flow(strList(u.Groups)))
	}
	if u.Shell != DefaultShell {
		add(n, "shell", strNode(u.Shell))
	}
	if u.Home != "/home/"+u.Name {
		add(n, "home", strNode(u.Home))
	}
	if u.SSHAuthorizedKeys != nil {
		add(n, "ssh_authorized_keys", strList(u.SSHAuthorizedKeys))
	}
	if u.PasswordHash != "!" {
		add(n, "password_hash", strNode(u.PasswordHash))
	}
	return n
}

// yamlNode is the group in flow style: name and gid.
func (g Group) yamlNode() *yaml.Node {
	n := mapping()
	add(n, "name", strNode(g.Name))
	add(n, "gid", intNode(g.GID))
	return flow(n)
}

// yamlNode is the units section with the lists given (even empty); nil with none.
func (u Units) yamlNode() *yaml.Node {
	if u.Enable == nil && u.Disable == nil && u.Mask == nil {
		return nil
	}
	n := mapping()
	for _, kv := range []struct {
		k string
		l []Unit
	}{{"enable", u.Enable}, {"disable", u.Disable}, {"mask", u.Mask}} {
		if kv.l != nil {
			add(n, kv.k, flow(unitList(kv.l)))
		}
	}
	return n
}

// yamlNode is the partition in flow style: size, and the other keys unless the defaults.
func (p Partition) yamlNode() *yaml.Node {
	n := mapping()
	if p.Mount != "" {
		add(n, "mount", strNode(p.Mount))
	}
	add(n, "size", strNode(formatSize(p.Size)))
	if p.FS != "ext4" {
		add(n, "fs", strNode(p.FS))
	}
	if p.Label != "" {
		add(n, "label", strNode(p.Label))
	}
	if p.Type != defaultPartType(p.Mount, p.FS) {
		add(n, "type", strNode(p.Type))
	}
	return flow(n)
}

// yamlNode is the output in flow style: path, and format and compress when given.
func (o Output) yamlNode() *yaml.Node {
	n := mapping()
	add(n, "path", strNode(o.Path))
	if o.Format != "" {
		add(n, "format", strNode(o.Format))
	}
	if o.Compress != "" {
		add(n, "compress", strNode(o.Compress))
	}
	return flow(n)
}

// yamlNode is the publish target in flow style: target, then the parameters sorted, typed as the target reads them.
func (p Publish) yamlNode() *yaml.Node {
	n := mapping()
	add(n, "target", strNode(p.Target))
	for _, k := range slices.Sorted(maps.Keys(p.Params)) {
		v := strNode(p.Params[k])
		switch {
		case slices.Contains(boolParams, k):
			v.Tag = "!!bool"
		case slices.Contains(intParams, k):
			v.Tag = "!!int"
		}
		add(n, k, v)
	}
	return flow(n)
}
