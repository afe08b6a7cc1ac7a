package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/customize"
	"github.com/imgfab/imgfab/firstboot"
	"github.com/imgfab/imgfab/spec"
)

// fileSetFlags are the build flags a class file sets, with the key that sets them: with -f they
// are a usage error.
var fileSetFlags = []struct{ flag, key string }{
	{"output", "outputs"}, {"format", "outputs[].format"}, {"compress", "outputs[].compress"},
	{"size", "disk.size"}, {"esp-size", "esp_size"}, {"cmdline", "kernel.cmdline"}, {"layer", "layers"},
	{"platform", "platforms"}, {"source-date-epoch", "source_date_epoch"}, {"no-journal", "no_journal"},
	{"no-grow", "first_boot.grow"}, {"keep", "first_boot.keep"},
	{"boot", "boot.mode"}, {"table", "boot.table"}, {"uki", "boot.uki"}, {"boot-chain", "boot.chain"},
	{"rootfs", "rootfs"}, {"verity", "verity"},
	{"sign-key", "secure_boot.key"}, {"sign-cert", "secure_boot.cert"}, {"enroll-keys", "secure_boot.enroll"},
	{"print-spec", "the file itself"}, {"class", "the class names"},
}

// classRun is one class × platform of a file, as a plan.
type classRun struct {
	class    *spec.Class
	platform spec.Platform
	plan     assemble.Plan
}

// classResult is one line of `build -f … --json`: the class, the platform and the build's result.
type classResult struct {
	Class    string `json:"class"`
	Platform string `json:"platform"`
	assemble.Result
	Cached bool `json:"cached,omitempty"` // the outputs were copied from the cache (cache.go)
}

// runBuildFile is `imgfab build -f FILE [CLASS...]`: every listed class (all by default), in
// file order, once per platform. Every class is turned into plans (and checked) before anything
// is built.
func runBuildFile(ctx context.Context, fl *pflag.FlagSet, path string, names []string, asJSON, insecure bool, push *string, stdout, stderr io.Writer) error {
	if err := noFileSetFlags(fl, path); err != nil {
		return err
	}
	var pushSel []string
	if push != nil {
		var err error
		if pushSel, err = pushSelection(*push); err != nil {
			return err
		}
	}
	f, err := spec.Load(path)
	if err != nil {
		var se *spec.Error
		if errors.As(err, &se) {
			return usagef("%v", err)
		}
		return usagef("-f: %v", err)
	}
	classes, err := pickClasses(f, path, names)
	if err != nil {
		return err
	}
	runs, err := planRuns(classes, insecure, asJSON, stdout)
	if err != nil {
		return err
	}
	if pushSel != nil {
		if err := checkPushes(path, runs, pushSel); err != nil {
			return err
		}
	}
	sr, err := newStoreRun(fl, path, insecure, stderr) // the cache, --locked, --offline (cache.go)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, r := range runs {
		if err := buildRun(ctx, sr, r, enc, asJSON, stdout, stderr); err != nil {
			return err
		}
		if pushSel != nil {
			if err := runClassPushes(ctx, r, pushSel, asJSON, stdout, stderr); err != nil {
				return err
			}
		}
	}
	return nil
}

// noFileSetFlags refuses the build flags a class file sets.
func noFileSetFlags(fl *pflag.FlagSet, path string) error {
	var set []string
	for _, f := range fileSetFlags {
		if fl.Changed(f.flag) {
			set = append(set, fmt.Sprintf("--%s (the file's %s)", f.flag, f.key))
		}
	}
	if len(set) > 0 {
		return usagef("-f %s: the class file sets %s; change the file, or build without -f", path, strings.Join(set, ", "))
	}
	return nil
}

// pickClasses is the classes named on the command line, in file order (all when none is).
func pickClasses(f *spec.File, path string, names []string) ([]*spec.Class, error) {
	if len(names) == 0 {
		return f.Classes, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		if f.Class(n) == nil && strings.ContainsAny(n, ":/") {
			return nil, usagef("-f %s: %q: the arguments after -f FILE are class names, not a SOURCE (the file's from: is the source)", path, n)
		}
		if f.Class(n) == nil {
			return nil, usagef("-f %s: no class %q (the file has: %s)", path, n, strings.Join(f.Names(), ", "))
		}
		want[n] = true
	}
	var classes []*spec.Class
	for _, c := range f.Classes {
		if want[c.Name] {
			classes = append(classes, c)
		}
	}
	return classes, nil
}

