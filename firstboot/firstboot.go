package firstboot

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/imgfab/imgfab/customize"
)

// MaxFstab is the largest /etc/fstab that is merged; a larger one is an error.
const MaxFstab = 1 << 20

// Operation names, for Options.Keep (see the package documentation).
const (
	OpMachineID   = "machine-id"
	OpSSHHostKeys = "ssh-hostkeys"
	OpRandomSeed  = "random-seed"
	OpCredentials = "credentials"
	OpLogFiles    = "logfiles"
	OpDHCP        = "dhcp-client-state"
	OpBashHistory = "bash-history"
	OpTmpFiles    = "tmp-files"
	OpHostname    = "hostname"
	OpFstab       = "fstab"
	OpGrow        = "grow"
)

// Operations lists every operation, in the order they are reported.
var Operations = []string{OpMachineID, OpSSHHostKeys, OpRandomSeed, OpCredentials, OpLogFiles, OpDHCP,
	OpBashHistory, OpTmpFiles, OpHostname, OpFstab, OpGrow}

// Options say what to prepare and what the disk will be.
type Options struct {
	// Keep names operations not to do ("all": none of them).
	Keep []string
	// NoGrow leaves the root at the image's size (the same as Keep "grow").
	NoGrow bool
	// KeepHostname keeps the image's /etc/hostname (a class that sets its own).
	KeepHostname bool
	// Table is the partition table, "gpt" or "mbr": systemd-repart grows only GPT partitions.
	Table string
	// RootFSUUID is the root filesystem's UUID (lower-case, with dashes); RootFS its type ("ext4").
	RootFSUUID, RootFS string
	// ESPSerial is the ESP's FAT volume serial as Linux names it ("1A2B-3C4D"); "" when the disk
	// has no ESP.
	ESPSerial string
	// Epoch is the mtime of every entry added.
	Epoch time.Time
	// ReadOnly says the root is mounted read-only (an erofs root, possibly under dm-verity): its
	// fstab line says "ro" with no fsck pass, /tmp is a tmpfs, /etc/machine-id is an empty file
	// (systemd bind-mounts a generated id over it at boot, machine-id(5)) and growth is /var's.
	ReadOnly bool
	// RootSpec names the root in fstab instead of UUID=RootFSUUID ("/dev/mapper/root" under
	// dm-verity, where the data partition carries the same filesystem UUID as the mapped device).
	RootSpec string
	// VarFSUUID is the UUID of /var's own ext4 filesystem on the last partition of a read-only
	// disk: /var gets an fstab line and is what grows on first boot (systemd-repart Type=var).
	VarFSUUID string
}

// Op is one thing done, for --json.
type Op struct {
	Op     string `json:"op"`               // an operation name
	Path   string `json:"path,omitempty"`   // the absolute path changed or added
	Detail string `json:"detail,omitempty"` // what was done to it
}

// Result is what the preparation did and could not do.
type Result struct {
	Ops      []Op     `json:"ops"`
	Warnings []string `json:"warnings,omitempty"`
}

// CheckKeep checks operation names (for a usage error before any work).
func CheckKeep(names []string) error {
	for _, n := range names {
		if n != "all" && !slices.Contains(Operations, n) {
			return fmt.Errorf("first-boot operation %q: want all or one of %s", n, strings.Join(Operations, ", "))
		}
	}
	return nil
}

// Preparer prepares one stream. Call Entry for every entry in order, then Finish once.
type Preparer struct {
	o    Options
	on   map[string]bool
	res  Result
	seen map[string]byte // paths of interest seen in the stream, and their tar type
	// dropped are the removed regular files, so that a later hard link to one is removed too.
	dropped map[string]bool
	fstab   []byte
	fstabOK bool
	// fstabHdr is the image's /etc/fstab entry: the merged file keeps its mode, owner and time.
	fstabHdr *tar.Header
	hasEtc   bool
	// hostnameHdr is the image's /etc/hostname (nil: none), hostnameOld its content.
	hostnameHdr *tar.Header
	hostnameOld []byte
	// machineIDHdr is the image's /etc/machine-id (nil: none), machineIDOld its content.
	machineIDHdr *tar.Header
	machineIDOld string
}

