package spec

import (
	"fmt"
	"strings"
)

// Pos is where a value was written: the file name given to [Parse] (or the path given to
// [Load]), and the 1-based line and column of the value. The zero Pos is a value that was not
// written but defaulted.
type Pos struct {
	File string
	Line int
	Col  int
}

// String is "file:line:col", or just the file name when the line is unknown.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is what Parse and Load return for a file that is not a valid class file: the position
// of the offending key or value, the dotted path of the value (e.g. "classes.web.users[0].uid")
// and what was wrong and what was expected.
type Error struct {
	Pos  Pos
	Path string // "" for the document as a whole
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Pos.String() + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Path + ": " + e.Msg
}

// Errorf returns an *Error at pos. The layers that act on a parsed file (customisation, build)
// use it so that a problem found at build time, such as a unit that is not in the image, names
// the line of the file that asked for it.
func Errorf(pos Pos, path, format string, args ...any) *Error {
	return &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// File is a parsed class file.
type File struct {
	Name    string   // the name given to Parse, used in every Pos
	Dir     string   // absolute directory that relative paths in the file are resolved against
	Classes []*Class // in the order of the file

	byName map[string]*Class
}

// Class returns the class with the given name, or nil.
func (f *File) Class(name string) *Class { return f.byName[name] }

// Names returns the class names in file order.
func (f *File) Names() []string {
	names := make([]string, len(f.Classes))
	for i, c := range f.Classes {
		names[i] = c.Name
	}
	return names
}

// Class is one image: a source, what goes on top of it, and where the result goes. Every field
// has been checked by Parse; the zero value of an optional field means "not given" and its
// default is documented with the field (and filled by [Class.Canonical]).
type Class struct {
	Name string
	Pos  Pos    // of the class's key
	Dir  string // the file's directory (absolute), for relative paths

	// From is the source image in the SOURCE syntax of `imgfab build`: oci:DIR[:TAG],
	// docker-archive:FILE, docker://REF or REF. Never empty. A relative DIR or FILE is kept as
	// written; see FromAbs.
	From    string
	FromPos Pos
	// FromAbs is From with a relative oci: or docker-archive: path made absolute against Dir.
	FromAbs string

	// Platforms to build, in file order, never empty: [linux/amd64] when not given.
	Platforms []Platform
	// Layers are directories or tar files applied on top of the image, in order.
	Layers []Layer

	Kernel Kernel
	Boot   Boot
	Disk   Disk
	// ESPSize is the EFI system partition's size in bytes; 0: imgfab's default (256 MiB).
	ESPSize    int64
	ESPSizePos Pos
	// SourceDateEpoch is the unix time of every timestamp imgfab writes; nil: the image's
	// created time (or $SOURCE_DATE_EPOCH, as for a plain build).
	SourceDateEpoch *int64
	// NoJournal makes the ext4 root without a journal.
	NoJournal bool
	// RootFS is the root's filesystem as written: "ext4" (writable) or "erofs" (read-only, with
	// /var on an ext4 partition of its own); "" means "ext4".
	RootFS    string
	RootFSPos Pos
	// Verity puts the erofs root under dm-verity (its hash tree in a root-verity partition,
	// roothash= on the kernel command line). Parse refuses it without RootFS "erofs".
	Verity    bool
	VerityPos Pos
	// SecureBoot signs the EFI binaries of the ESP with the user's own key; nil: unsigned.
	SecureBoot *SecureBoot
	// FirstBoot switches off first-boot preparations (imgfab build --no-grow, --keep).
	FirstBoot FirstBoot

	Files       []FileEntry
	Directories []Directory
	Users       []User
	Groups      []Group
	// Hostname is written to /etc/hostname; "" leaves the image's.
	Hostname string
	// Timezone is an IANA zone name such as "Europe/Berlin" that /etc/localtime is made to point
	// to; "" leaves the image's. Parse checks the shape of the name only; whether the zone exists
	// is checked at build time against the image's /usr/share/zoneinfo.
	Timezone    string
	TimezonePos Pos
	Units       Units
	Partitions  []Partition
	Outputs     []Output
	Publish     []Publish
}

// Platform is an os/arch[/variant] triple. The OS is always "linux"; the architectures are
// amd64 and arm64.
type Platform struct {
	OS      string
	Arch    string
	Variant string
	Pos     Pos
}

// String is the OCI form, "linux/amd64" or "linux/arm64/v8".
func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Slug is the platform as it goes into a file name ({platform}): "linux-amd64",
// "linux-arm64-v8".
func (p Platform) Slug() string { return strings.ReplaceAll(p.String(), "/", "-") }

// Layer is a directory or tar file applied on top of the image.
type Layer struct {
	Path string // as written
	Abs  string // Path made absolute against the file's directory
	Pos  Pos
}

// Kernel holds the kernel command line. imgfab writes "root=PARTUUID=… rw" itself and appends
// Cmdline after it.
type Kernel struct {
	Cmdline string
}

// Boot selects the boot chain, as `imgfab build` flags --boot, --table, --uki and --boot-chain.
type Boot struct {
	Mode  string // "auto" (default), "uefi", "bios" or "hybrid"; "" means "auto"
	Table string // "gpt" (default) or "mbr"; "" means "gpt"
	UKI   bool
	Chain string // "" or "shim"
	Pos   Pos    // of the boot mapping, for problems found at build time
}

// SecureBoot is the secure_boot section, as `imgfab build` --sign-key, --sign-cert and
// --enroll-keys: the EFI binaries on the ESP (systemd-boot, the UKI) are signed with Key and
// Cert; Enroll, when given, is a directory with PK.auth, KEK.auth and db.auth (`imgfab keys
// create DIR`) that systemd-boot enrolls in a firmware in setup mode. The paths are on the build
// host, relative to the class file; Parse only resolves them: the files are read at build time.
// Key is a private key: the build reads it to sign and to take its public half, and never copies,
// logs or keeps it.
type SecureBoot struct {
	Key, Cert, Enroll          string // as written; Enroll "" when not given
	KeyAbs, CertAbs, EnrollAbs string // made absolute against the file's directory
	Pos                        Pos    // of the secure_boot mapping
}

// Disk is the whole disk's geometry.
type Disk struct {
	// Size in bytes, a multiple of 1 MiB (a size that is not is rounded up, as --size does);
	// 0: content plus headroom.
	Size int64
	Pos  Pos
}

// FileEntry is a file written into the image. Its content is Content when Source is "", else
// the bytes of the local file Source.
type FileEntry struct {
	Path      string // absolute, clean, not "/"
	Content   string
	Source    string // as written; "" for inline content
	SourceAbs string // Source made absolute against the file's directory
	Mode      uint32 // permission bits (with setuid, setgid, sticky); default 0644
	Owner     Owner  // default 0:0
	Pos       Pos
}

// Directory is a directory made in the image (with its missing parents, owned by root, 0755).
type Directory struct {
	Path  string
	Mode  uint32 // default 0755
	Owner Owner  // default 0:0
	Pos   Pos
}

// Owner is a "user:group" pair. Each side is a decimal id or a name; a name is looked up at
// build time in the image's /etc/passwd and /etc/group and in the class's own users and groups.
type Owner struct {
	User  string
	Group string
}

// String is "user:group".
func (o Owner) String() string { return o.User + ":" + o.Group }

// User is an account added to the image's /etc/passwd, /etc/shadow (and /etc/group, /etc/gshadow
// for its own group).
type User struct {
	Name string
	UID  uint32
	// GID is the primary group's id. When `gid` is not written, imgfab creates a group named
	// after the user with gid = uid, and PrimaryGroup is Name; when it is written, the group must
	// exist (in the image or in the class's groups) and PrimaryGroup is "".
	GID          uint32
	PrimaryGroup string
	Groups       []string // supplementary group names
	Shell        string   // default /bin/sh
	Home         string   // default /home/NAME
	// SSHAuthorizedKeys are written to HOME/.ssh/authorized_keys, one a line.
	SSHAuthorizedKeys []string
	// PasswordHash is a crypt(3) hash ("$6$…", "$y$…"), "!" or "*" (locked; the default is "!"),
	// or "!" before a hash (a hash kept but locked). Never a plain password.
	PasswordHash string
	Pos          Pos
}

// Group is an extra group added to /etc/group and /etc/gshadow.
type Group struct {
	Name string
	GID  uint32
	Pos  Pos
}

// Units are systemd units enabled, disabled or masked offline, the way systemctl would. Each
// must exist in the image; that is checked at build time.
type Units struct {
	Enable  []Unit
	Disable []Unit
	Mask    []Unit
}

// Unit is a systemd unit name, such as "nginx.service" or "getty@ttyS0.service".
type Unit struct {
	Name string
	Pos  Pos
}

// Partition is a partition beyond the ESP and the root.
type Partition struct {
	// Mount is where it is mounted (an /etc/fstab line); "" for swap and raw partitions.
	Mount string
	Size  int64  // bytes, a multiple of 1 MiB
	FS    string // "ext4", "swap" or "none" (a raw partition)
	// Label is the GPT partition name and the filesystem label; "" for none.
	Label string
	// Type is a Discoverable Partitions type name ("var", "tmp" for /var/tmp, "home", "srv",
	// "swap", "linux-generic"); when not written it follows from Mount and FS. See TypeGUID.
	Type string
	Pos  Pos
}

// TypeGUID is the GPT type GUID of the partition's Type (upper case).
func (p Partition) TypeGUID() string { return partitionTypes[p.Type] }

// Output is a disk file to write.
type Output struct {
	// Path may hold {class}, {platform} and {arch}; relative to the file's directory; "-" is
	// standard output (then Format is required).
	Path     string
	Format   string // a format name of `imgfab build --format`; "": from Path's extension
	Compress string // "" or a compression the format takes
	Pos      Pos
}

// Publish is a target that `imgfab build --push` pushes the class's disk to, as
// `imgfab push TARGET`.
type Publish struct {
	Target string // aws, gcp, azure or oci
	// Params are the target's parameters, keys in snake_case as the flags of `imgfab push
	// TARGET` (resource_group for --resource-group). Values may hold {class}, {platform} and
	// {arch}. Credentials are never parameters: they come from the environment, as for push.
	Params map[string]string
	Pos    Pos
}

// FirstBoot is the first_boot section: which of the first-boot preparations to leave out
// (package firstboot). The zero value does them all.
type FirstBoot struct {
	NoGrow  bool     // grow: false
	Keep    []string // operation names, checked by the build (firstboot.CheckKeep)
	KeepPos []Pos
}
