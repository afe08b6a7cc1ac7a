package check

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/inspect"
	"github.com/imgfab/imgfab/inspect/initrd"
)

// Limits on what Gather reads from the root filesystem (the image is untrusted: package inspect,
// "# Security"); real files are far below them.
const (
	maxSmallFile  = 64 << 10 // machine-id, a repart.d or .network file, a cloud.cfg
	maxFstab      = 1 << 20
	maxModulesDep = 32 << 20 // Debian's modules.dep is ~600 KiB
	maxBuiltin    = 4 << 20
	maxDirEntries = 4096    // entries of a configuration directory looked at
	maxModuleWalk = 200_000 // module files walked when there is no modules.dep
)

// Gather reads what the rules need from img with imgfab's own readers (package inspect: the
// partition table, the ESP's FAT, the boot entries, the root ext4; package inspect/initrd: the
// default entry's initrd). Container.FileSize is left 0 for the caller to fill in. A part that
// cannot be read is recorded in Facts (InitrdError, RootError) for the rules to report; the error
// is for a disk that cannot be inspected at all.
func Gather(ctx context.Context, img diskfmt.Image) (*Facts, error) {
	d, err := inspect.Open(ctx, img)
	if err != nil {
		return nil, err
	}
	rep := &d.Report
	f := &Facts{Container: Container{Format: img.Format(), VirtualSize: img.Size()}, Table: rep.PartitionTable, BootModes: []string{}}
	for _, p := range rep.Partitions {
		q := Partition{Number: p.Number, Name: p.Name, GUID: p.GUID, Type: p.Type, IsRoot: rep.Root != nil && rep.Root.Partition == p.Number}
		if p.Filesystem != nil {
			q.FS, q.UUID, q.Label = p.Filesystem.Type, p.Filesystem.UUID, p.Filesystem.Label
		}
		f.Partitions = append(f.Partitions, q)
	}
	if rep.Boot != nil {
		f.ESP = rep.Boot.ESP
	}
	for _, a := range d.EFIArchs {
		f.BootModes = append(f.BootModes, "uefi-"+a)
	}
	if rep.BIOS != nil {
		f.BootModes = append(f.BootModes, "bios")
	}
	for _, c := range []struct {
		mode string
		e    *inspect.Entry
	}{{"uefi", d.UEFI}, {"bios", d.BIOS}} {
		if c.e != nil {
			f.Cmdlines = append(f.Cmdlines, Cmdline{Mode: c.mode, Source: entrySource(c.e), Line: c.e.Options})
		}
	}
	f.KernelVersion = rep.KernelVersion
	entry := d.UEFI
	if entry == nil {
		entry = d.BIOS
	}
	if f.KernelVersion == "" && entry != nil {
		f.KernelVersion = entry.Version
	}
	if err := gatherInitrd(ctx, d, entry, f); err != nil {
		return nil, err
	}
	if d.Root == nil {
		f.RootError = rootError(rep)
		return f, nil
	}
	r, err := gatherRoot(ctx, d.Root, f.KernelVersion)
	if err != nil {
		return nil, err
	}
	f.Root = r
	return f, nil
}

func entrySource(e *inspect.Entry) string {
	switch e.Type {
	case "uki":
		return "UKI " + e.Linux
	case "grub":
		return "GRUB " + e.ID
	}
	return "systemd-boot entry " + e.ID
}

func rootError(rep *inspect.Report) string {
	if rep.Root == nil {
		return "no root partition found"
	}
	prefix := fmt.Sprintf("root partition %d: ", rep.Root.Partition)
	for _, w := range rep.Warnings {
		if strings.HasPrefix(w, prefix) {
			return w
		}
	}
	return fmt.Sprintf("root partition %d cannot be read", rep.Root.Partition)
}

// gatherInitrd summarises the initrd entry e boots with. Only a cancelled context is an error;
// an initrd that cannot be read is recorded in f.InitrdError.
func gatherInitrd(ctx context.Context, d *inspect.Disk, e *inspect.Entry, f *Facts) error {
	if e == nil {
		f.InitrdError = "no default boot entry was read"
		return nil
	}
	rc, src, err := d.OpenInitrd(e)
	if errors.Is(err, inspect.ErrNoInitrd) {
		return nil // the entry boots without an initrd
	}
	if err != nil {
		f.InitrdError = err.Error()
		return nil
	}
	defer rc.Close()
	sum, err := initrd.Summarize(ctx, rc)
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil {
		f.InitrdError = fmt.Sprintf("%s: %v", src, err)
		return nil
	}
	f.Initrd = &Initrd{Source: src, Modules: sum.Modules, KernelVersions: sum.KernelVersions, Builtin: sum.Builtin}
	return nil
}