// New makes a Preparer.
func New(o Options) (*Preparer, error) {
	if err := CheckKeep(o.Keep); err != nil {
		return nil, err
	}
	if o.Table != "gpt" && o.Table != "mbr" {
		return nil, fmt.Errorf("first boot: partition table %q: want gpt or mbr", o.Table)
	}
	p := &Preparer{o: o, on: map[string]bool{}, seen: map[string]byte{}, dropped: map[string]bool{}}
	for _, n := range Operations {
		p.on[n] = !slices.Contains(o.Keep, n) && !slices.Contains(o.Keep, "all")
	}
	if o.NoGrow {
		p.on[OpGrow] = false
	}
	if o.KeepHostname {
		p.on[OpHostname] = false
	}
	if o.ESPSerial == "" && o.RootFSUUID == "" {
		p.on[OpFstab] = false
	}
	return p, nil
}

// watched are the paths whose presence decides what Finish adds.
var watched = map[string]bool{
	"usr/sbin/sshd": true, "sbin/sshd": true,
	"usr/bin/ssh-keygen": true, "bin/ssh-keygen": true,
	"usr/lib/systemd/system/sshd-keygen@.service": true, "lib/systemd/system/sshd-keygen@.service": true,
	"usr/bin/systemd-repart": true, "bin/systemd-repart": true,
	"usr/lib/systemd/systemd-growfs": true, "lib/systemd/systemd-growfs": true,
	"usr/lib/systemd/systemd": true, "lib/systemd/systemd": true,
	"usr/bin/growpart": true, "bin/growpart": true, "usr/sbin/growpart": true,
	"usr/bin/cloud-init": true,
	"var/lib/dbus":       true, "efi": true, "boot/efi": true, "boot": true, "etc/machine-id": true,
}

// generated are the files Finish may add: an image built by imgfab before has them, and they
// are made again (or not) as this build's options say.
var generated = map[string]bool{
	"etc/repart.d/" + repartConf:                                  true,
	"etc/repart.d/" + repartVarConf:                               true,
	"etc/systemd/system/" + growpartUnit:                          true,
	"etc/systemd/system/sysinit.target.wants/" + growpartUnit:     true,
	"etc/systemd/system/" + sshKeygenUnit:                         true,
	"etc/systemd/system/multi-user.target.wants/" + sshKeygenUnit: true,
}

// Entry passes one entry of the stream on to add, dropped or changed as the operations say.
func (p *Preparer) Entry(hdr *tar.Header, body io.Reader, add func(*tar.Header, io.Reader) error) error {
	name := strings.TrimSuffix(hdr.Name, "/")
	if watched[name] {
		p.seen[name] = hdr.Typeflag
	}
	if name == "etc" || strings.HasPrefix(name, "etc/") {
		p.hasEtc = true
	}
	if generated[name] && hdr.Typeflag != tar.TypeDir {
		p.dropped[name] = true
		return nil
	}
	if strings.HasPrefix(name, "etc/repart.d/") || strings.HasPrefix(name, "usr/lib/repart.d/") ||
		strings.HasPrefix(name, "usr/local/lib/repart.d/") || strings.HasPrefix(name, "lib/repart.d/") {
		if strings.HasSuffix(name, ".conf") {
			p.seen["repart.d"] = tar.TypeReg
		}
	}
	if hdr.Typeflag == tar.TypeLink && p.dropped[strings.TrimSuffix(hdr.Linkname, "/")] {
		p.dropped[name] = true
		return nil
	}
	op, what := p.classify(name, hdr)
	switch what {
	case drop:
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
			p.dropped[name] = true
		}
		p.did(op, name, "removed")
		return nil
	case empty:
		if hdr.Size == 0 {
			return add(hdr, body)
		}
		h := *hdr
		h.Size = 0
		p.did(op, name, fmt.Sprintf("emptied (%d bytes)", hdr.Size))
		return add(&h, bytes.NewReader(nil))
	case hold:
		return p.hold(name, hdr, body)
	}
	return add(hdr, body)
}

