package firstboot

import (
	"archive/tar"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	old   = time.Unix(1_600_000_000, 0) // the image's entries
	logAt = time.Unix(1_650_000_000, 0)
	epoch = time.Unix(1_700_000_000, 0) // Options.Epoch
)

const (
	rootUUID  = "11111111-2222-3333-4444-555555555555"
	espSerial = "1A2B-3C4D"
	oldID     = "0123456789abcdef0123456789abcdef"
	fstabHead = "# /etc/fstab: static file system information, written by imgfab.\n#\n# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"
	rootLine  = "UUID=" + rootUUID + "\t/\text4\tdefaults,x-systemd.growfs\t0\t1\n"
	rootPlain = "UUID=" + rootUUID + "\t/\text4\tdefaults\t0\t1\n" // without growth
	espLine   = "UUID=" + espSerial + "\t/boot/efi\tvfat\tumask=0077\t0\t2\n"
	unitDir   = "etc/systemd/system/"
)

// ent is one tar entry, in or out, reduced to what the tests compare.
type ent struct {
	Name, Link, Body string
	Type             byte
	Mode             int64
	UID, GID         int
	MTime            int64
}

func reg(name, body string) ent {
	return ent{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o644, MTime: old.Unix()}
}
func dir(name string) ent {
	return ent{Name: name + "/", Type: tar.TypeDir, Mode: 0o755, MTime: old.Unix()}
}
func symlink(name, to string) ent {
	return ent{Name: name, Link: to, Type: tar.TypeSymlink, Mode: 0o777, MTime: old.Unix()}
}
func hardlink(name, to string) ent {
	return ent{Name: name, Link: to, Type: tar.TypeLink, Mode: 0o644, MTime: old.Unix()}
}
func (e ent) mode(m int64) ent   { e.Mode = m; return e }
func (e ent) owner(u, g int) ent { e.UID, e.GID = u, g; return e }
func (e ent) at(t time.Time) ent { e.MTime = t.Unix(); return e }
func ours(e ent) ent { // an entry the preparation adds
	e.Name = strings.TrimSuffix(e.Name, "/")
	return e.at(epoch)
}
func unit(name, content string) ent { return ours(reg(unitDir+name, content)) }
func wants(target, name string) ent {
	return ours(symlink(unitDir+target+".wants/"+name, "/"+unitDir+name))
}

func (e ent) header() *tar.Header {
	h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: time.Unix(e.MTime, 0)}
	if e.Type == tar.TypeReg {
		h.Size = int64(len(e.Body))
	}
	return h
}

func opts(keep ...string) Options {
	return Options{Keep: keep, Table: "gpt", RootFSUUID: rootUUID, RootFS: "ext4", ESPSerial: espSerial, Epoch: epoch}
}

// outcome is what one preparation wrote: all in order, finish the part Finish wrote.
type outcome struct {
	all, finish []ent
	res         Result
}

// run passes in through a Preparer and records every entry written.
func run(t *testing.T, o Options, in []ent) (outcome, error) {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var out outcome
	add := func(h *tar.Header, body io.Reader) error {
		var data []byte
		if body != nil {
			var err error
			if data, err = io.ReadAll(body); err != nil {
				return err
			}
		}
		if int64(len(data)) != h.Size {
			t.Errorf("%s: header size %d, body %d bytes", h.Name, h.Size, len(data))
		}
		out.all = append(out.all, ent{h.Name, h.Linkname, string(data), h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.Unix()})
		return nil
	}
	for _, e := range in {
		if err := p.Entry(e.header(), strings.NewReader(e.Body), add); err != nil {
			return out, err
		}
	}
	n := len(out.all)
	out.res, err = p.Finish(add)
	if len(out.all) > n {
		out.finish = out.all[n:]
	}
	return out, err
}