// planRuns turns every class × platform into a plan, checked before anything is built.
func planRuns(classes []*spec.Class, insecure, asJSON bool, stdout io.Writer) ([]classRun, error) {
	var runs []classRun
	for _, c := range classes {
		for _, pl := range c.Platforms {
			p, err := classPlan(c, pl)
			if err != nil {
				return nil, err
			}
			p.Insecure = insecure
			p.Stdout = stdout
			runs = append(runs, classRun{c, pl, p})
		}
	}
	for _, r := range runs {
		for _, o := range r.plan.Outputs {
			if o.Path == "-" && (asJSON || len(runs) > 1) {
				return nil, usagef("%s: an output - (stdout) needs a file with one class and one platform, and no --json", o.Path)
			}
		}
	}
	return runs, nil
}

// buildRun builds one class × platform (or copies it from the cache) and prints its result.
func buildRun(ctx context.Context, sr *storeRun, r classRun, enc *json.Encoder, asJSON bool, stdout, stderr io.Writer) error {
	// A file's outputs go under directories it names (out/{class}.qcow2): made as needed.
	for _, o := range r.plan.Outputs {
		if o.Path != "-" {
			if err := os.MkdirAll(filepath.Dir(o.Path), 0o777); err != nil {
				return fmt.Errorf("class %s: %w", r.class.Name, err)
			}
		}
	}
	prog := newProgress(stderr)
	r.plan.Progress = prog.event
	res, cached, err := sr.run(ctx, &r)
	prog.done()
	if err != nil {
		var ie *customize.ItemError
		if errors.As(err, &ie) { // the file asks for what the image cannot give: exit 2
			return usagef("%v (class %s, %s)", ie, r.class.Name, r.platform)
		}
		return fmt.Errorf("class %s (%s): %w", r.class.Name, r.platform, err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "imgfab build: %s: warning: %s\n", r.class.Name, w)
	}
	if asJSON {
		return enc.Encode(classResult{r.class.Name, r.platform.String(), res, cached})
	}
	for _, o := range res.Outputs {
		w := stdout
		if o.Path == "-" {
			w = stderr
		}
		fmt.Fprintf(w, "%s %s: %s: %s%s\n", r.class.Name, r.platform, o.Path, outputLine(&res, o), cachedNote(cached))
	}
	return nil
}