type action int

const (
	pass action = iota
	drop
	empty
	hold
)

// classify says what an operation does to the entry name, and which.
func (p *Preparer) classify(name string, hdr *tar.Header) (string, action) {
	reg := hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA
	notDir := hdr.Typeflag != tar.TypeDir
	dir, base := path.Split(name)
	switch {
	case name == "etc/machine-id" && p.on[OpMachineID] && notDir:
		return OpMachineID, hold
	case name == "var/lib/dbus/machine-id" && p.on[OpMachineID] && notDir:
		return OpMachineID, drop // a symlink to /etc/machine-id is added by Finish
	case dir == "etc/ssh/" && strings.HasPrefix(base, "ssh_host_") && p.on[OpSSHHostKeys] && notDir:
		return OpSSHHostKeys, drop
	case (name == "var/lib/systemd/random-seed" || name == "var/lib/urandom/random-seed" || name == "var/lib/random-seed") && p.on[OpRandomSeed] && notDir:
		return OpRandomSeed, drop
	case name == "var/lib/systemd/credential.secret" && p.on[OpCredentials] && notDir:
		return OpCredentials, drop
	case strings.HasPrefix(name, "var/log/journal/") && p.on[OpLogFiles] && reg:
		return OpLogFiles, drop
	case strings.HasPrefix(name, "var/log/") && p.on[OpLogFiles] && reg:
		return OpLogFiles, empty
	case p.on[OpDHCP] && notDir && isLease(dir, base):
		return OpDHCP, drop
	case base == ".bash_history" && (dir == "root/" || strings.HasPrefix(dir, "home/") && strings.Count(dir, "/") == 2) && p.on[OpBashHistory] && notDir:
		return OpBashHistory, drop
	case (strings.HasPrefix(name, "tmp/") || strings.HasPrefix(name, "var/tmp/")) && p.on[OpTmpFiles]:
		return OpTmpFiles, drop
	case name == "etc/hostname" && p.on[OpHostname] && notDir:
		return OpHostname, hold
	case name == "etc/fstab" && p.on[OpFstab]:
		if !reg {
			p.warn("first boot: /etc/fstab is a %s, not a regular file: the root and ESP lines are not added", typeName(hdr.Typeflag))
			p.on[OpFstab] = false // left alone: Finish writes no /etc/fstab beside it
			return "", pass
		}
		return OpFstab, hold
	}
	return "", pass
}

// hold keeps /etc/fstab or /etc/machine-id for Finish, which writes them once the whole image
// has been seen (machine-id's content depends on whether the image runs systemd).
func (p *Preparer) hold(name string, hdr *tar.Header, body io.Reader) error {
	if name == "etc/hostname" {
		old, err := io.ReadAll(io.LimitReader(body, maxHostnameFile+1))
		if err != nil {
			return fmt.Errorf("first boot: reading /etc/hostname: %w", err)
		}
		if len(old) > maxHostnameFile {
			return fmt.Errorf("first boot: /etc/hostname is more than %d bytes", maxHostnameFile)
		}
		h := *hdr
		p.hostnameHdr, p.hostnameOld = &h, old
		return nil
	}
	if name == "etc/machine-id" {
		old, err := io.ReadAll(io.LimitReader(body, 4096))
		if err != nil {
			return fmt.Errorf("first boot: reading /etc/machine-id: %w", err)
		}
		h := *hdr
		if h.Typeflag == tar.TypeRegA {
			h.Typeflag = tar.TypeReg
		}
		p.machineIDHdr, p.machineIDOld = &h, string(old)
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(body, MaxFstab+1))
	if err != nil {
		return fmt.Errorf("first boot: reading /etc/fstab: %w", err)
	}
	if len(data) > MaxFstab {
		return fmt.Errorf("first boot: /etc/fstab is more than %d bytes", MaxFstab)
	}
	h := *hdr
	p.fstab, p.fstabOK, p.fstabHdr = data, true, &h
	return nil
}