func mustRun(t *testing.T, o Options, in []ent) outcome {
	t.Helper()
	out, err := run(t, o, in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// byName indexes entries by name; a name written twice is an error.
func byName(t *testing.T, es []ent) map[string]ent {
	t.Helper()
	m := map[string]ent{}
	for _, e := range es {
		if _, dup := m[e.Name]; dup {
			t.Errorf("%s written twice", e.Name)
		}
		m[e.Name] = e
	}
	return m
}

func names(es []ent) []string {
	var n []string
	for _, e := range es {
		n = append(n, e.Name)
	}
	return n
}

func opsOf(ops []Op, op string) []Op {
	var r []Op
	for _, o := range ops {
		if o.Op == op {
			r = append(r, o)
		}
	}
	return r
}

// sameEnts reports the entries that differ between got and want, by name and in order.
func sameEnts(t *testing.T, what string, got, want []ent) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	if g, w := names(got), names(want); !slices.Equal(g, w) {
		t.Errorf("%s: names\n got %q\nwant %q", what, g, w)
	}
	wm := map[string]ent{}
	for _, e := range want {
		wm[e.Name] = e
	}
	for _, e := range got {
		if w, ok := wm[e.Name]; ok && e != w {
			t.Errorf("%s: %s\n got %+v\nwant %+v", what, e.Name, e, w)
		}
	}
}

func sorted(es []ent) []ent {
	return slices.SortedFunc(slices.Values(es), func(a, b ent) int { return strings.Compare(a.Name, b.Name) })
}

// warned checks for no warning (want "") or exactly one that contains want.
func warned(t *testing.T, w []string, want string) {
	t.Helper()
	if want == "" && w != nil || want != "" && (len(w) != 1 || !strings.Contains(w[0], want)) {
		t.Errorf("warnings %q, want one with %q", w, want)
	}
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func debian() []ent {
	return []ent{
		dir("boot"), dir("etc"),
		reg("etc/fstab", "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"),
		reg("etc/hostname", "buildhost\n"),
		reg("etc/machine-id", oldID+"\n").mode(0o444),
		reg("etc/ssh/ssh_host_ed25519_key", "k1").mode(0o600),
		reg("etc/ssh/ssh_host_ed25519_key.pub", "p1"),
		reg("etc/ssh/ssh_host_rsa_key", "k2").mode(0o600),
		reg("etc/ssh/ssh_host_rsa_key.pub", "p2"),
		reg("etc/ssh/sshd_config", "Port 22\n"),
		reg("home/u/.bash_history", "ls\n"),
		reg("root/.bash_history", "ls\n"),
		dir("tmp"), reg("tmp/x", "x"),
		reg("usr/bin/ssh-keygen", "elf"),
		reg("usr/bin/systemd-repart", "elf"),
		reg("usr/lib/systemd/systemd", "elf"),
		reg("usr/lib/systemd/systemd-growfs", "elf"),
		reg("usr/sbin/sshd", "elf"),
		dir("var/lib/dbus"), reg("var/lib/dbus/machine-id", oldID+"\n"),
		reg("var/lib/dhcp/dhclient.eth0.leases", "lease {}\n"),
		reg("var/lib/systemd/credential.secret", "secret"),
		reg("var/lib/systemd/random-seed", "seed"),
		reg("var/log/dpkg.log", "install x\n").mode(0o640).owner(0, 4).at(logAt),
		reg("var/log/journal/x/system.journal", "journal"),
		reg("var/tmp/y", "y"),
	}
}

var (
	sshUnit   = strings.ReplaceAll(sshKeygenService, "@KEYGEN@", "/usr/bin/ssh-keygen")
	debianOut = []ent{
		dir("boot"), dir("etc"),
		reg("etc/ssh/sshd_config", "Port 22\n"),
		dir("tmp"),
		reg("usr/bin/ssh-keygen", "elf"), reg("usr/bin/systemd-repart", "elf"),
		reg("usr/lib/systemd/systemd", "elf"), reg("usr/lib/systemd/systemd-growfs", "elf"),
		reg("usr/sbin/sshd", "elf"),
		dir("var/lib/dbus"),
		reg("var/log/dpkg.log", "").mode(0o640).owner(0, 4).at(logAt), // emptied, its header kept
		// Finish:
		reg("etc/hostname", "localhost\n"),                   // the image's header, rewritten
		reg("etc/machine-id", "uninitialized\n").mode(0o444), // the image's header, rewritten
		ours(symlink("var/lib/dbus/machine-id", "/etc/machine-id")),
		unit(sshKeygenUnit, sshUnit),
		wants("multi-user.target", sshKeygenUnit),
		ours(reg("etc/repart.d/50-imgfab-root.conf", repartRoot)),
		reg("etc/fstab", fstabHead+rootLine+espLine), // the image's entry, merged
		ours(dir("boot/efi")),
	}
	debianOps = []Op{
		{OpSSHHostKeys, "/etc/ssh/ssh_host_ed25519_key", "removed"},
		{OpSSHHostKeys, "/etc/ssh/ssh_host_ed25519_key.pub", "removed"},
		{OpSSHHostKeys, "/etc/ssh/ssh_host_rsa_key", "removed"},
		{OpSSHHostKeys, "/etc/ssh/ssh_host_rsa_key.pub", "removed"},
		{OpBashHistory, "/home/u/.bash_history", "removed"},
		{OpBashHistory, "/root/.bash_history", "removed"},
		{OpTmpFiles, "/tmp/x", "removed"},
		{OpMachineID, "/var/lib/dbus/machine-id", "removed"},
		{OpDHCP, "/var/lib/dhcp/dhclient.eth0.leases", "removed"},
		{OpCredentials, "/var/lib/systemd/credential.secret", "removed"},
		{OpRandomSeed, "/var/lib/systemd/random-seed", "removed"},
		{OpLogFiles, "/var/log/dpkg.log", "emptied (10 bytes)"},
		{OpLogFiles, "/var/log/journal/x/system.journal", "removed"},
		{OpTmpFiles, "/var/tmp/y", "removed"},
		{OpHostname, "/etc/hostname", `"localhost" (was "buildhost")`},
		{OpMachineID, "/etc/machine-id", `"uninitialized" (was "` + oldID + `")`},
		{OpMachineID, "/var/lib/dbus/machine-id", "→ /etc/machine-id"},
		{OpSSHHostKeys, "/" + unitDir + sshKeygenUnit, "added, enabled in multi-user.target"},
		{OpGrow, "/etc/repart.d/50-imgfab-root.conf", "systemd-repart grows the root partition; systemd-growfs its filesystem"},
		{OpFstab, "/etc/fstab", "root, ESP at /boot/efi (replacing the unconfigured base-system file)"},
	}
)

func TestDebian(t *testing.T) {
	out := mustRun(t, opts(), debian())
	sameEnts(t, "entries", out.all, debianOut)
	equal(t, "ops", out.res.Ops, debianOps)
	equal(t, "warnings", out.res.Warnings, []string(nil))
	if !strings.Contains(sshUnit, "ExecStart=/usr/bin/ssh-keygen -A\n") || !strings.Contains(repartRoot, "\nType=root\n") {
		t.Errorf("units: ssh-keygen -A or Type=root missing")
	}
}

// The image's systemd decides /etc/machine-id wherever it is in the stream.
func TestStreamOrder(t *testing.T) {
	var usr, rest []ent
	for _, e := range debian() {
		if strings.HasPrefix(e.Name, "usr/") {
			usr = append(usr, e)
		} else {
			rest = append(rest, e)
		}
	}
	for _, in := range [][]ent{append(slices.Clone(rest), usr...), append(slices.Clone(usr), rest...)} {
		out := mustRun(t, opts(), in)
		byName(t, out.all)
		sameEnts(t, "entries by name", sorted(out.all), sorted(debianOut))
		equal(t, "ops", out.res.Ops, debianOps)
	}
}

func TestKeep(t *testing.T) {
	in := byName(t, debian())
	base := byName(t, debianOut)
	// owned: the image's entries an operation changes, and the entries it adds.
	owned := map[string][2][]string{
		OpMachineID:   {{"etc/machine-id", "var/lib/dbus/machine-id"}, nil},
		OpSSHHostKeys: {{"etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub"}, {unitDir + sshKeygenUnit, unitDir + "multi-user.target.wants/" + sshKeygenUnit}},
		OpRandomSeed:  {{"var/lib/systemd/random-seed"}, nil},
		OpCredentials: {{"var/lib/systemd/credential.secret"}, nil},
		OpLogFiles:    {{"var/log/dpkg.log", "var/log/journal/x/system.journal"}, nil},
		OpDHCP:        {{"var/lib/dhcp/dhclient.eth0.leases"}, nil},
		OpBashHistory: {{"root/.bash_history", "home/u/.bash_history"}, nil},
		OpTmpFiles:    {{"tmp/x", "var/tmp/y"}, nil},
		OpHostname:    {{"etc/hostname"}, nil},
		OpFstab:       {{"etc/fstab"}, {"boot/efi"}},
		OpGrow:        {nil, {"etc/repart.d/50-imgfab-root.conf"}},
	}
	type tc struct {
		name, op string
		o        Options
	}
	cases := []tc{{"NoGrow", OpGrow, opts()}, {"KeepHostname", OpHostname, opts()}}
	cases[0].o.NoGrow, cases[1].o.KeepHostname = true, true
	for _, op := range Operations {
		cases = append(cases, tc{op, op, opts(op)})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			own, ok := owned[c.op]
			if !ok {
				t.Fatalf("no files listed for operation %s", c.op)
			}
			want := maps.Clone(base)
			for _, n := range own[0] {
				want[n] = in[n]
			}
			for _, n := range own[1] {
				delete(want, n)
			}
			if c.op == OpGrow { // the root's line loses only its growfs option
				want["etc/fstab"] = reg("etc/fstab", fstabHead+rootPlain+espLine)
			}
			out := mustRun(t, c.o, debian())
			byName(t, out.all)
			sameEnts(t, "entries", sorted(out.all), sorted(slices.Collect(maps.Values(want))))
			equal(t, "ops", out.res.Ops, slices.DeleteFunc(slices.Clone(debianOps), func(o Op) bool { return o.Op == c.op }))
		})
	}
	t.Run("all", func(t *testing.T) {
		out := mustRun(t, opts("all"), debian())
		sameEnts(t, "entries", out.all, debian())
		equal(t, "result", out.res, Result{Ops: []Op{}})
	})
	t.Run("unknown", func(t *testing.T) {
		if err := CheckKeep(append(slices.Clone(Operations), "all")); err != nil {
			t.Errorf("CheckKeep(every name): %v", err)
		}
		want := `first-boot operation "hostnames": want all or one of ` + strings.Join(Operations, ", ")
		if err := CheckKeep([]string{OpHostname, "hostnames"}); err == nil || err.Error() != want {
			t.Errorf("CheckKeep: %v, want %s", err, want)
		}
		if _, err := New(opts("hostnames")); err == nil || err.Error() != want {
			t.Errorf("New: %v, want %s", err, want)
		}
		if _, err := New(Options{Table: "msdos"}); err == nil || !strings.Contains(err.Error(), `"msdos"`) {
			t.Errorf("New with table msdos: %v", err)
		}
	})
}

