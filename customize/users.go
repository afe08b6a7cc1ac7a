package customize

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// db is one of the account databases: its lines as read (kept byte for byte) and an index.
type db struct {
	path  string // "/etc/passwd"
	name  string // resolved, relative
	found bool
	lines []string
}

func (b *builder) loadDB(where, p string, need bool) (*db, error) {
	data, canon, ok, err := b.readFile(p[1:])
	if err != nil {
		return nil, errorf(where, "reading %s: %v", p, err)
	}
	if !ok && need {
		return nil, errorf(where, "the image has no %s: users and groups need it", p)
	}
	d := &db{path: p, name: canon, found: ok, lines: splitLines(data)}
	if !ok {
		d.name = p[1:]
	}
	return d, nil
}

// each calls fn with the fields and 1-based line number of every entry (not comments, blank or
// NIS "+"/"-" lines).
func (d *db) each(fn func(f []string, line int)) {
	for i, l := range d.lines {
		if l == "" || l[0] == '#' || l[0] == '+' || l[0] == '-' {
			continue
		}
		fn(strings.Split(l, ":"), i+1)
	}
}

type idRef struct {
	name  string
	where string // the new item's Where, or "/etc/passwd:N"
}

// accounts adds the Config's groups and users to the account databases and makes the users' homes.
func (b *builder) accounts(c Config) error {
	if len(c.Users) == 0 && len(c.Groups) == 0 {
		return nil
	}
	where := ""
	if len(c.Users) > 0 {
		where = c.Users[0].Where
	} else {
		where = c.Groups[0].Where
	}
	a, err := b.loadAccounts(where)
	if err != nil {
		return err
	}
	a.index()
	if err := a.addGroups(c.Groups); err != nil {
		return err
	}
	users, err := a.addUsers(c.Users)
	if err != nil {
		return err
	}
	if err := a.userLines(users); err != nil {
		return err
	}
	if err := a.save(); err != nil {
		return err
	}
	for _, nu := range users {
		if err := b.home(nu.u, nu.home, int(nu.uid), int(nu.gid)); err != nil {
			return err
		}
	}
	return nil
}

// accountDBs is the four account databases being edited, indexed by name and id.
type accountDBs struct {
	b                              *builder
	where                          string // the first user's or group's Where
	passwd, group, shadow, gshadow *db
	userNames, groupNames          map[string]idRef
	uids, gids                     map[uint32]idRef
	groupLine, gshadowLine         map[string]int // name → index in group.lines, gshadow.lines
	uidMin, uidMax, gidMin, gidMax int64
}

// newUser is a user of the Config with its ids and home settled.
type newUser struct {
	u        User
	uid, gid uint32
	home     string
}

// loadAccounts reads /etc/passwd and /etc/group (both needed), /etc/shadow and /etc/gshadow.
func (b *builder) loadAccounts(where string) (*accountDBs, error) {
	a := &accountDBs{b: b, where: where}
	var err error
	if a.passwd, err = b.loadDB(where, "/etc/passwd", true); err != nil {
		return nil, err
	}
	if a.group, err = b.loadDB(where, "/etc/group", true); err != nil {
		return nil, err
	}
	if a.shadow, err = b.loadDB(where, "/etc/shadow", false); err != nil {
		return nil, err
	}
	if a.gshadow, err = b.loadDB(where, "/etc/gshadow", false); err != nil {
		return nil, err
	}
	return a, nil
}