// isLease reports a DHCP client's lease or state file.
func isLease(dir, base string) bool {
	switch dir {
	case "var/lib/dhcp/", "var/lib/dhclient/":
		return strings.HasSuffix(base, ".leases") || strings.HasSuffix(base, ".lease")
	case "var/lib/NetworkManager/":
		return strings.HasSuffix(base, ".lease")
	case "var/lib/dhcpcd/", "var/lib/dhcpcd5/", "var/db/dhcpcd/":
		return strings.HasSuffix(base, ".lease") || strings.HasSuffix(base, ".lease6") || base == "duid"
	}
	return false
}

// maxHostnameFile bounds the /etc/hostname held back (a name is at most 64 bytes).
const maxHostnameFile = 64 << 10

// finishHostname writes "localhost" in place of the image's /etc/hostname where the image has a
// way to take its name at boot (systemd: from DHCP or hostnamectl; cloud-init: from its
// metadata); elsewhere (a busybox image) the image's own is kept, as nothing would replace it.
func (p *Preparer) finishHostname(add func(*tar.Header, io.Reader) error) error {
	h, old := p.hostnameHdr, p.hostnameOld
	if h == nil {
		return nil
	}
	data := []byte("localhost\n")
	named := p.has("usr/lib/systemd/systemd", "lib/systemd/systemd", "usr/bin/cloud-init")
	if !named || (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && bytes.Equal(old, data) {
		return wrap(add(h, bytes.NewReader(old)), "etc/hostname")
	}
	if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
		h = &tar.Header{Name: h.Name, Mode: 0o644, ModTime: h.ModTime, Format: h.Format}
	}
	h.Typeflag, h.Size, h.Linkname = tar.TypeReg, int64(len(data)), ""
	p.did(OpHostname, "etc/hostname", fmt.Sprintf("%q (was %q)", "localhost", strings.TrimSpace(string(old))))
	return wrap(add(h, bytes.NewReader(data)), "etc/hostname")
}

// machineID is /etc/machine-id's content: systemd's first-boot marker where the image runs
// systemd on a writable root, else empty (dbus-uuidgen --ensure and systemd both fill an empty file).
func (p *Preparer) machineID() string {
	if p.o.ReadOnly {
		return "" // machine-id(5): an empty file on a read-only root, a transient id mounted over it
	}
	if p.has("usr/lib/systemd/systemd", "lib/systemd/systemd") {
		return "uninitialized\n"
	}
	return ""
}

func (p *Preparer) has(names ...string) bool {
	for _, n := range names {
		if _, ok := p.seen[n]; ok {
			return true
		}
	}
	return false
}

func (p *Preparer) did(op, name, detail string) {
	if name != "" {
		name = "/" + name
	}
	p.res.Ops = append(p.res.Ops, Op{Op: op, Path: name, Detail: detail})
}

func (p *Preparer) warn(format string, args ...any) {
	p.res.Warnings = append(p.res.Warnings, fmt.Sprintf(format, args...))
}

// Finish adds what the operations add (the held-back /etc/fstab merged, units, links) through
// add, and returns what was done.
func (p *Preparer) Finish(add func(*tar.Header, io.Reader) error) (Result, error) {
	steps := []func(add func(*tar.Header, io.Reader) error) error{p.finishHostname, p.finishMachineID, p.finishSSH, p.finishGrowAndFstab}
	for _, s := range steps {
		if err := s(add); err != nil {
			return p.res, err
		}
	}
	if p.res.Ops == nil {
		p.res.Ops = []Op{}
	}
	return p.res, nil
}