func TestGrow(t *testing.T) {
	systemd := []ent{dir("etc"), reg("usr/lib/systemd/systemd", ""), reg("usr/lib/systemd/systemd-growfs", "")}
	repart, growpart := reg("usr/bin/systemd-repart", ""), reg("usr/sbin/growpart", "")
	with := func(es ...ent) []ent { return append(slices.Clone(systemd), es...) }
	gpUnit, gpWants := unitDir+growpartUnit, unitDir+"sysinit.target.wants/"+growpartUnit
	gpOps := []Op{{OpGrow, "/" + gpUnit, "added, enabled in sysinit.target"}}
	cases := []struct {
		name, table string
		in          []ent
		finish      []string // what Finish writes, in order
		growfs      bool     // x-systemd.growfs on the root's line
		ops         []Op     // the grow operations
		warn        string   // in the one warning; "": none
	}{
		{"mbr growpart", "mbr", with(repart, growpart), []string{gpUnit, gpWants, "etc/fstab"}, true, gpOps, ""},
		{"mbr no growpart", "mbr", with(repart), []string{"etc/fstab"}, false, nil, "the image has neither growpart (cloud-guest-utils); install it"},
		{"gpt growpart", "gpt", with(growpart), []string{gpUnit, gpWants, "etc/fstab"}, true, gpOps, ""},
		{"gpt nothing", "gpt", with(), []string{"etc/fstab"}, false, nil, "neither systemd-repart (systemd ≥ 245) or growpart (cloud-guest-utils)"},
		{"own repart.d", "gpt", with(repart, reg("usr/lib/repart.d/10-root.conf", "[Partition]\nType=root\n")), []string{"etc/fstab"}, true,
			[]Op{{OpGrow, "/etc/repart.d", "the image's own repart.d definitions; the root's filesystem grows with x-systemd.growfs"}}, ""},
		{"mbr own repart.d", "mbr", with(repart, growpart, reg("usr/lib/repart.d/10-root.conf", "")), []string{gpUnit, gpWants, "etc/fstab"}, true, gpOps, ""},
		{"no systemd-growfs", "gpt", []ent{dir("etc"), reg("usr/lib/systemd/systemd", ""), repart, growpart}, []string{"etc/fstab"}, false, nil,
			"the image has no systemd-growfs (systemd) to resize the filesystem, and not cloud-init with growpart"},
		{"cloud-init", "gpt", []ent{dir("etc"), reg("usr/bin/cloud-init", ""), growpart}, []string{"etc/fstab"}, false,
			[]Op{{OpGrow, "", "left to cloud-init's growpart and resizefs modules"}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opts(OpMachineID)
			o.Table, o.ESPSerial = c.table, ""
			out := mustRun(t, o, c.in)
			equal(t, "finish", names(out.finish), c.finish)
			m, line := byName(t, out.all), rootPlain
			if c.growfs {
				line = rootLine
			}
			equal(t, "fstab", m["etc/fstab"].Body, fstabHead+line)
			if len(c.finish) > 1 {
				equal(t, "unit", m[gpUnit], unit(growpartUnit, growpartService))
				equal(t, "link", m[gpWants], wants("sysinit.target", growpartUnit))
			}
			equal(t, "ops", opsOf(out.res.Ops, OpGrow), c.ops)
			warned(t, out.res.Warnings, c.warn)
		})
	}
}

