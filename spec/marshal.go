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
// output formats), paths as written (not resolved), positions left out. Two files that mean
// the same class give the same bytes whatever their key order, comments, quoting or size
// spelling ("4GiB" or "4096MiB"); its sha256 is the class's id and cache key.
func (c *Class) Canonical() []byte {
	str := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	platforms := make([]string, len(c.Platforms))
	for i, p := range c.Platforms {
		platforms[i] = p.String()
	}
	layers := make([]string, len(c.Layers))
	for i, l := range c.Layers {
		layers[i] = l.Path
	}
	files := make([]map[string]any, len(c.Files))
	for i, f := range c.Files {
		m := map[string]any{"path": f.Path, "mode": formatMode(f.Mode), "owner": f.Owner.String()}
		if f.Source != "" {
			m["source"] = f.Source
		} else {
			m["content"] = f.Content
		}
		files[i] = m
	}
	dirs := make([]map[string]any, len(c.Directories))
	for i, d := range c.Directories {
		dirs[i] = map[string]any{"path": d.Path, "mode": formatMode(d.Mode), "owner": d.Owner.String()}
	}
	users := make([]map[string]any, len(c.Users))
	for i, u := range c.Users {
		users[i] = map[string]any{
			"name": u.Name, "uid": u.UID, "gid": u.GID, "primary_group": u.PrimaryGroup,
			"groups": str(u.Groups), "shell": u.Shell, "home": u.Home,
			"ssh_authorized_keys": str(u.SSHAuthorizedKeys), "password_hash": u.PasswordHash,
		}
	}
	groups := make([]map[string]any, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = map[string]any{"name": g.Name, "gid": g.GID}
	}
	units := func(l []Unit) []string {
		out := make([]string, len(l))
		for i, u := range l {
			out[i] = u.Name
		}
		return out
	}
	parts := make([]map[string]any, len(c.Partitions))
	for i, p := range c.Partitions {
		parts[i] = map[string]any{"mount": p.Mount, "size": p.Size, "fs": p.FS, "label": p.Label, "type": p.Type}
	}
	outputs := make([]map[string]any, len(c.Outputs))
	for i, o := range c.Outputs {
		format, _ := outputFormat(o)
		outputs[i] = map[string]any{"path": o.Path, "format": format, "compress": o.Compress}
	}
	publish := make([]map[string]any, len(c.Publish))
	for i, p := range c.Publish {
		publish[i] = map[string]any{"target": p.Target, "params": p.Params}
	}
	boot := c.Boot
	if boot.Mode == "" {
		boot.Mode = "auto"
	}
	if boot.Table == "" {
		boot.Table = "gpt"
	}
	esp := c.ESPSize
	if esp == 0 {
		esp = DefaultESPSize
	}
	m := map[string]any{
		"imgfab_class":      canonicalVersion,
		"name":              c.Name,
		"from":              c.From,
		"platforms":         platforms,
		"layers":            layers,
		"kernel":            map[string]any{"cmdline": c.Kernel.Cmdline},
		"boot":              map[string]any{"mode": boot.Mode, "table": boot.Table, "uki": boot.UKI, "chain": boot.Chain},
		"disk":              map[string]any{"size": c.Disk.Size},
		"esp_size":          esp,
		"source_date_epoch": c.SourceDateEpoch,
		"no_journal":        c.NoJournal,
		"files":             files,
		"directories":       dirs,
		"users":             users,
		"groups":            groups,
		"hostname":          c.Hostname,
		"timezone":          c.Timezone,
		"units":             map[string]any{"enable": units(c.Units.Enable), "disable": units(c.Units.Disable), "mask": units(c.Units.Mask)},
		"partitions":        parts,
		"outputs":           outputs,
		"publish":           publish,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		panic("spec: canonical form: " + err.Error()) // only strings, numbers and bools
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
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

func unitList(l []Unit) *yaml.Node {
	names := make([]string, len(l))
	for i, u := range l {
		names[i] = u.Name
	}
	return strList(names)
}

func (c *Class) yamlNode() *yaml.Node {
	m := mapping()
	add(m, "from", strNode(c.From))
	if !(len(c.Platforms) == 1 && c.Platforms[0].String() == DefaultPlatform) {
		ps := make([]string, len(c.Platforms))
		for i, p := range c.Platforms {
			ps[i] = p.String()
		}
		add(m, "platforms", flow(strList(ps)))
	}
	if len(c.Layers) > 0 {
		ls := make([]string, len(c.Layers))
		for i, l := range c.Layers {
			ls[i] = l.Path
		}
		add(m, "layers", strList(ls))
	}
	if c.Kernel.Cmdline != "" {
		k := mapping()
		add(k, "cmdline", strNode(c.Kernel.Cmdline))
		add(m, "kernel", k)
	}
	if b := c.Boot; b.Mode != "" || b.Table != "" || b.UKI || b.Chain != "" {
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
		add(m, "boot", n)
	}
	if c.Disk.Size != 0 {
		n := mapping()
		add(n, "size", strNode(formatSize(c.Disk.Size)))
		add(m, "disk", n)
	}
	if c.ESPSize != 0 {
		add(m, "esp_size", strNode(formatSize(c.ESPSize)))
	}
	if c.SourceDateEpoch != nil {
		add(m, "source_date_epoch", intNode(*c.SourceDateEpoch))
	}
	if c.NoJournal {
		add(m, "no_journal", boolNode(true))
	}
	if len(c.Files) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, f := range c.Files {
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
			l.Content = append(l.Content, n)
		}
		add(m, "files", l)
	}
	if len(c.Directories) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, d := range c.Directories {
			n := mapping()
			add(n, "path", strNode(d.Path))
			if d.Mode != DefaultDirMode {
				add(n, "mode", strNode(formatMode(d.Mode)))
			}
			if d.Owner != (Owner{"0", "0"}) {
				add(n, "owner", strNode(d.Owner.String()))
			}
			l.Content = append(l.Content, flow(n))
		}
		add(m, "directories", l)
	}
	if len(c.Users) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, u := range c.Users {
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
			l.Content = append(l.Content, n)
		}
		add(m, "users", l)
	}
	if len(c.Groups) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, g := range c.Groups {
			n := mapping()
			add(n, "name", strNode(g.Name))
			add(n, "gid", intNode(g.GID))
			l.Content = append(l.Content, flow(n))
		}
		add(m, "groups", l)
	}
	if c.Hostname != "" {
		add(m, "hostname", strNode(c.Hostname))
	}
	if c.Timezone != "" {
		add(m, "timezone", strNode(c.Timezone))
	}
	if u := c.Units; u.Enable != nil || u.Disable != nil || u.Mask != nil {
		n := mapping()
		for _, kv := range []struct {
			k string
			l []Unit
		}{{"enable", u.Enable}, {"disable", u.Disable}, {"mask", u.Mask}} {
			if kv.l != nil {
				add(n, kv.k, flow(unitList(kv.l)))
			}
		}
		add(m, "units", n)
	}
	if len(c.Partitions) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, p := range c.Partitions {
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
			l.Content = append(l.Content, flow(n))
		}
		add(m, "partitions", l)
	}
	if len(c.Outputs) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, o := range c.Outputs {
			n := mapping()
			add(n, "path", strNode(o.Path))
			if o.Format != "" {
				add(n, "format", strNode(o.Format))
			}
			if o.Compress != "" {
				add(n, "compress", strNode(o.Compress))
			}
			l.Content = append(l.Content, flow(n))
		}
		add(m, "outputs", l)
	}
	if len(c.Publish) > 0 {
		l := &yaml.Node{Kind: yaml.SequenceNode}
		for _, p := range c.Publish {
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
			l.Content = append(l.Content, flow(n))
		}
		add(m, "publish", l)
	}
	return m
}