// finishMachineID links /var/lib/dbus/machine-id to /etc/machine-id where the image has dbus's
// directory, and writes /etc/machine-id where the image had none.
func (p *Preparer) finishMachineID(add func(*tar.Header, io.Reader) error) error {
	if !p.on[OpMachineID] || !p.hasEtc {
		return nil
	}
	id := p.machineID()
	h := p.machineIDHdr
	switch {
	case h == nil:
		if err := p.addFile(add, "etc/machine-id", []byte(id), 0o444); err != nil {
			return err
		}
		p.did(OpMachineID, "etc/machine-id", fmt.Sprintf("added, %q", strings.TrimSpace(id)))
	case h.Typeflag == tar.TypeReg && p.machineIDOld == id:
		h.Size = int64(len(id))
		if err := wrap(add(h, strings.NewReader(id)), "etc/machine-id"); err != nil {
			return err
		}
	default:
		if h.Typeflag != tar.TypeReg {
			h = p.header("etc/machine-id", tar.TypeReg, 0o444)
		}
		h.Size, h.Linkname = int64(len(id)), ""
		if err := wrap(add(h, strings.NewReader(id)), "etc/machine-id"); err != nil {
			return err
		}
		was := "a symlink"
		if p.machineIDHdr.Typeflag == tar.TypeReg {
			was = fmt.Sprintf("%q", strings.TrimSpace(p.machineIDOld))
		}
		p.did(OpMachineID, "etc/machine-id", fmt.Sprintf("%q (was %s)", strings.TrimSpace(id), was))
	}
	if t, ok := p.seen["var/lib/dbus"]; ok && t == tar.TypeDir {
		if err := p.addLink(add, "var/lib/dbus/machine-id", "/etc/machine-id"); err != nil {
			return err
		}
		p.did(OpMachineID, "var/lib/dbus/machine-id", "→ /etc/machine-id")
	}
	return nil
}

// finishSSH adds the host key unit where the image has sshd and no way of its own to make keys.
func (p *Preparer) finishSSH(add func(*tar.Header, io.Reader) error) error {
	if !p.on[OpSSHHostKeys] || !p.has("usr/sbin/sshd", "sbin/sshd") {
		return nil
	}
	if p.has("usr/lib/systemd/system/sshd-keygen@.service", "lib/systemd/system/sshd-keygen@.service") {
		p.did(OpSSHHostKeys, "etc/ssh", "host keys made on boot by the image's sshd-keygen@.service")
		return nil
	}
	if !p.has("usr/lib/systemd/systemd", "lib/systemd/systemd") {
		p.warn("first boot: the image has sshd but not systemd: its SSH host keys were removed and nothing of the image's makes new ones before sshd starts; keep them with --keep ssh-hostkeys, or make them at boot the image's own way")
		return nil
	}
	keygen := "/usr/bin/ssh-keygen"
	if !p.has("usr/bin/ssh-keygen") {
		if !p.has("bin/ssh-keygen") {
			p.warn("first boot: the image has sshd but no ssh-keygen (/usr/bin/ssh-keygen): sshd will find no host keys; install openssh-client, or keep the keys with --keep ssh-hostkeys")
			return nil
		}
		keygen = "/bin/ssh-keygen"
	}
	return p.addUnit(add, OpSSHHostKeys, sshKeygenUnit, strings.ReplaceAll(sshKeygenService, "@KEYGEN@", keygen), "multi-user.target")
}

// finishGrowAndFstab sets up growth and writes /etc/fstab (its root line carries growfs).
func (p *Preparer) finishGrowAndFstab(add func(*tar.Header, io.Reader) error) error {
	growfs := false
	if p.on[OpGrow] && p.hasEtc {
		var err error
		if growfs, err = p.grow(add); err != nil {
			return err
		}
	}
	if !p.on[OpFstab] || !p.hasEtc {
		if growfs {
			p.warn("first boot: the root partition grows but its filesystem does not: x-systemd.growfs goes on the root's /etc/fstab line, which --keep fstab leaves out; add the line yourself or build with --no-grow")
		}
		return nil
	}
	return p.writeFstab(add, growfs)
}