// classPlan is the plan of one class for one platform. What a file can say but a build cannot do
// yet is a usage error naming its position.
func classPlan(c *spec.Class, pl spec.Platform) (assemble.Plan, error) {
	if _, err := bootloader.ArchFor(pl.Arch); err != nil {
		return assemble.Plan{}, usagef("%s: classes.%s.platforms: %s: %v", pl.Pos, c.Name, pl, err)
	}
	p := assemble.Plan{
		Source:    c.FromAbs,
		Platform:  pl.String(),
		Cmdline:   c.Kernel.Cmdline,
		Size:      c.Disk.Size,
		ESPSize:   c.ESPSize,
		NoJournal: c.NoJournal,
		Boot:      assemble.BootOptions{Mode: c.Boot.Mode, Table: c.Boot.Table, UKI: c.Boot.UKI, Chain: c.Boot.Chain},
		FirstBoot: assemble.FirstBootOptions{NoGrow: c.FirstBoot.NoGrow, Keep: c.FirstBoot.Keep},
		RootFS:    c.RootFS,
		Verity:    c.Verity,
		Checksum:  true, // the cache and imgfab serve keep outputs by their sha256
	}
	if sb := c.SecureBoot; sb != nil {
		p.Sign = &assemble.SignOptions{Key: sb.KeyAbs, Cert: sb.CertAbs, Enroll: sb.EnrollAbs}
	}
	for i, k := range c.FirstBoot.Keep {
		if err := firstboot.CheckKeep([]string{k}); err != nil {
			return assemble.Plan{}, usagef("%s: classes.%s.first_boot.keep[%d]: %v", c.FirstBoot.KeepPos[i], c.Name, i, err)
		}
	}
	// The defaults of the flags, which shape the seed.
	if p.Boot.Mode == "" {
		p.Boot.Mode = "auto"
	}
	if p.Boot.Table == "" {
		p.Boot.Table = "gpt"
	}
	if p.ESPSize == 0 {
		p.ESPSize = spec.DefaultESPSize
	}
	if p.RootFS == "" {
		p.RootFS = "ext4"
	}
	for _, l := range c.Layers {
		p.ExtraLayers = append(p.ExtraLayers, l.Abs)
		p.SeedLayers = append(p.SeedLayers, l.Path)
	}
	if c.SourceDateEpoch != nil {
		e := *c.SourceDateEpoch
		p.SourceDateEpoch = &e
	} else if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		e, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || e < 0 || e > assemble.MaxEpoch {
			return assemble.Plan{}, usagef("SOURCE_DATE_EPOCH: %q: want %s", s, assemble.EpochWant)
		}
		p.SourceDateEpoch = &e
	}
	for _, o := range c.Expand(pl) {
		p.Outputs = append(p.Outputs, assemble.Output{Path: o.Path, Format: o.Format, Compress: o.Compress})
	}
	for _, part := range c.Partitions {
		p.Partitions = append(p.Partitions, assemble.ExtraPartition{Mount: part.Mount, Size: part.Size, FS: part.FS,
			Label: part.Label, Type: part.TypeGUID(), Where: part.Pos.String()})
	}
	cfg, err := classCustomize(c)
	if err != nil {
		return assemble.Plan{}, err
	}
	p.Customize = cfg
	if err := p.CheckNumbers(); err != nil {
		return assemble.Plan{}, usagef("%s: classes.%s: %v", c.Pos, c.Name, err)
	}
	return p, nil
}

// classCustomize is the class's customisation, nil when it has none (the build is then the
// plain build's, byte for byte).
func classCustomize(c *spec.Class) (*customize.Config, error) {
	if len(c.Files) == 0 && len(c.Directories) == 0 && len(c.Users) == 0 && len(c.Groups) == 0 &&
		c.Hostname == "" && c.Timezone == "" && len(c.Units.Enable)+len(c.Units.Disable)+len(c.Units.Mask) == 0 {
		return nil, nil
	}
	cfg := &customize.Config{Hostname: c.Hostname, HostnameWhere: c.Pos.String(), Timezone: c.Timezone, TimezoneWhere: c.TimezonePos.String()}
	for _, g := range c.Groups {
		gid := g.GID
		cfg.Groups = append(cfg.Groups, customize.Group{Name: g.Name, GID: &gid, Where: g.Pos.String()})
	}
	for _, u := range c.Users {
		uid := u.UID
		cu := customize.User{Name: u.Name, UID: &uid, Groups: u.Groups, Shell: u.Shell, Home: u.Home,
			SSHAuthorizedKeys: u.SSHAuthorizedKeys, PasswordHash: u.PasswordHash, Where: u.Pos.String()}
		if u.PrimaryGroup == "" { // gid written: an existing group
			gid := u.GID
			cu.GID = &gid
		}
		cfg.Users = append(cfg.Users, cu)
	}
	for _, d := range c.Directories {
		uid, gid, user, group := classOwner(c, d.Owner)
		cfg.Directories = append(cfg.Directories, customize.Directory{Path: d.Path, Mode: d.Mode, UID: uid, GID: gid, User: user, Group: group, Where: d.Pos.String()})
	}
	for _, fe := range c.Files {
		uid, gid, user, group := classOwner(c, fe.Owner)
		cf := customize.File{Path: fe.Path, Mode: fe.Mode, UID: uid, GID: gid, User: user, Group: group, Where: fe.Pos.String()}
		if fe.Source != "" {
			cf.Source = fe.SourceAbs
		} else {
			cf.Content = []byte(fe.Content)
		}
		cfg.Files = append(cfg.Files, cf)
	}
	units := func(l []spec.Unit) []customize.Unit {
		var out []customize.Unit
		for _, u := range l {
			out = append(out, customize.Unit{Name: u.Name, Where: u.Pos.String()})
		}
		return out
	}
	cfg.Units = customize.Units{Enable: units(c.Units.Enable), Disable: units(c.Units.Disable), Mask: units(c.Units.Mask)}
	return cfg, nil
}