// readFile reads a file of at most limit bytes; a larger one is an error.
func readFile(fsys fs.FS, name string, limit int64) ([]byte, error) {
	fl, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	b, err := io.ReadAll(io.LimitReader(fl, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("/%s: more than %d bytes", name, limit)
	}
	return b, nil
}

func exists(fsys fs.FS, names ...string) bool {
	for _, n := range names {
		if _, err := fs.Stat(fsys, n); err == nil {
			return true
		}
	}
	return false
}

func lexists(fsys fs.FS, name string) bool {
	_, err := fs.Lstat(fsys, name)
	return err == nil
}

// readDir lists a directory's first maxDirEntries entries; nil when it is missing.
func readDir(fsys fs.FS, name string) []fs.DirEntry {
	es, err := fs.ReadDir(fsys, name)
	if err != nil {
		return nil
	}
	return es[:min(len(es), maxDirEntries)]
}

// gatherRoot reads the root filesystem's facts; only a cancelled context is an error.
func gatherRoot(ctx context.Context, root fs.FS, kver string) (*Root, error) {
	r := &Root{}
	steps := []func(fs.FS, *Root){
		func(fsys fs.FS, r *Root) { gatherModules(fsys, r, kver) },
		gatherAgents, gatherIdentity, gatherGrow, gatherFstab, gatherNetwork,
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s(root, r)
	}
	return r, nil
}

// modulesDir is the kernel's module directory: /usr/lib/modules or /lib/modules.
func modulesDir(root fs.FS) string {
	for _, d := range []string{"usr/lib/modules", "lib/modules"} {
		if fi, err := fs.Stat(root, d); err == nil && fi.IsDir() {
			return d
		}
	}
	return ""
}

// gatherModules reads modules.builtin and modules.dep of kver (the only version there when kver
// is not known).
func gatherModules(root fs.FS, r *Root, kver string) {
	base := modulesDir(root)
	if base == "" {
		r.ModulesError = "no /lib/modules"
		return
	}
	if kver == "" {
		var vers []string
		for _, e := range readDir(root, base) {
			if e.IsDir() {
				vers = append(vers, e.Name())
			}
		}
		if len(vers) != 1 {
			r.ModulesError = fmt.Sprintf("the kernel version is not known and /%s has %d versions", base, len(vers))
			return
		}
		kver = vers[0]
	}
	dir := path.Join(base, kver)
	if _, err := fs.Stat(root, dir); err != nil {
		r.ModulesError = fmt.Sprintf("no /%s", dir)
		return
	}
	if b, err := readFile(root, dir+"/modules.builtin", maxBuiltin); err == nil {
		r.Builtin = moduleNames(b)
	}
	if b, err := readFile(root, dir+"/modules.dep", maxModulesDep); err == nil {
		r.Loadable = moduleNames(b) // "kernel/…/ena.ko.xz: deps…": the name before the colon
		return
	}
	// No modules.dep (depmod never ran): walk the tree.
	seen, n := map[string]bool{}, 0
	_ = fs.WalkDir(root, dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if n++; n > maxModuleWalk {
			return fs.SkipAll
		}
		if m := moduleName(e.Name()); m != "" && !e.IsDir() {
			seen[m] = true
		}
		return nil
	})
	for m := range seen {
		r.Loadable = append(r.Loadable, m)
	}
	slices.Sort(r.Loadable)
}