// grow configures the image's growth tools; growfs says the root's fstab line needs
// x-systemd.growfs.
func (p *Preparer) grow(add func(*tar.Header, io.Reader) error) (growfs bool, err error) {
	systemd := p.has("usr/lib/systemd/systemd", "lib/systemd/systemd")
	growfsTool := p.has("usr/lib/systemd/systemd-growfs", "lib/systemd/systemd-growfs")
	repart := p.has("usr/bin/systemd-repart", "bin/systemd-repart")
	growpart := p.has("usr/bin/growpart", "bin/growpart", "usr/sbin/growpart")
	switch {
	case !systemd || !growfsTool:
		if p.has("usr/bin/cloud-init") && growpart {
			p.did(OpGrow, "", "left to cloud-init's growpart and resizefs modules")
			return false, nil
		}
		p.warn("first boot: the root will not grow to its disk: the image has no systemd-growfs (systemd) to resize the filesystem, and not cloud-init with growpart; install systemd, or cloud-init and cloud-guest-utils, or build with --no-grow")
		return false, nil
	case p.has("repart.d") && p.o.Table == "gpt":
		p.did(OpGrow, "etc/repart.d", "the image's own repart.d definitions; the root's filesystem grows with x-systemd.growfs")
		return true, nil
	case repart && p.o.Table == "gpt" && p.o.VarFSUUID != "":
		if err := p.addFile(add, "etc/repart.d/"+repartVarConf, []byte(repartVar), 0o644); err != nil {
			return false, err
		}
		p.did(OpGrow, "etc/repart.d/"+repartVarConf, "systemd-repart grows the /var partition; systemd-growfs its filesystem")
		return true, nil
	case p.o.ReadOnly:
		p.warn("first boot: /var will not grow to its disk: a read-only root grows only its /var partition, with systemd-repart (systemd ≥ 245) on a GPT disk; install it, or build with --no-grow")
		return false, nil
	case repart && p.o.Table == "gpt":
		if err := p.addFile(add, "etc/repart.d/"+repartConf, []byte(repartRoot), 0o644); err != nil {
			return false, err
		}
		p.did(OpGrow, "etc/repart.d/"+repartConf, "systemd-repart grows the root partition; systemd-growfs its filesystem")
		return true, nil
	case growpart:
		if err := p.addUnit(add, OpGrow, growpartUnit, growpartService, "sysinit.target"); err != nil {
			return false, err
		}
		return true, nil
	}
	what := "growpart (cloud-guest-utils)"
	if p.o.Table == "gpt" {
		what = "systemd-repart (systemd ≥ 245) or growpart (cloud-guest-utils)"
	}
	p.warn("first boot: the root will not grow to its disk: the image has neither %s; install it, or build with --no-grow", what)
	return false, nil
}

