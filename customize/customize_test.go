package customize

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

var epoch = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// tree writes files (path → content; a content starting with "->" makes a symlink) under a
// temporary directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(c, "->"):
			if err := os.Symlink(c[2:], full); err != nil {
				t.Fatal(err)
			}
		case strings.HasSuffix(p, "/"):
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

type tarEntry struct {
	hdr  tar.Header
	data string
}

func readTar(t *testing.T, b []byte) map[string]tarEntry {
	t.Helper()
	out := map[string]tarEntry{}
	tr := tar.NewReader(bytes.NewReader(b))
	var prev string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name < prev {
			t.Errorf("entry %s after %s: not sorted", h.Name, prev)
		}
		prev = h.Name
		if !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %s, uname %q, gname %q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		d, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = tarEntry{*h, string(d)}
	}
}

const passwd = "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\n"
const group = "root:x:0:\nsudo:x:27:\nshadow:x:42:\nalice:x:1000:\n"

func baseTree(t *testing.T) string {
	return tree(t, map[string]string{
		"etc/passwd":                           passwd,
		"etc/group":                            group,
		"etc/shadow":                           "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":                          "root:*::\nsudo:*::\n",
		"etc/skel/.profile":                    "# profile\n",
		"etc/fstab":                            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n",
		"etc/hosts":                            "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
		"etc/timezone":                         "Etc/UTC\n",
		"etc/localtime":                        "->/usr/share/zoneinfo/Etc/UTC",
		"usr/share/zoneinfo/Etc/UTC":           "TZif",
		"usr/share/zoneinfo/Europe/Paris":      "TZif",
		"home/":                                "",
		"lib":                                  "->usr/lib",
		"usr/lib/systemd/system/a.service":     "[Unit]\nDescription=a\n[Install]\nWantedBy=multi-user.target\n",
		"usr/lib/systemd/system/st.service":    "[Unit]\nDescription=static\n",
		"usr/lib/systemd/system/loop.service":  "->loop2.service",
		"usr/lib/systemd/system/loop2.service": "->loop.service",
	})
}

func u32(n uint32) *uint32 { return &n }