// moduleNames reads the module names of modules.builtin or modules.dep lines (a path, for
// modules.dep followed by ':').
func moduleNames(b []byte) []string {
	seen := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		p, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		if m := moduleName(path.Base(p)); m != "" {
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func moduleName(base string) string {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if m, ok := strings.CutSuffix(base, ext); ok && m != "" {
			return NormModule(m)
		}
	}
	return ""
}

// agentPaths are where each metadata agent's program is installed.
var agentPaths = []struct {
	name  string
	paths []string
}{
	{"cloud-init", []string{"usr/bin/cloud-init"}},
	{"google-guest-agent", []string{"usr/bin/google_guest_agent"}},
	{"waagent", []string{"usr/sbin/waagent", "usr/bin/waagent"}},
	{"open-vm-tools", []string{"usr/bin/vmtoolsd"}},
	{"qemu-guest-agent", []string{"usr/sbin/qemu-ga", "usr/bin/qemu-ga"}},
}

func gatherAgents(root fs.FS, r *Root) {
	for _, a := range agentPaths {
		if exists(root, a.paths...) {
			r.Agents = append(r.Agents, a.name)
		}
	}
	r.CloudInitDisabled = exists(root, "etc/cloud/cloud-init.disabled")
	var cfgs []string
	if exists(root, "etc/cloud/cloud.cfg") {
		cfgs = append(cfgs, "etc/cloud/cloud.cfg")
	}
	for _, e := range readDir(root, "etc/cloud/cloud.cfg.d") {
		if strings.HasSuffix(e.Name(), ".cfg") && !e.IsDir() {
			cfgs = append(cfgs, "etc/cloud/cloud.cfg.d/"+e.Name())
		}
	}
	for _, c := range cfgs { // cloud.cfg first, then cloud.cfg.d in name order: the last wins
		b, err := readFile(root, c, maxSmallFile)
		if err != nil {
			continue
		}
		if ds, ok := datasourceList(b); ok {
			r.Datasources = ds
		}
	}
	r.SSHD = exists(root, "usr/sbin/sshd", "sbin/sshd")
	for _, e := range readDir(root, "etc/ssh") {
		if strings.HasPrefix(e.Name(), "ssh_host_") && !e.IsDir() {
			r.SSHHostKeys = append(r.SSHHostKeys, "/etc/ssh/"+e.Name())
		}
	}
	if lexists(root, "etc/systemd/system/multi-user.target.wants/imgfab-ssh-keygen.service") && exists(root, "etc/systemd/system/imgfab-ssh-keygen.service") {
		r.SSHKeygen = append(r.SSHKeygen, "imgfab-ssh-keygen.service")
	}
	if exists(root, "usr/lib/systemd/system/sshd-keygen@.service", "lib/systemd/system/sshd-keygen@.service") {
		r.SSHKeygen = append(r.SSHKeygen, "sshd-keygen@.service")
	}
	if has(r.Agents, "cloud-init") {
		r.SSHKeygen = append(r.SSHKeygen, "cloud-init") // cc_ssh makes the host keys (ssh_genkeytypes)
	}
}

// datasourceList finds a top-level datasource_list in cloud-init YAML: the flow form on one line
// ("datasource_list: [ NoCloud, None ]", as Debian writes it) or a block list of "- Name" lines.
// ok is false when the file does not set it.
func datasourceList(b []byte) (ds []string, ok bool) {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		v, found := strings.CutPrefix(l, "datasource_list:")
		if !found {
			continue
		}
		v = strings.TrimSpace(stripComment(v))
		ds, ok = []string{}, true
		if strings.HasPrefix(v, "[") {
			v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
			for _, x := range strings.Split(v, ",") {
				if x = strings.Trim(strings.TrimSpace(x), `"'`); x != "" {
					ds = append(ds, x)
				}
			}
			continue
		}
		for _, n := range lines[i+1:] {
			t := strings.TrimSpace(stripComment(n))
			if t == "" {
				continue
			}
			x, item := strings.CutPrefix(t, "- ")
			if !item {
				break
			}
			ds = append(ds, strings.Trim(strings.TrimSpace(x), `"'`))
		}
	}
	return ds, ok
}

func stripComment(s string) string {
	if i := strings.Index(s, "#"); i >= 0 {
		return s[:i]
	}
	return s
}

var hex32 = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

func idState(b []byte) string {
	switch s := strings.TrimSpace(string(b)); {
	case s == "":
		return "empty"
	case s == "uninitialized":
		return "uninitialized"
	case hex32.MatchString(s):
		return "id"
	}
	return "other"
}

func gatherIdentity(root fs.FS, r *Root) {
	r.MachineID = "missing"
	if b, err := readFile(root, "etc/machine-id", maxSmallFile); err == nil {
		r.MachineID = idState(b)
	} else if lexists(root, "etc/machine-id") {
		r.MachineID = "other" // a dangling link, a directory, an oversized file
	}
	r.DBusMachineID = "absent"
	const dbus = "var/lib/dbus/machine-id"
	if fi, err := fs.Lstat(root, dbus); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			r.DBusMachineID = "other"
			if t, err := fs.ReadLink(root, dbus); err == nil && path.Clean(path.Join("/var/lib/dbus", t)) == "/etc/machine-id" {
				r.DBusMachineID = "link"
			}
		case fi.Mode().IsRegular():
			r.DBusMachineID = "other"
			if b, err := readFile(root, dbus, maxSmallFile); err == nil {
				switch st := idState(b); st {
				case "id":
					r.DBusMachineID = "id"
				case "empty":
					r.DBusMachineID = "absent" // dbus-uuidgen --ensure fills it on each machine
				}
			}
		default:
			r.DBusMachineID = "other"
		}
	}
	r.RandomSeed = lexists(root, "var/lib/systemd/random-seed")
	r.CredentialSecret = lexists(root, "var/lib/systemd/credential.secret")
}

// repartDirs are where systemd-repart reads definitions (repart.d(5)).
var repartDirs = []string{"etc/repart.d", "usr/local/lib/repart.d", "usr/lib/repart.d", "lib/repart.d"}

