package check

import (
	"slices"
	"strings"
)

// Facts is what the rules look at: plain data that Gather reads from a disk image, or that a test
// writes by hand. A zero field means "not found" (a nil Root: the root filesystem could not be
// read, and the rules that need it say so).
type Facts struct {
	Container Container `json:"container"`
	// Table is the partition table: "gpt", "mbr" or "none".
	Table string `json:"table"`
	// Partitions are the disk's partitions, for the names fstab and root= use.
	Partitions []Partition `json:"partitions,omitempty"`
	// BootModes lists the firmware boot paths the disk has: "uefi-x64" (EFI/BOOT/BOOTX64.EFI),
	// "uefi-aa64" (BOOTAA64.EFI), "uefi-ia32", "uefi-arm", "uefi-riscv64", "uefi-loongarch64",
	// "bios" (boot code in sector 0).
	BootModes []string `json:"boot_modes"`
	// ESP is the EFI system partition's number (0: none).
	ESP int `json:"esp,omitempty"`
	// Cmdlines are the kernel command lines of the default entries, one per boot path found.
	Cmdlines []Cmdline `json:"cmdlines,omitempty"`
	// KernelVersion is the default entry's kernel version (uname -r).
	KernelVersion string `json:"kernel_version,omitempty"`
	// Initrd summarises the default entry's initrd; nil when it has none or it could not be read
	// (InitrdError says which).
	Initrd      *Initrd `json:"initrd,omitempty"`
	InitrdError string  `json:"initrd_error,omitempty"`
	// Root is what the root filesystem holds; nil when it could not be read (RootError says why).
	Root      *Root  `json:"root,omitempty"`
	RootError string `json:"root_error,omitempty"`
}

// Container is the file the disk image is in.
type Container struct {
	// Format is diskfmt's name: "raw", "qcow2", "vmdk", "vhd" (fixed), "vhd-dynamic", "gce".
	Format string `json:"format"`
	// VirtualSize is the guest disk's size in bytes (for "gce", disk.raw's size).
	VirtualSize int64 `json:"virtual_size"`
	// FileSize is the image file's size in bytes; 0 when not known.
	FileSize int64 `json:"file_size,omitempty"`
	// ConvertedTo is the format `imgfab push` converts the disk into before it sends it ("" when
	// it sends the file as it is): the rules on the file's format then judge the conversion.
	ConvertedTo string `json:"converted_to,omitempty"`
}

// Partition is one partition and its filesystem's names.
type Partition struct {
	Number int    `json:"number"`
	Name   string `json:"name,omitempty"`    // GPT partition name (PARTLABEL)
	GUID   string `json:"guid,omitempty"`    // PARTUUID (GPT GUID, or the MBR form SSSSSSSS-PP)
	Type   string `json:"type,omitempty"`    // inspect's short type name ("esp", "root-x86-64", …)
	FS     string `json:"fs,omitempty"`      // filesystem type
	UUID   string `json:"uuid,omitempty"`    // filesystem UUID (vfat: the serial XXXX-XXXX)
	Label  string `json:"label,omitempty"`   // filesystem label
	IsRoot bool   `json:"is_root,omitempty"` // the root filesystem's partition
}

// Cmdline is the kernel command line one boot path passes.
type Cmdline struct {
	// Mode is "uefi" or "bios"; Source names the entry ("systemd-boot entry imgfab-6.1.0",
	// "UKI /EFI/BOOT/BOOTX64.EFI", "GRUB /grub/grub.cfg").
	Mode   string `json:"mode"`
	Source string `json:"source"`
	Line   string `json:"line"`
}

// Initrd is what the initrd holds.
type Initrd struct {
	Source string `json:"source"` // where it was read ("esp:/imgfab/6.1.0-…/initrd.img")
	// Modules are the kernel modules it carries (names normalised: '-' → '_', no .ko suffix).
	Modules []string `json:"modules,omitempty"`
	// KernelVersions are the versions under its lib/modules/.
	KernelVersions []string `json:"kernel_versions,omitempty"`
	// Builtin are the modules its modules.builtin lists (normalised).
	Builtin []string `json:"builtin,omitempty"`
}

// Root is what the root filesystem holds.
type Root struct {
	// Builtin are the modules built into KernelVersion (lib/modules/VER/modules.builtin), Loadable
	// those it can load (lib/modules/VER/modules.dep); names normalised. ModulesError says why
	// they could not be read.
	Builtin      []string `json:"builtin,omitempty"`
	Loadable     []string `json:"loadable,omitempty"`
	ModulesError string   `json:"modules_error,omitempty"`
	// Agents are the metadata agents installed: "cloud-init", "google-guest-agent", "waagent",
	// "open-vm-tools", "qemu-guest-agent".
	Agents []string `json:"agents,omitempty"`
	// CloudInitDisabled: /etc/cloud/cloud-init.disabled exists.
	CloudInitDisabled bool `json:"cloud_init_disabled,omitempty"`
	// Datasources is cloud-init's datasource_list (the last one set in /etc/cloud/cloud.cfg and
	// cloud.cfg.d/*.cfg); nil when not set (cloud-init then tries all it knows).
	Datasources []string `json:"datasources,omitempty"`
	// Network lists what configures the network at boot: "cloud-init", "NetworkManager",
	// "ifupdown", "netplan", "systemd-networkd".
	Network []string `json:"network,omitempty"`
	// SSHD: the image has sshd (openssh-server). SSHHostKeys are the /etc/ssh/ssh_host_* files it
	// carries. SSHKeygen lists what makes host keys on boot: "imgfab-ssh-keygen.service",
	// "sshd-keygen@.service", "cloud-init".
	SSHD        bool     `json:"sshd,omitempty"`
	SSHHostKeys []string `json:"ssh_host_keys,omitempty"`
	SSHKeygen   []string `json:"ssh_keygen,omitempty"`
	// MachineID is /etc/machine-id's state: "missing", "empty", "uninitialized", "id" (a 32-hex
	// machine id) or "other". DBusMachineID is /var/lib/dbus/machine-id's: "absent", "link" (a
	// symlink to /etc/machine-id), "id" (a file with an id) or "other".
	MachineID     string `json:"machine_id"`
	DBusMachineID string `json:"dbus_machine_id"`
	// RandomSeed and CredentialSecret: /var/lib/systemd/random-seed and
	// /var/lib/systemd/credential.secret exist.
	RandomSeed       bool `json:"random_seed,omitempty"`
	CredentialSecret bool `json:"credential_secret,omitempty"`
	// Grow is what grows the root partition and filesystem on boot.
	Grow Grow `json:"grow"`
	// Fstab are /etc/fstab's entries; FstabError says why it could not be read ("" when it was
	// read or is missing).
	Fstab      []FstabEntry `json:"fstab,omitempty"`
	FstabError string       `json:"fstab_error,omitempty"`
}