// classOwner is an owner's uid and gid (numbers, root, or the class's own users and groups),
// or the names to look up in the image's /etc/passwd and /etc/group at build time.
func classOwner(c *spec.Class, o spec.Owner) (uid, gid int, user, group string) {
	if id, ok := ownerID(o.User, func(n string) (uint32, bool) {
		for _, u := range c.Users {
			if u.Name == n {
				return u.UID, true
			}
		}
		return 0, false
	}); ok {
		uid = int(id)
	} else {
		user = o.User
	}
	if id, ok := ownerID(o.Group, func(n string) (uint32, bool) {
		for _, g := range c.Groups {
			if g.Name == n {
				return g.GID, true
			}
		}
		for _, u := range c.Users {
			if u.PrimaryGroup == n {
				return u.GID, true
			}
		}
		return 0, false
	}); ok {
		gid = int(id)
	} else {
		group = o.Group
	}
	return uid, gid, user, group
}

func ownerID(s string, class func(string) (uint32, bool)) (uint32, bool) {
	switch s {
	case "", "root":
		return 0, true
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), true
	}
	return class(s)
}

// printSpec prints the one-class file that builds what the plan builds (`build … --print-spec`).
// The file is read back before it is printed: what it cannot say is an error.
func printSpec(p assemble.Plan, name string, stdout io.Writer) error {
	if name == "" {
		name = "default"
	}
	platform := p.Platform
	if platform == "" {
		platform = "linux/amd64"
	}
	var pls []spec.Platform
	for _, one := range strings.Split(platform, ",") {
		parts := strings.Split(one, "/")
		if len(parts) < 2 || len(parts) > 3 {
			return usagef("--print-spec: --platform %q: want OS/ARCH[/VARIANT]", p.Platform)
		}
		pl := spec.Platform{OS: parts[0], Arch: parts[1]}
		if len(parts) == 3 {
			pl.Variant = parts[2]
		}
		pls = append(pls, pl)
	}
	c := &spec.Class{
		Name: name, From: p.Source, Platforms: pls,
		Kernel:  spec.Kernel{Cmdline: p.Cmdline},
		Boot:    spec.Boot{Mode: p.Boot.Mode, Table: p.Boot.Table, UKI: p.Boot.UKI, Chain: p.Boot.Chain},
		Disk:    spec.Disk{Size: p.Size},
		ESPSize: p.ESPSize, SourceDateEpoch: p.SourceDateEpoch, NoJournal: p.NoJournal,
		FirstBoot: spec.FirstBoot{NoGrow: p.FirstBoot.NoGrow, Keep: p.FirstBoot.Keep},
		RootFS:    p.RootFS, Verity: p.Verity,
	}
	if p.Sign != nil {
		c.SecureBoot = &spec.SecureBoot{Key: p.Sign.Key, Cert: p.Sign.Cert, Enroll: p.Sign.Enroll}
	}
	if c.RootFS == "ext4" {
		c.RootFS = ""
	}
	if c.Boot.Mode == "auto" {
		c.Boot.Mode = ""
	}
	if c.Boot.Table == "gpt" {
		c.Boot.Table = ""
	}
	if c.ESPSize == spec.DefaultESPSize {
		c.ESPSize = 0
	}
	for _, l := range p.ExtraLayers {
		c.Layers = append(c.Layers, spec.Layer{Path: l})
	}
	for _, o := range p.Outputs {
		c.Outputs = append(c.Outputs, spec.Output{Path: o.Path, Format: o.Format, Compress: o.Compress})
	}
	out := (&spec.File{Classes: []*spec.Class{c}}).YAML()
	if _, err := spec.Parse("--print-spec", out); err != nil {
		return usagef("--print-spec: these flags have no class file equivalent: %v", err)
	}
	_, err := stdout.Write(out)
	return err
}