// index indexes the image's users and groups by name and id, and reads the id ranges of login.defs.
func (a *accountDBs) index() {
	a.userNames, a.uids = map[string]idRef{}, map[uint32]idRef{}
	a.passwd.each(func(f []string, line int) {
		ref := idRef{name: f[0], where: fmt.Sprintf("/etc/passwd:%d", line)}
		a.userNames[f[0]] = ref
		if len(f) > 2 {
			if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				a.uids[uint32(n)] = ref
			}
		}
	})
	a.groupNames, a.gids = map[string]idRef{}, map[uint32]idRef{}
	a.groupLine = map[string]int{}
	a.group.each(func(f []string, line int) {
		ref := idRef{name: f[0], where: fmt.Sprintf("/etc/group:%d", line)}
		a.groupNames[f[0]] = ref
		a.groupLine[f[0]] = line - 1
		if len(f) > 2 {
			if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				a.gids[uint32(n)] = ref
			}
		}
	})
	a.gshadowLine = map[string]int{}
	a.gshadow.each(func(f []string, line int) { a.gshadowLine[f[0]] = line - 1 })
	a.uidMin, a.uidMax = a.b.defNum("UID_MIN", 1000), a.b.defNum("UID_MAX", 60000)
	a.gidMin, a.gidMax = a.b.defNum("GID_MIN", 1000), a.b.defNum("GID_MAX", 60000)
}

// clash is the error for what (at w) taking a name or id that ref already has.
func clash(w, what string, ref idRef) error {
	if strings.HasPrefix(ref.where, "/etc/") {
		return errorf(w, "%s clashes with %s (%s)", what, ref.where, ref.name)
	}
	return errorf(w, "%s clashes with %s at %s", what, ref.name, whereOr(ref.where))
}

// freeID is the lowest id from lo to hi not in used.
func freeID(used map[uint32]idRef, lo, hi int64) (uint32, bool) {
	for id := lo; id <= hi; id++ {
		if _, taken := used[uint32(id)]; !taken {
			return uint32(id), true
		}
	}
	return 0, false
}

// addGroup appends a group to /etc/group and /etc/gshadow and indexes it.
func (a *accountDBs) addGroup(w, name string, gid uint32) {
	ref := idRef{name: name, where: w}
	a.groupNames[name], a.gids[gid] = ref, ref
	a.group.lines = append(a.group.lines, fmt.Sprintf("%s:x:%d:", name, gid))
	a.groupLine[name] = len(a.group.lines) - 1
	a.gshadow.lines = append(a.gshadow.lines, name+":!::")
	a.gshadowLine[name] = len(a.gshadow.lines) - 1
	a.b.op(Op{Op: "group", Path: "/etc/group", Detail: fmt.Sprintf("%s gid %d", name, gid), Where: w})
}

// addGroups checks the Config's groups, gives each its gid and adds it.
func (a *accountDBs) addGroups(groups []Group) error {
	for _, g := range groups {
		if err := checkName(g.Where, "group", g.Name); err != nil {
			return err
		}
		if ref, ok := a.groupNames[g.Name]; ok {
			return clash(g.Where, "group "+g.Name, ref)
		}
		var gid uint32
		if g.GID != nil {
			gid = *g.GID
			if ref, ok := a.gids[gid]; ok {
				return clash(g.Where, fmt.Sprintf("group %s gid %d", g.Name, gid), ref)
			}
		} else {
			var ok bool
			if gid, ok = freeID(a.gids, a.gidMin, a.gidMax); !ok {
				return errorf(g.Where, "group %s: no free gid from GID_MIN %d to GID_MAX %d", g.Name, a.gidMin, a.gidMax)
			}
		}
		a.addGroup(g.Where, g.Name, gid)
	}
	return nil
}

// addUsers checks the Config's users and settles their uids, primary groups and homes.
func (a *accountDBs) addUsers(users []User) ([]newUser, error) {
	var out []newUser
	for _, u := range users {
		if err := a.b.ctx.Err(); err != nil {
			return nil, fmt.Errorf("customize: users: %w", err)
		}
		nu, err := a.addUser(u)
		if err != nil {
			return nil, err
		}
		out = append(out, nu)
	}
	return out, nil
}