func TestSSH(t *testing.T) {
	key := reg("etc/ssh/ssh_host_ecdsa_key", "k")
	systemd, sshd := reg("usr/lib/systemd/systemd", ""), reg("usr/sbin/sshd", "")
	cases := []struct {
		name   string
		in     []ent
		finish []ent
		op     string // the last ssh-hostkeys Op's detail
		warn   string
	}{
		{"fedora", []ent{key, systemd, sshd, reg("usr/bin/ssh-keygen", ""), reg("lib/systemd/system/sshd-keygen@.service", "")},
			nil, "host keys made on boot by the image's sshd-keygen@.service", ""},
		{"bin/ssh-keygen", []ent{key, systemd, sshd, reg("bin/ssh-keygen", "")},
			[]ent{unit(sshKeygenUnit, strings.ReplaceAll(sshKeygenService, "@KEYGEN@", "/bin/ssh-keygen")), wants("multi-user.target", sshKeygenUnit)},
			"added, enabled in multi-user.target", ""},
		{"no ssh-keygen", []ent{key, systemd, sshd}, nil, "removed", "the image has sshd but no ssh-keygen"},
		{"no systemd", []ent{key, sshd, reg("usr/bin/ssh-keygen", "")}, nil, "removed", "the image has sshd but not systemd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := mustRun(t, opts(OpMachineID, OpFstab, OpGrow), c.in)
			sameEnts(t, "finish", out.finish, c.finish)
			ops := opsOf(out.res.Ops, OpSSHHostKeys)
			if len(ops) == 0 {
				t.Fatal("no ssh-hostkeys op")
			}
			equal(t, "first op", ops[0], Op{OpSSHHostKeys, "/etc/ssh/ssh_host_ecdsa_key", "removed"})
			equal(t, "last op", ops[len(ops)-1].Detail, c.op)
			if _, kept := byName(t, out.all)[key.Name]; kept {
				t.Errorf("%s kept", key.Name)
			}
			warned(t, out.res.Warnings, c.warn)
		})
	}
}