func gatherGrow(root fs.FS, r *Root) {
	g := &r.Grow
	seen := map[string]bool{}
	for _, d := range repartDirs {
		for _, e := range readDir(root, d) {
			name := e.Name()
			if !strings.HasSuffix(name, ".conf") || e.IsDir() || seen[name] {
				continue
			}
			seen[name] = true // an earlier directory's file of the same name masks the later ones
			b, err := readFile(root, d+"/"+name, maxSmallFile)
			if err != nil {
				continue
			}
			switch t, ok := iniValue(b, "Partition", "Type"); {
			case ok && strings.HasPrefix(t, "root"):
				g.RepartRoot = append(g.RepartRoot, "/"+d+"/"+name)
			case ok && t == "var":
				g.RepartVar = append(g.RepartVar, "/"+d+"/"+name)
			}
		}
	}
	g.Repart = exists(root, "usr/bin/systemd-repart", "bin/systemd-repart")
	g.GrowpartUnit = lexists(root, "etc/systemd/system/sysinit.target.wants/imgfab-growpart.service") && exists(root, "etc/systemd/system/imgfab-growpart.service")
	g.Growpart = exists(root, "usr/bin/growpart", "bin/growpart", "usr/sbin/growpart")
	g.Growfs = exists(root, "usr/lib/systemd/systemd-growfs", "lib/systemd/systemd-growfs")
}

// iniValue finds the last key= in [section] of a systemd unit-style file.
func iniValue(b []byte, section, key string) (string, bool) {
	cur, v, ok := "", "", false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxSmallFile+1)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			cur = strings.Trim(l, "[]")
		case cur == section:
			if k, val, found := strings.Cut(l, "="); found && strings.TrimSpace(k) == key {
				v, ok = strings.TrimSpace(val), true
			}
		}
	}
	return v, ok
}

func gatherFstab(root fs.FS, r *Root) {
	b, err := readFile(root, "etc/fstab", maxFstab)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.FstabError = err.Error()
		}
		return
	}
	r.Fstab = parseFstab(b)
}

// parseFstab reads fstab(5): whitespace-separated fields, '#' comments, octal escapes (\040) in
// the first two fields; a missing pass field is 0.
func parseFstab(b []byte) []FstabEntry {
	var out []FstabEntry
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		fl := strings.Fields(l)
		if len(fl) < 2 {
			continue
		}
		e := FstabEntry{Spec: unescapeOctal(fl[0]), File: unescapeOctal(fl[1])}
		if len(fl) > 2 {
			e.Type = fl[2]
		}
		if len(fl) > 3 {
			e.Options = fl[3]
		}
		if len(fl) > 5 {
			e.Pass, _ = strconv.Atoi(fl[5])
		}
		out = append(out, e)
	}
	return out
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

var (
	ifupdownDHCP = regexp.MustCompile(`(?m)^\s*iface\s+\S+\s+inet6?\s+(dhcp|auto)\b`)
	netplanDHCP  = regexp.MustCompile(`(?m)^\s*dhcp[46]:\s*(true|yes|on)\b`)
)

func gatherNetwork(root fs.FS, r *Root) {
	if has(r.Agents, "cloud-init") {
		r.Network = append(r.Network, "cloud-init")
	}
	if exists(root, "usr/sbin/NetworkManager") {
		r.Network = append(r.Network, "NetworkManager")
	}
	if exists(root, "usr/sbin/ifup", "sbin/ifup") {
		files := []string{"etc/network/interfaces"}
		for _, e := range readDir(root, "etc/network/interfaces.d") {
			files = append(files, "etc/network/interfaces.d/"+e.Name())
		}
		if anyMatch(root, files, ifupdownDHCP) {
			r.Network = append(r.Network, "ifupdown")
		}
	}
	var plans []string
	for _, e := range readDir(root, "etc/netplan") {
		if strings.HasSuffix(e.Name(), ".yaml") {
			plans = append(plans, "etc/netplan/"+e.Name())
		}
	}
	if exists(root, "usr/sbin/netplan") && anyMatch(root, plans, netplanDHCP) {
		r.Network = append(r.Network, "netplan")
	}
	if lexists(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service") {
		for _, e := range readDir(root, "etc/systemd/network") {
			if !strings.HasSuffix(e.Name(), ".network") {
				continue
			}
			b, err := readFile(root, "etc/systemd/network/"+e.Name(), maxSmallFile)
			if err != nil {
				continue
			}
			if v, ok := iniValue(b, "Network", "DHCP"); ok && v != "no" && v != "false" && v != "0" {
				r.Network = append(r.Network, "systemd-networkd")
				break
			}
		}
	}
}

func anyMatch(root fs.FS, files []string, re *regexp.Regexp) bool {
	for _, p := range files {
		if b, err := readFile(root, p, maxSmallFile); err == nil && re.Match(b) {
			return true
		}
	}
	return false
}
