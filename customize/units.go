package customize

import (
	"archive/tar"
	"fmt"
	"strings"
)

// unitDirs is the system unit search path, in Debian 12 systemd's order.
var unitDirs = []string{"etc/systemd/system", "usr/local/lib/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"}

const etcUnits = "etc/systemd/system"

// unitFile is a unit found in the search path.
type unitFile struct {
	name     string // as asked: "getty@tty1.service"
	file     string // the file's name: "getty@.service"
	linkTo   string // the absolute path links point to: "/lib/systemd/system/getty@.service"
	instance string
	install  map[string][]string // [Install] keys → values, in order
	hasInst  bool
}

func (b *builder) units(c Config) error {
	seen := map[string]Unit{}
	for _, l := range []struct {
		what  string
		units []Unit
	}{{"enable", c.Units.Enable}, {"disable", c.Units.Disable}, {"mask", c.Units.Mask}} {
		for _, u := range l.units {
			if err := checkUnitName(u); err != nil {
				return err
			}
			if o, ok := seen[u.Name]; ok {
				return errorf(u.Where, "unit %s (%s) is also listed at %s (%s)", u.Name, l.what, whereOr(o.Where), o.Name)
			}
			seen[u.Name] = Unit{Name: l.what, Where: u.Where}
		}
	}
	done := map[string]bool{}
	for _, u := range c.Units.Disable {
		if err := b.disable(u, u.Name, done, 0); err != nil {
			return err
		}
	}
	done = map[string]bool{}
	for _, u := range c.Units.Enable {
		if err := b.enable(u, u.Name, done, 0); err != nil {
			return err
		}
	}
	for _, u := range c.Units.Mask {
		if _, err := b.findUnit(u, u.Name); err != nil {
			return err
		}
		name, err := b.place(u.Where, etcUnits+"/"+u.Name)
		if err != nil {
			return err
		}
		if n, ok, err := b.lstat(name); err != nil {
			return errorf(u.Where, "mask %s: %v", u.Name, err)
		} else if ok && n.kind != kLink {
			return errorf(u.Where, "mask %s: /%s exists and is a %s (systemctl refuses too)", u.Name, name, n.kindName())
		} else if ok && n.link == "/dev/null" {
			continue
		}
		if err := b.put(&entry{name: name, typ: tar.TypeSymlink, link: "/dev/null", where: u.Where, what: "mask " + u.Name}); err != nil {
			return err
		}
		b.op(Op{Op: "mask", Path: "/" + name, Target: "/dev/null", Detail: u.Name, Where: u.Where})
	}
	return nil
}

func checkUnitName(u Unit) error {
	n := u.Name
	dot := strings.LastIndexByte(n, '.')
	if n == "" || len(n) > 255 || dot <= 0 || strings.ContainsAny(n, "/\x00 \t\n\\") || strings.HasPrefix(n, ".") {
		return errorf(u.Where, "unit name %q: want NAME.TYPE (e.g. ssh.service) without '/' or blanks", n)
	}
	switch n[dot+1:] {
	case "service", "socket", "target", "timer", "path", "mount", "automount", "swap", "slice", "scope", "device":
	default:
		return errorf(u.Where, "unit %s: unknown unit type %q", n, n[dot+1:])
	}
	return nil
}

// findUnit looks a unit (or, for an instance, its template) up in the search path.
func (b *builder) findUnit(u Unit, name string) (*unitFile, error) {
	cands := []string{name}
	tmpl, inst := "", ""
	if at := strings.IndexByte(name, '@'); at >= 0 {
		dot := strings.LastIndexByte(name, '.')
		if dot > at+1 {
			tmpl, inst = name[:at+1]+name[dot:], name[at+1:dot]
			cands = append(cands, tmpl)
		}
	}
	var looked []string
	for _, cand := range cands {
		for _, d := range unitDirs {
			dir, miss, err := b.resolve(d, true)
			if err != nil {
				return nil, errorf(u.Where, "unit %s: /%s: %v", name, d, err)
			}
			if len(miss) > 0 {
				continue
			}
			n, ok, err := b.lstat(dir + "/" + cand)
			if err != nil {
				return nil, errorf(u.Where, "unit %s: %v", name, err)
			}
			if !ok {
				continue
			}
			if n.kind == kLink && n.link == "/dev/null" {
				return nil, errorf(u.Where, "unit %s is masked (/%s/%s → /dev/null)", name, d, cand)
			}
			data, _, ok, err := b.readFile(dir + "/" + cand)
			if err != nil {
				return nil, errorf(u.Where, "unit %s: /%s/%s: %v", name, d, cand, err)
			}
			if !ok {
				return nil, errorf(u.Where, "unit %s: /%s/%s is a dangling symlink", name, d, cand)
			}
			f := &unitFile{name: name, file: cand, linkTo: "/" + d + "/" + cand}
			if cand == tmpl {
				f.instance = inst
			}
			if f.install, f.hasInst, err = parseInstall(data); err != nil {
				return nil, errorf(u.Where, "unit %s: /%s/%s: %v", name, d, cand, err)
			}
			return f, nil
		}
	}
	for _, d := range unitDirs {
		looked = append(looked, "/"+d)
	}
	return nil, errorf(u.Where, "unit %s is not in the image (looked in %s)", name, strings.Join(looked, ", "))
}