func TestOdd(t *testing.T) {
	systemd := reg("usr/lib/systemd/systemd", "")
	root := rootPlain
	efi := strings.Replace(espLine, "/boot/efi", "/efi", 1)
	cases := []struct {
		name  string
		o     Options
		in    []ent
		want  []ent  // every entry written; nil: not checked
		fstab string // etc/fstab's content; "": not checked
		ops   []Op   // nil: not checked
		warn  string // in the one warning; "": none
		err   string
	}{{
		name: "hard links", o: opts(OpMachineID, OpFstab, OpGrow),
		in: []ent{dir("etc"), reg("etc/ssh/ssh_host_rsa_key", "k"), hardlink("etc/ssh/rsa", "etc/ssh/ssh_host_rsa_key"),
			reg("usr/bin/a", "a"), hardlink("usr/bin/b", "usr/bin/a")},
		want: []ent{dir("etc"), reg("usr/bin/a", "a"), hardlink("usr/bin/b", "usr/bin/a")},
		ops:  []Op{{OpSSHHostKeys, "/etc/ssh/ssh_host_rsa_key", "removed"}},
	}, {
		name: "machine-id symlink", o: opts(OpFstab, OpGrow),
		in:   []ent{dir("etc"), symlink("etc/machine-id", "/run/machine-id"), systemd},
		want: []ent{dir("etc"), systemd, ours(reg("etc/machine-id", "uninitialized\n").mode(0o444))},
		ops:  []Op{{OpMachineID, "/etc/machine-id", `"uninitialized" (was a symlink)`}},
	}, {
		name: "machine-id already uninitialized", o: opts(OpFstab, OpGrow),
		in:   []ent{dir("etc"), reg("etc/machine-id", "uninitialized\n"), systemd},
		want: []ent{dir("etc"), systemd, reg("etc/machine-id", "uninitialized\n")},
		ops:  []Op{},
	}, {
		name: "machine-id without systemd", o: opts(OpFstab, OpGrow),
		in:   []ent{dir("etc")},
		want: []ent{dir("etc"), ours(reg("etc/machine-id", "").mode(0o444))},
		ops:  []Op{{OpMachineID, "/etc/machine-id", `added, ""`}},
	}, {
		name: "fstab symlink", o: opts(OpMachineID, OpGrow),
		in:   []ent{dir("etc"), symlink("etc/fstab", "../run/fstab")},
		want: []ent{dir("etc"), symlink("etc/fstab", "../run/fstab")},
		ops:  []Op{},
		warn: "/etc/fstab is a symlink, not a regular file",
	}, {
		name: "fstab too large", o: opts(),
		in:  []ent{dir("etc"), reg("etc/fstab", strings.Repeat("#", MaxFstab+1))},
		err: "first boot: /etc/fstab is more than 1048576 bytes",
	}, {
		name: "built before", o: opts(OpMachineID, OpFstab),
		in: []ent{dir("etc"), systemd, reg("usr/lib/systemd/systemd-growfs", ""), reg("usr/bin/systemd-repart", ""),
			reg("usr/sbin/sshd", ""), reg("usr/bin/ssh-keygen", ""),
			unit(sshKeygenUnit, "old"), wants("multi-user.target", sshKeygenUnit), reg("etc/repart.d/50-imgfab-root.conf", "old"),
			unit(growpartUnit, "old"), wants("sysinit.target", growpartUnit)},
		want: []ent{dir("etc"), systemd, reg("usr/lib/systemd/systemd-growfs", ""), reg("usr/bin/systemd-repart", ""),
			reg("usr/sbin/sshd", ""), reg("usr/bin/ssh-keygen", ""),
			unit(sshKeygenUnit, sshUnit), wants("multi-user.target", sshKeygenUnit), ours(reg("etc/repart.d/50-imgfab-root.conf", repartRoot))},
		warn: "x-systemd.growfs goes on the root's /etc/fstab line, which --keep fstab leaves out",
	}, {
		name: "efi", o: opts(OpMachineID, OpGrow),
		in:   []ent{dir("boot"), dir("efi"), dir("etc")},
		want: []ent{dir("boot"), dir("efi"), dir("etc"), ours(reg("etc/fstab", fstabHead+root+efi))},
		ops:  []Op{{OpFstab, "/etc/fstab", "root, ESP at /efi"}},
	}, {
		name: "efi and boot/efi", o: opts(OpMachineID, OpGrow),
		in:   []ent{dir("boot/efi"), dir("efi"), dir("etc")},
		want: []ent{dir("boot/efi"), dir("efi"), dir("etc"), ours(reg("etc/fstab", fstabHead+root+espLine))},
	}, {
		name: "boot symlink", o: opts(OpMachineID, OpGrow),
		in:   []ent{symlink("boot", "efi"), dir("etc")},
		want: []ent{symlink("boot", "efi"), dir("etc"), ours(reg("etc/fstab", fstabHead+root+efi)), ours(dir("efi"))},
	}, {
		name: "no boot", o: opts(OpMachineID, OpGrow),
		in:   []ent{dir("etc")},
		want: []ent{dir("etc"), ours(reg("etc/fstab", fstabHead+root+espLine)), ours(dir("boot")), ours(dir("boot/efi"))},
	}, {
		name: "scratch", o: opts(),
		in:   []ent{reg("app", "elf")},
		want: []ent{reg("app", "elf")},
		ops:  []Op{},
	}, {
		name: "fstab merged", o: opts(OpMachineID, OpGrow),
		in:    []ent{dir("boot/efi"), reg("etc/fstab", "# mine\nUUID=old / ext4 errors=remount-ro 0 1\nLABEL=data /data xfs defaults 0 2\n")},
		fstab: "# mine\nLABEL=data /data xfs defaults 0 2\n" + root + espLine,
		ops:   []Op{{OpFstab, "/etc/fstab", "root, ESP at /boot/efi"}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, c.o, c.in)
			if c.err != "" || err != nil {
				if err == nil || err.Error() != c.err {
					t.Fatalf("error %v, want %s", err, c.err)
				}
				return
			}
			m := byName(t, out.all)
			if c.want != nil {
				sameEnts(t, "entries", out.all, c.want)
			}
			if c.fstab != "" {
				equal(t, "fstab", m["etc/fstab"], reg("etc/fstab", c.fstab)) // the image's entry, merged
			}
			if c.ops != nil {
				equal(t, "ops", out.res.Ops, c.ops)
			}
			warned(t, out.res.Warnings, c.warn)
		})
	}
}

// TestHostnameWithoutSystemd: an image with no way to take a name at boot (a busybox image) keeps
// its own /etc/hostname; with systemd or cloud-init it becomes localhost.
func TestHostnameWithoutSystemd(t *testing.T) {
	for _, c := range []struct {
		name string
		with []ent
		want string
	}{
		{"busybox", nil, "imgfab-demo\n"},
		{"systemd", []ent{reg("usr/lib/systemd/systemd", "elf")}, "localhost\n"},
		{"cloud-init", []ent{reg("usr/bin/cloud-init", "py")}, "localhost\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := append([]ent{dir("etc"), reg("etc/hostname", "imgfab-demo\n")}, c.with...)
			out := mustRun(t, opts(), in)
			if got := byName(t, out.all)["etc/hostname"]; got.Body != c.want || got.MTime != old.Unix() {
				t.Errorf("/etc/hostname %q (mtime %d), want %q with the image's header", got.Body, got.MTime, c.want)
			}
		})
	}
}