// addUser checks one user, indexes it with its uid, and makes its own group unless a gid is given.
func (a *accountDBs) addUser(u User) (newUser, error) {
	if err := checkUser(u); err != nil {
		return newUser{}, err
	}
	if ref, ok := a.userNames[u.Name]; ok {
		return newUser{}, clash(u.Where, "user "+u.Name, ref)
	}
	var uid uint32
	if u.UID != nil {
		uid = *u.UID
		if ref, ok := a.uids[uid]; ok {
			return newUser{}, clash(u.Where, fmt.Sprintf("user %s uid %d", u.Name, uid), ref)
		}
	} else {
		var ok bool
		if uid, ok = freeID(a.uids, a.uidMin, a.uidMax); !ok {
			return newUser{}, errorf(u.Where, "user %s: no free uid from UID_MIN %d to UID_MAX %d", u.Name, a.uidMin, a.uidMax)
		}
	}
	ref := idRef{name: u.Name, where: u.Where}
	a.userNames[u.Name], a.uids[uid] = ref, ref
	var gid uint32
	if u.GID != nil {
		gid = *u.GID
		if _, ok := a.gids[gid]; !ok {
			return newUser{}, errorf(u.Where, "user %s: primary gid %d is in neither /etc/group nor this configuration", u.Name, gid)
		}
	} else {
		gid = uid
		if ref, ok := a.groupNames[u.Name]; ok {
			return newUser{}, errorf(u.Where, "user %s: a group %s already exists (%s); give its gid to use it", u.Name, u.Name, whereOr(ref.where))
		}
		if ref, ok := a.gids[gid]; ok {
			return newUser{}, clash(u.Where, fmt.Sprintf("user %s's own group gid %d", u.Name, gid), ref)
		}
		a.addGroup(u.Where, u.Name, gid)
	}
	home := u.Home
	if home == "" {
		home = "/home/" + u.Name
	}
	return newUser{u: u, uid: uid, gid: gid, home: home}, nil
}