func TestAll(t *testing.T) {
	root := baseTree(t)
	c := Config{
		Files:       []File{{Path: "/etc/motd", Content: []byte("hi\n"), Mode: 0o640, UID: 0, GID: 4, Where: "f:1:1"}, {Path: "/opt/app/conf", Content: []byte("x"), Where: "f:2:1"}},
		Directories: []Directory{{Path: "/srv/data", Mode: 0o750, UID: 33, GID: 33, Where: "f:3:1"}},
		Groups:      []Group{{Name: "ops", GID: u32(2000), Where: "f:4:1"}},
		Users: []User{{Name: "bob", UID: u32(1500), Groups: []string{"sudo", "ops"}, Shell: "/bin/bash",
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA bob@example"}, Where: "f:5:1"}},
		Hostname: "web", HostnameWhere: "f:6:1",
		Timezone: "Europe/Paris", TimezoneWhere: "f:7:1",
		Units: Units{Enable: []Unit{{Name: "a.service", Where: "f:8:1"}}},
		Fstab: []FstabEntry{{Spec: "PARTUUID=1234", Mount: "/var", FS: "ext4", Options: "defaults", Pass: 2, Where: "f:9:1"}},
	}
	r, err := Layer(context.Background(), os.DirFS(root), c, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ents := readTar(t, r.Tar)
	check := func(name string, typ byte, mode int64, uid, gid int) tarEntry {
		t.Helper()
		e, ok := ents[name]
		if !ok {
			t.Fatalf("no %s in the layer; have %v", name, keys(ents))
		}
		if e.hdr.Typeflag != typ || e.hdr.Mode != mode || e.hdr.Uid != uid || e.hdr.Gid != gid {
			t.Errorf("%s: type %c mode %o owner %d:%d, want %c %o %d:%d", name, e.hdr.Typeflag, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, typ, mode, uid, gid)
		}
		return e
	}
	check("etc/motd", tar.TypeReg, 0o640, 0, 4)
	check("opt", tar.TypeDir, 0o755, 0, 0)
	check("opt/app", tar.TypeDir, 0o755, 0, 0)
	check("srv/data", tar.TypeDir, 0o750, 33, 33)
	if _, ok := ents["etc"]; ok {
		t.Errorf("the layer rewrites /etc, which the image has")
	}
	pw := check("etc/passwd", tar.TypeReg, 0o644, int(os.Getuid()), int(os.Getgid()))
	if !strings.HasPrefix(pw.data, passwd) || !strings.HasSuffix(pw.data, "bob:x:1500:1500::/home/bob:/bin/bash\n") {
		t.Errorf("passwd:\n%s", pw.data)
	}
	if g := ents["etc/group"].data; g != "root:x:0:\nsudo:x:27:bob\nshadow:x:42:\nalice:x:1000:\nops:x:2000:bob\nbob:x:1500:\n" {
		t.Errorf("group:\n%s", g)
	}
	if g := ents["etc/gshadow"].data; g != "root:*::\nsudo:*::bob\nops:!::bob\nbob:!::\n" {
		t.Errorf("gshadow:\n%s", g)
	}
	if s := ents["etc/shadow"].data; !strings.HasSuffix(s, "bob:!:19844:0:99999:7:::\n") {
		t.Errorf("shadow:\n%s", s)
	}
	check("home/bob", tar.TypeDir, 0o755, 1500, 1500)
	check("home/bob/.profile", tar.TypeReg, 0o644, 1500, 1500)
	check("home/bob/.ssh", tar.TypeDir, 0o700, 1500, 1500)
	if ak := check("home/bob/.ssh/authorized_keys", tar.TypeReg, 0o600, 1500, 1500); ak.data != "ssh-ed25519 AAAA bob@example\n" {
		t.Errorf("authorized_keys %q", ak.data)
	}
	if h := ents["etc/hostname"].data; h != "web\n" {
		t.Errorf("hostname %q", h)
	}
	if h := ents["etc/hosts"].data; h != "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n::1\tlocalhost\n" {
		t.Errorf("hosts %q", h)
	}
	if l := check("etc/localtime", tar.TypeSymlink, 0o777, 0, 0); l.hdr.Linkname != "../usr/share/zoneinfo/Europe/Paris" {
		t.Errorf("localtime → %s", l.hdr.Linkname)
	}
	if z := ents["etc/timezone"].data; z != "Europe/Paris\n" {
		t.Errorf("timezone %q", z)
	}
	if l := check("etc/systemd/system/multi-user.target.wants/a.service", tar.TypeSymlink, 0o777, 0, 0); l.hdr.Linkname != "/lib/systemd/system/a.service" {
		t.Errorf("a.service link → %s", l.hdr.Linkname)
	}
	if f := ents["etc/fstab"].data; strings.Contains(f, "UNCONFIGURED") || !strings.HasSuffix(f, "PARTUUID=1234\t/var\text4\tdefaults\t0\t2\n") {
		t.Errorf("fstab:\n%s", f)
	}
	check("var", tar.TypeDir, 0o755, 0, 0)
	for _, h := range ents {
		if h.hdr.Format != tar.FormatUSTAR && h.hdr.Format != tar.FormatUnknown {
			t.Errorf("%s: format %v", h.hdr.Name, h.hdr.Format)
		}
	}
	if len(r.Ops) == 0 || !strings.HasPrefix(r.Digest, "sha256:") {
		t.Errorf("ops %v digest %s", r.Ops, r.Digest)
	}

	// Reproducible: the same Config and tree give the same bytes.
	r2, err := Layer(context.Background(), os.DirFS(root), c, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Tar, r2.Tar) || r.Digest != r2.Digest {
		t.Errorf("two runs differ: %s vs %s", r.Digest, r2.Digest)
	}
}

func keys(m map[string]tarEntry) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func TestErrors(t *testing.T) {
	root := baseTree(t)
	escape := tree(t, map[string]string{"etc": "->../../../../../../../../tmp", "usr/lib/systemd/system/": ""})
	for _, tc := range []struct {
		name string
		root string
		c    Config
		want string
	}{
		{"dotdot", root, Config{Files: []File{{Path: "/etc/../x", Where: "f:1:2"}}}, `f:1:2: file /etc/../x: ".." in path`},
		{"relative", root, Config{Files: []File{{Path: "etc/x", Where: "f:1:2"}}}, "not an absolute path"},
		{"nul", root, Config{Directories: []Directory{{Path: "/a\x00b", Where: "f:1:2"}}}, "NUL"},
		{"whiteout name", root, Config{Files: []File{{Path: "/etc/.wh.passwd", Where: "f:1:2"}}}, "whiteout"},
		{"escape", escape, Config{Files: []File{{Path: "/etc/motd", Where: "f:3:4"}}}, "f:3:4: /etc/motd: a symlink on the way leads above the image root"},
		{"uid clash", root, Config{Users: []User{{Name: "ops", UID: u32(1000), Where: "imgfab.yaml:12:7"}}}, "imgfab.yaml:12:7: user ops uid 1000 clashes with /etc/passwd:3 (alice)"},
		{"name clash", root, Config{Users: []User{{Name: "alice", UID: u32(1600), Where: "f:1:1"}}}, "user alice clashes with /etc/passwd:3 (alice)"},
		{"gid clash", root, Config{Groups: []Group{{Name: "g", GID: u32(27), Where: "f:1:1"}}}, "group g gid 27 clashes with /etc/group:2 (sudo)"},
		{"new clash", root, Config{Users: []User{{Name: "x", UID: u32(3000), Where: "f:1:1"}, {Name: "y", UID: u32(3000), Where: "f:2:1"}}}, "f:2:1: user y uid 3000 clashes with x at f:1:1"},
		{"no group", root, Config{Users: []User{{Name: "x", Groups: []string{"wheel"}, Where: "f:1:1"}}}, "supplementary group wheel is in neither"},
		{"plain password", root, Config{Users: []User{{Name: "x", PasswordHash: "hunter2", Where: "f:1:1"}}}, "plain passwords are refused"},
		{"no passwd", escape, Config{Users: []User{{Name: "x", Where: "f:1:1"}}}, "f:1:1: reading /etc/passwd: a symlink on the way leads above"},
		{"no passwd file", tree(t, map[string]string{"etc/group": group}), Config{Users: []User{{Name: "x", Where: "f:1:1"}}}, "f:1:1: the image has no /etc/passwd"},
		{"no unit", root, Config{Units: Units{Enable: []Unit{{Name: "nginx.service", Where: "f:5:5"}}}}, "f:5:5: unit nginx.service is not in the image (looked in /etc/systemd/system, /usr/local/lib/systemd/system, /lib/systemd/system, /usr/lib/systemd/system)"},
		{"static unit", root, Config{Units: Units{Enable: []Unit{{Name: "st.service", Where: "f:5:5"}}}}, "has no installation config"},
		{"unit loop", root, Config{Units: Units{Enable: []Unit{{Name: "loop.service", Where: "f:5:5"}}}}, "too many levels of symbolic links"},
		{"zone", root, Config{Timezone: "Mars/Olympus", TimezoneWhere: "f:1:1"}, "f:1:1: timezone Mars/Olympus: /usr/share/zoneinfo/Mars/Olympus is not in the image"},
		{"hostname", root, Config{Hostname: "a_b", HostnameWhere: "f:1:1"}, `hostname "a_b"`},
		{"two writers", root, Config{Files: []File{{Path: "/etc/hostname", Where: "f:1:1"}}, Hostname: "h", HostnameWhere: "f:2:2"}, "f:2:2: /etc/hostname (hostname) is also written by f:1:1 (files)"},
		{"file on dir", root, Config{Files: []File{{Path: "/home", Where: "f:1:1"}}}, "the image has a directory there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Layer(context.Background(), os.DirFS(tc.root), tc.c, epoch)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestSymlinkedParent: a file under a symlinked directory is written at the resolved path, so
// no layer entry has a symlink as parent.
func TestSymlinkedParent(t *testing.T) {
	root := tree(t, map[string]string{"etc/": "", "opt": "->/srv/opt", "srv/": ""})
	r, err := Layer(context.Background(), os.DirFS(root), Config{Files: []File{{Path: "/opt/app/x", Content: []byte("x")}}}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ents := readTar(t, r.Tar)
	if _, ok := ents["srv/opt/app/x"]; !ok || len(ents) != 3 {
		t.Fatalf("entries %v, want srv/opt, srv/opt/app, srv/opt/app/x", keys(ents))
	}
}

func TestFstabMerge(t *testing.T) {
	root := tree(t, map[string]string{"etc/fstab": "# comment\nUUID=1 / ext4 defaults 0 1\nUUID=2 /var ext4 defaults 0 2\n", "var/": ""})
	r, err := Layer(context.Background(), os.DirFS(root), Config{Fstab: []FstabEntry{{Spec: "PARTUUID=9", Mount: "/var", FS: "xfs"}, {Spec: "PARTUUID=8", Mount: "none", FS: "swap", Options: "sw"}}}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	want := "# comment\nUUID=1 / ext4 defaults 0 1\nPARTUUID=9\t/var\txfs\tdefaults\t0\t0\nPARTUUID=8\tnone\tswap\tsw\t0\t0\n"
	if got := readTar(t, r.Tar)["etc/fstab"].data; got != want {
		t.Errorf("fstab %q, want %q", got, want)
	}
}

func debianTree(t *testing.T) string {
	return testtool.Fixture(t, "debian/layer1", "mkdebian.sh")
}

// TestDebianAccounts merges into the real Debian 12 databases.
func TestDebianAccounts(t *testing.T) {
	root := debianTree(t)
	c := Config{Users: []User{{Name: "ops", UID: u32(1500), Groups: []string{"sudo"}, SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA ops"}, Where: "imgfab.yaml:3:5"}}}
	r, err := Layer(context.Background(), os.DirFS(root), c, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ents := readTar(t, r.Tar)
	for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
		old, err := os.ReadFile(filepath.Join(root, "etc", f))
		if err != nil {
			t.Fatal(err)
		}
		got := ents["etc/"+f].data
		oldLines, newLines := splitLines(old), splitLines([]byte(got))
		changed := 0
		for i, l := range oldLines {
			if newLines[i] != l {
				changed++
				if !strings.HasPrefix(l, "sudo:") {
					t.Errorf("/etc/%s line %d changed: %q → %q", f, i+1, l, newLines[i])
				}
			}
		}
		if len(newLines) <= len(oldLines) {
			t.Errorf("/etc/%s: nothing appended", f)
		}
		fi, _ := os.Stat(filepath.Join(root, "etc", f))
		if h := ents["etc/"+f].hdr; h.Mode != int64(fi.Mode().Perm()) {
			t.Errorf("/etc/%s mode %o, image has %o", f, h.Mode, fi.Mode().Perm())
		}
	}
	if !strings.Contains(ents["etc/passwd"].data, "\nops:x:1500:1500::/home/ops:/bin/sh\n") {
		t.Errorf("passwd:\n%s", ents["etc/passwd"].data)
	}
	if h := ents["home/ops"].hdr; h.Mode != 0o755 || h.Uid != 1500 {
		t.Errorf("home mode %o uid %d (Debian 12: no HOME_MODE, UMASK 022 → 0755)", h.Mode, h.Uid)
	}
	if _, ok := ents["home/ops/.bashrc"]; !ok {
		t.Errorf("no skel .bashrc in %v", keys(ents))
	}
	if h := ents["home/ops/.ssh/authorized_keys"].hdr; h.Mode != 0o600 || h.Uid != 1500 || h.Gid != 1500 {
		t.Errorf("authorized_keys mode %o owner %d:%d", h.Mode, h.Uid, h.Gid)
	}
	// A uid clash names both.
	_, err = Layer(context.Background(), os.DirFS(root), Config{Users: []User{{Name: "net", UID: u32(998), Where: "imgfab.yaml:9:3"}}}, epoch)
	if err == nil || !strings.Contains(err.Error(), "imgfab.yaml:9:3: user net uid 998 clashes with /etc/passwd:") || !strings.Contains(err.Error(), "(systemd-network)") {
		t.Errorf("clash error: %v", err)
	}
	// The UNCONFIGURED fstab (our fixture writes its own comment instead; check the merge keeps it).
	r, err = Layer(context.Background(), os.DirFS(root), Config{Hostname: "web", Timezone: "Europe/Paris", Fstab: []FstabEntry{{Spec: "PARTUUID=x", Mount: "/var", FS: "ext4", Pass: 2}}}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ents = readTar(t, r.Tar)
	if l := ents["etc/localtime"].hdr.Linkname; l != "../usr/share/zoneinfo/Europe/Paris" {
		t.Errorf("localtime → %q", l)
	}
	if !strings.Contains(ents["etc/hosts"].data, "127.0.1.1\tweb\n") || ents["etc/hostname"].data != "web\n" || ents["etc/timezone"].data != "Europe/Paris\n" {
		t.Errorf("hosts %q hostname %q timezone %q", ents["etc/hosts"].data, ents["etc/hostname"].data, ents["etc/timezone"].data)
	}
}

// TestDebianUnits enables and disables real Debian units and compares the links with what
// systemctl --root makes on a copy of the unit directories.
func TestDebianUnits(t *testing.T) {
	root := debianTree(t)
	systemctl := testtool.Need(t, "systemctl", "systemd")
	enable := []string{"systemd-networkd.service", "e2scrub_all.timer", "serial-getty@ttyS0.service", "getty@.service", "systemd-time-wait-sync.service", "e2scrub_reap.service"}
	disable := []string{"fstrim.timer", "apt-daily.timer", "dpkg-db-backup.timer"}
	mask := []string{"systemd-pstore.service"}

	// The oracle: a copy of etc/systemd/system and usr/lib/systemd/system, with /lib → usr/lib.
	dir := t.TempDir()
	for _, d := range []string{"etc/systemd/system", "usr/lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(d)), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", filepath.Join(root, d), filepath.Join(dir, d)).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(dir, "lib")); err != nil {
		t.Fatal(err)
	}
	before := links(t, filepath.Join(dir, "etc/systemd/system"))
	for _, a := range [][]string{append([]string{"disable"}, disable...), append([]string{"enable"}, enable...), append([]string{"mask"}, mask...)} {
		cmd := exec.Command(systemctl, append([]string{"--root=" + dir, "--no-reload"}, a...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemctl %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
	after := links(t, filepath.Join(dir, "etc/systemd/system"))

	var c Config
	for _, u := range enable {
		c.Units.Enable = append(c.Units.Enable, Unit{Name: u, Where: "t"})
	}
	for _, u := range disable {
		c.Units.Disable = append(c.Units.Disable, Unit{Name: u, Where: "t"})
	}
	for _, u := range mask {
		c.Units.Mask = append(c.Units.Mask, Unit{Name: u, Where: "t"})
	}
	r, err := Layer(context.Background(), os.DirFS(root), c, epoch)
	if err != nil {
		t.Fatal(err)
	}
	// Apply the layer to the "before" links.
	got := map[string]string{}
	for k, v := range before {
		got[k] = v
	}
	for name, e := range readTar(t, r.Tar) {
		rel, ok := strings.CutPrefix(name, "etc/systemd/system/")
		if !ok {
			t.Errorf("unexpected entry %s", name)
			continue
		}
		d, base := filepath.Split(rel)
		switch {
		case strings.HasPrefix(base, ".wh."):
			delete(got, d+base[4:])
		case e.hdr.Typeflag == tar.TypeSymlink:
			got[rel] = e.hdr.Linkname
		}
	}
	for k, v := range after {
		if got[k] != v {
			t.Errorf("systemctl: %s → %s; imgfab: %q", k, v, got[k])
		}
	}
	for k, v := range got {
		if _, ok := after[k]; !ok {
			t.Errorf("imgfab: %s → %s; systemctl has none", k, v)
		}
	}
	t.Logf("systemctl and the layer agree on %d links (%d before)", len(after), len(before))
}

func links(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return err
		}
		l, err := os.Readlink(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = l
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOwnerNames: an owner named by the image's own accounts (a service user whose uid differs
// between distributions) is looked up in its /etc/passwd and /etc/group; a name it lacks is an
// ItemError at the item's position.
func TestOwnerNames(t *testing.T) {
	root := baseTree(t)
	c := Config{
		Files:       []File{{Path: "/etc/app.conf", Content: []byte("x\n"), User: "alice", Group: "sudo", Where: "f:1:1"}},
		Directories: []Directory{{Path: "/srv/app", GID: 7, User: "bin", Where: "f:2:1"}},
	}
	res, err := Layer(context.Background(), os.DirFS(root), c, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ents := readTar(t, res.Tar)
	if h := ents["etc/app.conf"].hdr; h.Uid != 1000 || h.Gid != 27 {
		t.Errorf("/etc/app.conf owner %d:%d, want 1000:27 (alice:sudo)", h.Uid, h.Gid)
	}
	if h := ents["srv/app"].hdr; h.Uid != 2 || h.Gid != 7 {
		t.Errorf("/srv/app owner %d:%d, want 2:7 (bin, gid as given)", h.Uid, h.Gid)
	}
	for _, bad := range []Config{
		{Files: []File{{Path: "/etc/a", User: "www-data", Where: "f:3:4"}}},
		{Directories: []Directory{{Path: "/srv/b", Group: "nogroup", Where: "f:3:4"}}},
	} {
		_, err := Layer(context.Background(), os.DirFS(root), bad, epoch)
		var ie *ItemError
		if !errors.As(err, &ie) || ie.Where != "f:3:4" || !strings.Contains(err.Error(), "owner: no ") {
			t.Errorf("%+v: %v, want an ItemError at f:3:4 naming the missing owner", bad, err)
		}
	}
}