// parseInstall reads the [Install] section of a unit file: comments (# ;), backslash
// continuations, and an empty assignment resetting the list.
func parseInstall(data []byte) (map[string][]string, bool, error) {
	out := map[string][]string{}
	section, has := "", false
	var cont string
	for i, l := range splitLines(data) {
		l = strings.TrimRight(l, " \t\r")
		if cont != "" {
			l = cont + " " + strings.TrimLeft(l, " \t")
			cont = ""
		} else {
			t := strings.TrimLeft(l, " \t")
			if t == "" || t[0] == '#' || t[0] == ';' {
				continue
			}
			l = t
		}
		if strings.HasSuffix(l, `\`) {
			cont = strings.TrimSuffix(l, `\`)
			continue
		}
		if strings.HasPrefix(l, "[") {
			if !strings.HasSuffix(l, "]") {
				return nil, false, fmt.Errorf("line %d: bad section header %q", i+1, l)
			}
			section = l[1 : len(l)-1]
			if section == "Install" {
				has = true
			}
			continue
		}
		if section != "Install" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, false, fmt.Errorf("line %d: no '=' in %q", i+1, l)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if v == "" {
			delete(out, k)
			continue
		}
		out[k] = append(out[k], strings.Fields(v)...)
	}
	return out, has, nil
}

// spec expands the specifiers systemctl expands in [Install] values.
func (f *unitFile) spec(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	name := f.name
	dot := strings.LastIndexByte(name, '.')
	prefix := name[:dot]
	if at := strings.IndexByte(name, '@'); at >= 0 {
		prefix = name[:at]
	}
	var s strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			s.WriteByte(v[i])
			continue
		}
		if i++; i == len(v) {
			return "", fmt.Errorf("%q ends with a lone %%", v)
		}
		switch v[i] {
		case 'i', 'I':
			s.WriteString(f.instance)
		case 'n':
			s.WriteString(name)
		case 'N':
			s.WriteString(name[:dot])
		case 'p', 'P':
			s.WriteString(prefix)
		case '%':
			s.WriteByte('%')
		default:
			return "", fmt.Errorf("specifier %%%c in %q is not supported offline", v[i], v)
		}
	}
	return s.String(), nil
}

// visitUnit is the first step of enable and disable, which follow Also= (depth: how many Also=
// led here): it marks name done and finds its unit file; nil and no error when name was done
// already (a unit named twice, or an Also= cycle), an error past 16 levels of Also=.
func (b *builder) visitUnit(u Unit, name string, done map[string]bool, depth int) (*unitFile, error) {
	if done[name] {
		return nil, nil
	}
	done[name] = true
	if depth > 16 {
		return nil, errorf(u.Where, "unit %s: Also= chain deeper than 16", name)
	}
	return b.findUnit(u, name)
}

// enable links a unit (and its Also= units) into /etc/systemd/system as its [Install] section says.
func (b *builder) enable(u Unit, name string, done map[string]bool, depth int) error {
	f, err := b.visitUnit(u, name, done, depth)
	if f == nil || err != nil {
		return err
	}
	if err := f.defaultInstance(u, name); err != nil {
		return err
	}
	wanted, required, alias, also := f.install["WantedBy"], f.install["RequiredBy"], f.install["Alias"], f.install["Also"]
	if !f.hasInst || len(wanted)+len(required)+len(alias)+len(also) == 0 {
		return errorf(u.Where, "unit %s has no installation config (no WantedBy=, RequiredBy=, Alias= or Also= in [Install]): it is not meant to be enabled", name)
	}
	links, err := f.installLinks(u, name)
	if err != nil {
		return err
	}
	if err := b.enableLinks(u, name, f, links); err != nil {
		return err
	}
	for _, a := range also {
		a, err := f.spec(a)
		if err != nil {
			return errorf(u.Where, "unit %s: %v", name, err)
		}
		if err := checkUnitName(Unit{Name: a, Where: u.Where}); err != nil {
			return err
		}
		if err := b.enable(Unit{Name: a, Where: u.Where}, a, done, depth+1); err != nil {
			return fmt.Errorf("%w (from Also= of %s)", err, name)
		}
	}
	return nil
}

// defaultInstance names a template by its DefaultInstance=, or refuses a template that has none but is wanted.
func (f *unitFile) defaultInstance(u Unit, name string) error {
	if f.instance != "" || !strings.Contains(f.file, "@.") {
		return nil
	}
	if di := f.install["DefaultInstance"]; len(di) > 0 {
		f.instance = di[len(di)-1]
		f.name = strings.Replace(f.file, "@.", "@"+f.instance+".", 1)
	} else if len(f.install["WantedBy"])+len(f.install["RequiredBy"]) > 0 {
		return errorf(u.Where, "unit %s is a template without DefaultInstance=: name an instance (e.g. %s)", name, strings.Replace(f.file, "@.", "@NAME.", 1))
	}
	return nil
}

// installLinks lists the links WantedBy=, RequiredBy= and Alias= ask for: name (relative to /etc/systemd/system) → target.
func (f *unitFile) installLinks(u Unit, name string) ([][2]string, error) {
	var links [][2]string
	for _, l := range []struct {
		vals []string
		sfx  string
	}{{f.install["WantedBy"], ".wants"}, {f.install["RequiredBy"], ".requires"}} {
		for _, t := range l.vals {
			t, err := f.spec(t)
			if err != nil {
				return nil, errorf(u.Where, "unit %s: %v", name, err)
			}
			if err := checkUnitName(Unit{Name: t, Where: u.Where}); err != nil {
				return nil, err
			}
			links = append(links, [2]string{t + l.sfx + "/" + f.name, f.linkTo})
		}
	}
	for _, a := range f.install["Alias"] {
		a, err := f.spec(a)
		if err != nil {
			return nil, errorf(u.Where, "unit %s: %v", name, err)
		}
		if err := checkUnitName(Unit{Name: a, Where: u.Where}); err != nil {
			return nil, err
		}
		links = append(links, [2]string{a, f.linkTo})
	}
	return links, nil
}

// enableLinks puts the links in /etc/systemd/system, leaving those already there.
func (b *builder) enableLinks(u Unit, name string, f *unitFile, links [][2]string) error {
	for _, l := range links {
		p, err := b.place(u.Where, etcUnits+"/"+l[0])
		if err != nil {
			return err
		}
		n, ok, err := b.lstat(p)
		if err != nil {
			return errorf(u.Where, "enable %s: %v", name, err)
		}
		if ok && n.kind == kLink && n.link == l[1] {
			continue // already enabled
		}
		if ok && n.kind != kLink {
			return errorf(u.Where, "enable %s: /%s exists and is a %s", name, p, n.kindName())
		}
		if err := b.put(&entry{name: p, typ: tar.TypeSymlink, link: l[1], where: u.Where, what: "enable " + name}); err != nil {
			return err
		}
		b.op(Op{Op: "enable", Path: "/" + p, Target: l[1], Detail: f.name, Where: u.Where})
	}
	return nil
}

// disable removes the links to a unit (and, as systemctl does, to its Also= units) from
// /etc/systemd/system and its .wants/.requires directories: whiteouts in the layer.
func (b *builder) disable(u Unit, name string, done map[string]bool, depth int) error {
	f, err := b.visitUnit(u, name, done, depth)
	if f == nil || err != nil {
		return err
	}
	etc, miss, err := b.resolve(etcUnits, true)
	if err != nil {
		return errorf(u.Where, "disable %s: /%s: %v", name, etcUnits, err)
	}
	if len(miss) == 0 {
		names := map[string]bool{name: true}
		for _, a := range f.install["Alias"] {
			if a, err := f.spec(a); err == nil {
				names[a] = true
			}
		}
		matches := func(link, target string) bool {
			if target == "/dev/null" {
				return false // a mask: disable leaves it
			}
			if names[link] || baseName(target) == name {
				return true
			}
			// an instance of a disabled template
			return f.instance == "" && baseName(target) == f.file && strings.Contains(f.file, "@.")
		}
		if err := b.unlinkIn(u, etc, matches, name); err != nil {
			return err
		}
		ents, err := b.readDir(etc)
		if err != nil {
			return errorf(u.Where, "disable %s: listing /%s: %v", name, etc, err)
		}
		for _, de := range ents {
			if de.IsDir() && (strings.HasSuffix(de.Name(), ".wants") || strings.HasSuffix(de.Name(), ".requires") || strings.HasSuffix(de.Name(), ".upholds")) {
				if err := b.unlinkIn(u, etc+"/"+de.Name(), matches, name); err != nil {
					return err
				}
			}
		}
	}
	for _, a := range f.install["Also"] {
		a, err := f.spec(a)
		if err != nil {
			return errorf(u.Where, "unit %s: %v", name, err)
		}
		if err := b.disable(Unit{Name: a, Where: u.Where}, a, done, depth+1); err != nil {
			return fmt.Errorf("%w (from Also= of %s)", err, name)
		}
	}
	return nil
}

func baseName(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

func (b *builder) unlinkIn(u Unit, dir string, matches func(link, target string) bool, name string) error {
	ents, err := b.readDir(dir)
	if err != nil {
		return errorf(u.Where, "disable %s: listing /%s: %v", name, dir, err)
	}
	for _, de := range ents {
		p := dir + "/" + de.Name()
		n, ok, err := b.lstat(p)
		if err != nil {
			return errorf(u.Where, "disable %s: %v", name, err)
		}
		if !ok || n.kind != kLink || !matches(de.Name(), n.link) {
			continue
		}
		if err := b.put(&entry{name: p, typ: typeWhiteout, where: u.Where, what: "disable " + name}); err != nil {
			return err
		}
		b.op(Op{Op: "disable", Path: "/" + p, Target: n.link, Detail: name, Where: u.Where})
	}
	return nil
}