// userLines appends the users to /etc/passwd and /etc/shadow and to their supplementary groups.
func (a *accountDBs) userLines(users []newUser) error {
	b := a.b
	days := b.epoch.Unix() / 86400
	for _, nu := range users {
		u := nu.u
		shell := u.Shell
		if shell == "" {
			shell = "/bin/sh"
		}
		a.passwd.lines = append(a.passwd.lines, fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", u.Name, nu.uid, nu.gid, u.Comment, nu.home, shell))
		hash := u.PasswordHash
		if hash == "" {
			hash = "!"
		}
		a.shadow.lines = append(a.shadow.lines, fmt.Sprintf("%s:%s:%d:%d:%d:%d:::", u.Name, hash,
			days, b.defNum("PASS_MIN_DAYS", 0), b.defNum("PASS_MAX_DAYS", 99999), b.defNum("PASS_WARN_AGE", 7)))
		b.op(Op{Op: "user", Path: "/etc/passwd", Detail: fmt.Sprintf("%s uid %d gid %d home %s shell %s", u.Name, nu.uid, nu.gid, nu.home, shell), Where: u.Where})
		for _, g := range u.Groups {
			i, ok := a.groupLine[g]
			if !ok {
				return errorf(u.Where, "user %s: supplementary group %s is in neither /etc/group nor this configuration", u.Name, g)
			}
			a.group.lines[i] = addMember(a.group.lines[i], 3, u.Name)
			if j, ok := a.gshadowLine[g]; ok {
				a.gshadow.lines[j] = addMember(a.gshadow.lines[j], 3, u.Name)
			}
			b.op(Op{Op: "group", Path: "/etc/group", Detail: fmt.Sprintf("%s member of %s", u.Name, g), Where: u.Where})
		}
	}
	return nil
}

// save writes the four databases: passwd and group 0644 root, shadow and gshadow 0640 group shadow.
func (a *accountDBs) save() error {
	shadowGID := 0
	if ref, ok := a.groupNames["shadow"]; ok {
		for id, r := range a.gids {
			if r == ref {
				shadowGID = int(id)
			}
		}
	}
	for _, d := range []struct {
		db   *db
		mode int64
		gid  int
	}{{a.passwd, 0o644, 0}, {a.group, 0o644, 0}, {a.shadow, 0o640, shadowGID}, {a.gshadow, 0o640, shadowGID}} {
		name, err := a.b.place(a.where, d.db.name)
		if err != nil {
			return err
		}
		if err := a.b.writeGenerated(a.where, "users", name, joinLines(d.db.lines), d.mode, 0, d.gid); err != nil {
			return err
		}
	}
	return nil
}

// addMember adds name to the comma-separated list in field i of an /etc/group or /etc/gshadow
// line (unless there already).
func addMember(line string, i int, name string) string {
	f := strings.Split(line, ":")
	for len(f) <= i {
		f = append(f, "")
	}
	if f[i] == "" {
		f[i] = name
	} else {
		for _, m := range strings.Split(f[i], ",") {
			if m == name {
				return line
			}
		}
		f[i] += "," + name
	}
	return strings.Join(f, ":")
}

func checkName(where, what, n string) error {
	if n == "" || len(n) > 32 {
		return errorf(where, "%s name %q: want 1 to 32 characters", what, n)
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.' || r == '$' && i == len(n)-1)
		if !ok {
			return errorf(where, "%s name %q: %q not allowed (letters, digits, '_', '-', '.'; not first a digit or '-')", what, n, r)
		}
	}
	return nil
}

func checkUser(u User) error {
	if err := checkName(u.Where, "user", u.Name); err != nil {
		return err
	}
	for _, f := range []struct{ what, v string }{{"comment", u.Comment}, {"shell", u.Shell}, {"home", u.Home}, {"password hash", u.PasswordHash}} {
		if strings.ContainsAny(f.v, ":\n\x00") {
			return errorf(u.Where, "user %s: %s holds ':', a newline or NUL", u.Name, f.what)
		}
	}
	if u.Home != "" {
		if _, err := checkPath(u.Where, "user "+u.Name+" home", u.Home); err != nil {
			return err
		}
	}
	if u.Shell != "" && !strings.HasPrefix(u.Shell, "/") {
		return errorf(u.Where, "user %s: shell %s is not an absolute path", u.Name, u.Shell)
	}
	if h := u.PasswordHash; h != "" && h[0] != '$' && h[0] != '!' && h[0] != '*' {
		return errorf(u.Where, "user %s: password_hash does not look like a crypt(3) hash (\"$y$…\", \"$6$…\") or \"!\": plain passwords are refused", u.Name)
	}
	for i, k := range u.SSHAuthorizedKeys {
		if strings.ContainsAny(k, "\n\r\x00") || strings.TrimSpace(k) == "" {
			return errorf(u.Where, "user %s: ssh key %d is empty or holds a newline", u.Name, i+1)
		}
	}
	for _, g := range u.Groups {
		if err := checkName(u.Where, "group", g); err != nil {
			return err
		}
	}
	return nil
}

// home makes a new user's home (as useradd -m: mode HOME_MODE or 0777&^UMASK, a copy of
// /etc/skel) and the SSH keys.
func (b *builder) home(u User, home string, uid, gid int) error {
	rel := home[1:]
	canon, miss, err := b.resolve(rel, true)
	if err != nil {
		return errorf(u.Where, "user %s home %s: %v", u.Name, home, err)
	}
	dir := canon
	if len(miss) > 0 {
		mode := b.defNum("HOME_MODE", -1)
		if mode < 0 || mode > 0o777 {
			mode = 0o777 &^ b.defNum("UMASK", 0o22)
		}
		if dir, err = b.place(u.Where, rel); err != nil {
			return err
		}
		if err := b.put(&entry{name: dir, typ: tar.TypeDir, mode: mode, uid: uid, gid: gid, where: u.Where, what: "user " + u.Name + " home"}); err != nil {
			return err
		}
		b.op(Op{Op: "dir", Path: "/" + dir, Detail: fmt.Sprintf("home of %s, %04o %d:%d", u.Name, mode, uid, gid), Where: u.Where})
		if err := b.skel(u, dir, uid, gid); err != nil {
			return err
		}
	} else if n, _, _ := b.lstat(canon); n.kind != kDir {
		return errorf(u.Where, "user %s home %s is a %s in the image", u.Name, home, n.kindName())
	}
	if len(u.SSHAuthorizedKeys) == 0 {
		return nil
	}
	ssh := join(dir, ".ssh")
	if n, ok, err := b.lstat(ssh); err != nil {
		return errorf(u.Where, "user %s: %v", u.Name, err)
	} else if ok && n.kind != kDir {
		return errorf(u.Where, "user %s: %s/.ssh is a %s in the image", u.Name, home, n.kindName())
	}
	if err := b.put(&entry{name: ssh, typ: tar.TypeDir, mode: 0o700, uid: uid, gid: gid, where: u.Where, what: "user " + u.Name + " ~/.ssh"}); err != nil {
		return err
	}
	keys := strings.Join(u.SSHAuthorizedKeys, "\n") + "\n"
	ak := join(ssh, "authorized_keys")
	if n, ok, _ := b.lstat(ak); ok && n.kind == kDir {
		return errorf(u.Where, "user %s: %s/.ssh/authorized_keys is a directory in the image", u.Name, home)
	}
	if err := b.put(&entry{name: ak, typ: tar.TypeReg, mode: 0o600, uid: uid, gid: gid, data: []byte(keys), where: u.Where, what: "user " + u.Name + " authorized_keys"}); err != nil {
		return err
	}
	b.op(Op{Op: "file", Path: "/" + ak, Detail: fmt.Sprintf("%d keys, 0600 %d:%d", len(u.SSHAuthorizedKeys), uid, gid), Where: u.Where})
	return nil
}

// skel copies the image's /etc/skel into a new home, owned by the user, modes kept.
func (b *builder) skel(u User, dir string, uid, gid int) error {
	src, miss, err := b.resolve("etc/skel", true)
	if err != nil || len(miss) > 0 {
		return nil // no skeleton: nothing to copy
	}
	count := 0
	var walk func(from, to string, depth int) error
	walk = func(from, to string, depth int) error {
		if depth > 16 {
			return errorf(u.Where, "user %s: /etc/skel nests deeper than 16", u.Name)
		}
		ents, err := b.readDir(from)
		if err != nil {
			return errorf(u.Where, "user %s: listing /%s: %v", u.Name, from, err)
		}
		for _, de := range ents {
			if count++; count > 1000 {
				return errorf(u.Where, "user %s: /etc/skel holds more than 1000 entries", u.Name)
			}
			s, t := from+"/"+de.Name(), to+"/"+de.Name()
			n, _, err := b.lstat(s)
			if err != nil {
				return errorf(u.Where, "user %s: /%s: %v", u.Name, s, err)
			}
			e := &entry{name: t, uid: uid, gid: gid, mode: unixMode(n.mode), where: u.Where, what: "user " + u.Name + " skel"}
			switch n.kind {
			case kDir:
				e.typ = tar.TypeDir
			case kLink:
				e.typ, e.link = tar.TypeSymlink, n.link
			case kFile:
				e.typ = tar.TypeReg
				if fi, err := fs.Stat(b.root, s); err != nil || fi.Size() > MaxLayerSize-b.size {
					return errorf(u.Where, "user %s: /%s: unreadable or over the %d MiB layer cap", u.Name, s, MaxLayerSize>>20)
				}
				if e.data, err = fs.ReadFile(b.root, s); err != nil {
					return errorf(u.Where, "user %s: reading /%s: %v", u.Name, s, err)
				}
			default:
				continue
			}
			if err := b.put(e); err != nil {
				return err
			}
			if n.kind == kDir {
				if err := walk(s, t, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(src, dir, 0); err != nil {
		return err
	}
	if count > 0 {
		b.op(Op{Op: "dir", Path: "/" + dir, Detail: fmt.Sprintf("%d entries from /etc/skel", count), Where: u.Where})
	}
	return nil
}