// Grow is what the image has to grow its root on boot.
type Grow struct {
	// RepartRoot are the repart.d files (/etc, /usr/lib, /usr/local/lib) with Type=root…,
	// RepartVar those with Type=var (what grows on a disk whose root is read-only, as
	// `imgfab build --rootfs erofs` makes it); Repart: the image has systemd-repart.
	RepartRoot []string `json:"repart_root,omitempty"`
	RepartVar  []string `json:"repart_var,omitempty"`
	Repart     bool     `json:"repart,omitempty"`
	// GrowpartUnit: imgfab-growpart.service is enabled (sysinit.target.wants); Growpart: the
	// image has growpart (cloud-guest-utils).
	GrowpartUnit bool `json:"growpart_unit,omitempty"`
	Growpart     bool `json:"growpart,omitempty"`
	// Growfs: the image has systemd-growfs.
	Growfs bool `json:"growfs,omitempty"`
}

// FstabEntry is one line of /etc/fstab (fstab(5)).
type FstabEntry struct {
	Spec    string `json:"spec"`
	File    string `json:"file"`
	Type    string `json:"type"`
	Options string `json:"options"`
	Pass    int    `json:"pass"`
}

// HasOption reports whether the entry's options include o (exactly, or as o=value).
func (e FstabEntry) HasOption(o string) bool {
	for _, x := range strings.Split(e.Options, ",") {
		if x == o || strings.HasPrefix(x, o+"=") {
			return true
		}
	}
	return false
}

// NormModule normalises a kernel module name as modprobe does: '-' and '_' are the same.
func NormModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

// has reports whether the sorted or unsorted list contains s.
func has(list []string, s string) bool { return slices.Contains(list, s) }

// modulePlace says where a module is found for the booted kernel: "initrd", "builtin"
// (modules.builtin on the root filesystem or in the initrd), "loadable" (a module under
// lib/modules on the root filesystem) or "" (nowhere).
func (f *Facts) modulePlace(m string) string {
	m = NormModule(m)
	if f.Initrd != nil && has(f.Initrd.Modules, m) {
		return "initrd"
	}
	if f.Root != nil && has(f.Root.Builtin, m) || f.Initrd != nil && has(f.Initrd.Builtin, m) {
		return "builtin"
	}
	if f.Root != nil && has(f.Root.Loadable, m) {
		return "loadable"
	}
	return ""
}

// rootPartition is the root filesystem's partition; nil when not known.
func (f *Facts) rootPartition() *Partition {
	for i := range f.Partitions {
		if f.Partitions[i].IsRoot {
			return &f.Partitions[i]
		}
	}
	return nil
}

// espPartition is the ESP; nil without one.
func (f *Facts) espPartition() *Partition {
	for i := range f.Partitions {
		if f.ESP != 0 && f.Partitions[i].Number == f.ESP {
			return &f.Partitions[i]
		}
	}
	return nil
}

// resolve finds the partition a device name denotes: UUID=, PARTUUID=, LABEL=, PARTLABEL= (as in
// fstab(5) and the kernel's root=) or /dev/disk/by-{uuid,partuuid,label,partlabel}/NAME. ok is
// false when spec is not such a name (a kernel device name, a network source, "none", …).
func (f *Facts) resolve(spec string) (p *Partition, ok bool) {
	kind, val, found := strings.Cut(spec, "=")
	if !found {
		dir, base, _ := strings.Cut(strings.TrimPrefix(spec, "/dev/disk/by-"), "/")
		if !strings.HasPrefix(spec, "/dev/disk/by-") || base == "" {
			return nil, false
		}
		kind, val = strings.ToUpper(dir), base
	}
	val = strings.Trim(val, `"`)
	for i := range f.Partitions {
		q := &f.Partitions[i]
		var match bool
		switch kind {
		case "UUID":
			match = q.UUID != "" && strings.EqualFold(q.UUID, val)
		case "PARTUUID":
			match = q.GUID != "" && strings.EqualFold(q.GUID, val)
		case "LABEL":
			match = q.Label != "" && q.Label == val
		case "PARTLABEL":
			match = q.Name != "" && q.Name == val
		default:
			return nil, false
		}
		if match {
			return q, true
		}
	}
	return nil, true
}

// kernelDeviceName reports a name the kernel gives a disk in the order it finds it: /dev/sda2,
// /dev/vda1, /dev/xvda1, /dev/nvme0n1p2, /dev/hda1, /dev/mmcblk0p2.
func kernelDeviceName(s string) bool {
	for _, p := range []string{"/dev/sd", "/dev/vd", "/dev/xvd", "/dev/nvme", "/dev/hd", "/dev/mmcblk"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