// writeFstab merges the root's and the ESP's lines into the held-back /etc/fstab.
func (p *Preparer) writeFstab(add func(*tar.Header, io.Reader) error, growfs bool) error {
	var entries []customize.FstabEntry
	growOpt := func(opts string) string {
		if growfs {
			return opts + ",x-systemd.growfs"
		}
		return opts
	}
	spec := p.o.RootSpec
	if spec == "" && p.o.RootFSUUID != "" {
		spec = "UUID=" + p.o.RootFSUUID
	}
	switch {
	case spec != "" && p.o.ReadOnly:
		entries = append(entries, customize.FstabEntry{Spec: spec, Mount: "/", FS: p.o.RootFS, Options: "ro"})
	case spec != "":
		entries = append(entries, customize.FstabEntry{Spec: spec, Mount: "/", FS: p.o.RootFS, Options: growOpt("defaults"), Pass: 1})
	}
	if p.o.VarFSUUID != "" {
		entries = append(entries, customize.FstabEntry{Spec: "UUID=" + p.o.VarFSUUID, Mount: "/var", FS: "ext4", Options: growOpt("defaults"), Pass: 2})
	}
	if p.o.ReadOnly {
		entries = append(entries, customize.FstabEntry{Spec: "tmpfs", Mount: "/tmp", FS: "tmpfs", Options: "mode=1777,nosuid,nodev"})
	}
	espAt := ""
	if p.o.ESPSerial != "" {
		espAt = "/boot/efi"
		efiDir := p.seen["efi"] == tar.TypeDir
		bootDir := !p.has("boot") || p.seen["boot"] == tar.TypeDir
		if efiDir && !p.has("boot/efi") || !bootDir {
			espAt = "/efi"
		}
		entries = append(entries, customize.FstabEntry{Spec: "UUID=" + p.o.ESPSerial, Mount: espAt, FS: "vfat", Options: "umask=0077", Pass: 2})
	}
	merged, replaced, err := customize.MergeFstab(p.fstab, p.fstabOK, entries)
	if err != nil {
		return fmt.Errorf("first boot: /etc/fstab: %w", err)
	}
	if h := p.fstabHdr; h != nil {
		h.Typeflag, h.Size = tar.TypeReg, int64(len(merged))
		if err := wrap(add(h, bytes.NewReader(merged)), "etc/fstab"); err != nil {
			return err
		}
	} else if err := p.addFile(add, "etc/fstab", merged, 0o644); err != nil {
		return err
	}
	detail := "root"
	if p.o.ReadOnly {
		detail += " (read-only)"
	}
	if p.o.VarFSUUID != "" {
		detail += ", /var"
	}
	if p.o.ReadOnly {
		detail += ", /tmp on tmpfs"
	}
	if espAt != "" {
		detail += ", ESP at " + espAt
	}
	if replaced {
		detail += " (replacing the unconfigured base-system file)"
	}
	p.did(OpFstab, "etc/fstab", detail)
	if espAt != "" && !p.has(espAt[1:]) {
		if espAt == "/boot/efi" && !p.has("boot") {
			if err := p.addDir(add, "boot"); err != nil {
				return err
			}
		}
		return p.addDir(add, espAt[1:])
	}
	return nil
}

// addUnit adds a unit file under /etc/systemd/system and its link in target's .wants.
func (p *Preparer) addUnit(add func(*tar.Header, io.Reader) error, op, name, content, target string) error {
	unit := "etc/systemd/system/" + name
	if err := p.addFile(add, unit, []byte(content), 0o644); err != nil {
		return err
	}
	if err := p.addLink(add, "etc/systemd/system/"+target+".wants/"+name, "/"+unit); err != nil {
		return err
	}
	p.did(op, unit, "added, enabled in "+target)
	return nil
}

func (p *Preparer) header(name string, typ byte, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: p.o.Epoch, Format: tar.FormatPAX}
}

func (p *Preparer) addFile(add func(*tar.Header, io.Reader) error, name string, data []byte, mode int64) error {
	h := p.header(name, tar.TypeReg, mode)
	h.Size = int64(len(data))
	return wrap(add(h, bytes.NewReader(data)), name)
}

func (p *Preparer) addLink(add func(*tar.Header, io.Reader) error, name, target string) error {
	h := p.header(name, tar.TypeSymlink, 0o777)
	h.Linkname = target
	return wrap(add(h, nil), name)
}

func (p *Preparer) addDir(add func(*tar.Header, io.Reader) error, name string) error {
	return wrap(add(p.header(name, tar.TypeDir, 0o755), nil), name)
}

func wrap(err error, name string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("first boot: adding /%s: %w", name, err)
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeDir:
		return "directory"
	}
	return fmt.Sprintf("tar type %q", t)
}
