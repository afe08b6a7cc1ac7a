package check

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

const (
	rootGUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	rootUUID = "a8d01b6e-6770-4789-a3c1-a9c2d3dafeb0"
	espUUID  = "ABC6-723C"
)

// allDrivers are every target's drivers, in the initrd of the good disk.
var allDrivers = []string{"ena", "gve", "hv_netvsc", "hv_storvsc", "hv_vmbus", "nvme", "virtio_blk", "virtio_net", "virtio_pci", "virtio_scsi", "vmw_pvscsi", "vmxnet3"}

// goodFacts is a disk that fits every x86-64 target as imgfab builds it from a cloud image:
// hybrid boot, console=ttyS0, every driver in the initrd, cloud-init, first-boot growth and
// identity, fstab with the root and the ESP.
func goodFacts() *Facts {
	return &Facts{
		Container: Container{Format: "qcow2", VirtualSize: 2 << 30, FileSize: 900 << 20},
		Table:     "gpt",
		Partitions: []Partition{
			{Number: 1, Name: "esp", GUID: "11111111-2222-4333-8444-555555555555", Type: "esp", FS: "vfat", UUID: espUUID, Label: "ESP"},
			{Number: 2, Name: "root-x86-64", GUID: rootGUID, Type: "root-x86-64", FS: "ext4", UUID: rootUUID, IsRoot: true},
		},
		BootModes: []string{"uefi-x64", "bios"},
		ESP:       1,
		Cmdlines: []Cmdline{
			{Mode: "uefi", Source: "systemd-boot entry imgfab-6.1.0", Line: "root=PARTUUID=" + strings.ToLower(rootGUID) + " rw console=ttyS0"},
			{Mode: "bios", Source: "GRUB /grub/grub.cfg", Line: "root=PARTUUID=" + strings.ToLower(rootGUID) + " rw console=ttyS0"},
		},
		KernelVersion: "6.1.0",
		Initrd:        &Initrd{Source: "esp:/imgfab/6.1.0/initrd", Modules: slices.Clone(allDrivers), KernelVersions: []string{"6.1.0"}},
		Root: &Root{
			Agents:        []string{"cloud-init"},
			Network:       []string{"cloud-init"},
			SSHD:          true,
			SSHKeygen:     []string{"imgfab-ssh-keygen.service", "cloud-init"},
			MachineID:     "uninitialized",
			DBusMachineID: "link",
			Grow:          Grow{RepartRoot: []string{"/etc/repart.d/50-imgfab-root.conf"}, Repart: true, Growpart: true, Growfs: true},
			Fstab: []FstabEntry{
				{Spec: "UUID=" + rootUUID, File: "/", Type: "ext4", Options: "defaults,x-systemd.growfs", Pass: 1},
				{Spec: "UUID=" + espUUID, File: "/boot/efi", Type: "vfat", Options: "umask=0077", Pass: 2},
				{Spec: "tmpfs", File: "/tmp", Type: "tmpfs", Options: "defaults"},
			},
		},
	}
}

// expect is a set of non-pass results: target → rule id → status.
type expect map[string]map[string]Status

// baseExpect is goodFacts' non-pass results: an x86 disk for arm64, the container rules of gcp and
// azure on a qcow2, and the formats vmware and metal take.
func baseExpect() expect {
	return expect{
		"aws-arm64": {"boot.arch": Fail},
		"gcp":       {"gcp.tarball": Skip},
		"azure":     {"azure.vhd": Skip},
		"vmware":    {"format": Warn},
		"metal":     {"format": Warn},
	}
}

// on sets id's status on the targets named (every target the rule applies to when none are).
func (e expect) on(id string, s Status, names ...string) expect {
	if len(names) == 0 {
		for _, r := range Rules() {
			if r.ID == id {
				names = r.Targets
			}
		}
	}
	for _, n := range names {
		if e[n] == nil {
			e[n] = map[string]Status{}
		}
		if s == Pass {
			delete(e[n], id)
		} else {
			e[n][id] = s
		}
	}
	return e
}

func nonPass(rep Report) map[string]Status {
	out := map[string]Status{}
	for _, r := range rep.Rules {
		if r.Status != Pass {
			out[r.ID] = r.Status
		}
	}
	return out
}

// assertExpect runs every target over f and compares the non-pass results with want.
func assertExpect(t *testing.T, f *Facts, want expect) {
	t.Helper()
	for _, target := range Targets() {
		rep, err := Check(context.Background(), f, target)
		if err != nil {
			t.Fatal(err)
		}
		got, w := nonPass(rep), want[target]
		if w == nil {
			w = map[string]Status{}
		}
		if !maps.Equal(got, w) {
			var lines []string
			for _, r := range rep.Rules {
				if r.Status != Pass || w[r.ID] != "" {
					lines = append(lines, fmt.Sprintf("    %s %s: %s", r.Status, r.ID, r.Message))
				}
			}
			t.Errorf("%s: non-pass %v, want %v\n%s", target, got, w, strings.Join(lines, "\n"))
		}
		for _, r := range rep.Rules {
			if (r.Status == Fail || r.Status == Warn) && (r.Fix == "" || r.Message == "") {
				t.Errorf("%s %s: %s without message or fix: %+v", target, r.ID, r.Status, r)
			}
			if !strings.HasPrefix(r.Source, "https://") {
				t.Errorf("%s %s: source %q", target, r.ID, r.Source)
			}
		}
	}
}

// TestCheckRulesOnFacts: each change to the good disk's facts fires its rule, on the targets it
// concerns, and nothing else.
func TestCheckRulesOnFacts(t *testing.T) {
	type mut = func(*Facts)
	cases := []struct {
		name  string
		mut   mut
		delta func(expect) expect
	}{
		{"good", func(*Facts) {}, func(e expect) expect { return e }},
		{"bios-only", func(f *Facts) { f.BootModes = []string{"bios"} }, func(e expect) expect {
			return e.on("boot.firmware", Fail, "aws-arm64")
		}},
		{"uefi-only", func(f *Facts) { f.BootModes = []string{"uefi-x64"}; f.Cmdlines = f.Cmdlines[:1] }, func(e expect) expect { return e }},
		{"no-loader", func(f *Facts) { f.BootModes = nil }, func(e expect) expect {
			return e.on("boot.firmware", Fail).on("boot.arch", Skip)
		}},
		{"arm64", func(f *Facts) { f.BootModes = []string{"uefi-aa64"}; f.Cmdlines = f.Cmdlines[:1] }, func(e expect) expect {
			// console=ttyS0 is right for Graviton only: KVM's arm64 machines have a PL011, ttyAMA0.
			return e.on("boot.arch", Fail, "aws", "vmware").on("boot.arch", Pass, "aws-arm64").
				on("cmdline.console", Fail, "gcp", "azure").on("cmdline.console", Warn, "kubevirt", "openstack")
		}},
		{"arm64-ttyAMA0", func(f *Facts) {
			f.BootModes, f.Cmdlines = []string{"uefi-aa64"}, f.Cmdlines[:1]
			f.Cmdlines[0].Line = strings.ReplaceAll(f.Cmdlines[0].Line, "ttyS0", "ttyAMA0")
		}, func(e expect) expect {
			return e.on("boot.arch", Fail, "aws", "vmware").on("boot.arch", Pass, "aws-arm64").on("cmdline.console", Fail, "aws", "aws-arm64")
		}},
		{"root-by-kernel-name", func(f *Facts) { f.Cmdlines[0].Line += " root=/dev/sda2" }, func(e expect) expect {
			return e.on("cmdline.root", Fail).on("cmdline.root", Warn, "metal")
		}},
		{"root-names-nothing", func(f *Facts) { f.Cmdlines[1].Line = "root=UUID=0000 console=ttyS0" }, func(e expect) expect {
			return e.on("cmdline.root", Fail)
		}},
		{"no-root-param", func(f *Facts) {
			for i := range f.Cmdlines {
				f.Cmdlines[i].Line = "console=ttyS0"
			}
		}, func(e expect) expect { return e.on("cmdline.root", Warn) }},
		{"no-console", func(f *Facts) { f.Cmdlines[1].Line = strings.TrimSuffix(f.Cmdlines[1].Line, " console=ttyS0") }, func(e expect) expect {
			return e.on("cmdline.console", Fail, "aws", "aws-arm64", "gcp", "azure").on("cmdline.console", Warn, "kubevirt", "openstack")
		}},
		{"console-with-speed", func(f *Facts) {
			for i := range f.Cmdlines {
				f.Cmdlines[i].Line = strings.ReplaceAll(f.Cmdlines[i].Line, "ttyS0", "tty0 console=ttyS0,115200n8")
			}
		}, func(e expect) expect { return e }},
		{"no-nvme", func(f *Facts) { f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("nvme")) }, func(e expect) expect {
			return e.on("drivers.storage", Fail, "aws", "aws-arm64", "gcp")
		}},
		{"nvme-only-loadable", func(f *Facts) {
			f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("nvme"))
			f.Root.Loadable = []string{"nvme"}
		}, func(e expect) expect { return e.on("drivers.storage", Fail, "aws", "aws-arm64", "gcp") }},
		{"nvme-builtin", func(f *Facts) {
			f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("nvme"))
			f.Root.Builtin = []string{"nvme"}
		}, func(e expect) expect { return e }},
		{"ena-loadable", func(f *Facts) {
			f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("ena"))
			f.Root.Loadable = []string{"ena"}
		}, func(e expect) expect { return e }},
		{"no-ena", func(f *Facts) { f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("ena")) }, func(e expect) expect {
			return e.on("drivers.network", Fail, "aws", "aws-arm64")
		}},
		{"no-gve", func(f *Facts) { f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("gve")) }, func(e expect) expect {
			return e.on("drivers.network", Warn, "gcp")
		}},
		{"no-virtio-net", func(f *Facts) { f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("virtio_net")) }, func(e expect) expect {
			return e.on("drivers.network", Fail, "kubevirt", "openstack")
		}},
		{"no-hyperv", func(f *Facts) { f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, eq("hv_vmbus")) }, func(e expect) expect {
			return e.on("drivers.storage", Fail, "azure")
		}},
		{"no-pvscsi-vmxnet3", func(f *Facts) {
			f.Initrd.Modules = slices.DeleteFunc(f.Initrd.Modules, func(m string) bool { return m == "vmw_pvscsi" || m == "vmxnet3" })
		}, func(e expect) expect {
			return e.on("drivers.storage", Fail, "vmware").on("drivers.network", Fail, "vmware")
		}},
		{"initrd-for-another-kernel", func(f *Facts) { f.Initrd.KernelVersions = []string{"6.1.0-old"} }, func(e expect) expect {
			return e.on("initrd.kernel", Fail)
		}},
		{"no-initrd", func(f *Facts) { f.Initrd = nil; f.Root.Loadable = slices.Clone(allDrivers) }, func(e expect) expect {
			return e.on("initrd.kernel", Skip).on("drivers.storage", Fail)
		}},
		{"initrd-unreadable-all-builtin", func(f *Facts) {
			f.Initrd, f.InitrdError = nil, "esp:/i: gzip: invalid header"
			f.Root.Builtin = slices.Clone(allDrivers)
		}, func(e expect) expect { return e.on("initrd.kernel", Skip) }},
		{"no-cloud-init", func(f *Facts) { f.Root.Agents, f.Root.Network = nil, nil; f.Root.SSHKeygen = f.Root.SSHKeygen[:1] }, noAgent},
		{"cloud-init-disabled", func(f *Facts) { f.Root.CloudInitDisabled = true }, noAgent},
		{"cloud-init-disabled-on-cmdline", func(f *Facts) { f.Cmdlines[0].Line += " cloud-init=disabled" }, noAgent},
		{"google-guest-agent", func(f *Facts) {
			f.Root.Agents, f.Root.Network, f.Root.SSHKeygen = []string{"google-guest-agent"}, []string{"NetworkManager"}, f.Root.SSHKeygen[:1]
		}, func(e expect) expect {
			return e.on("agent.metadata", Fail, "aws", "aws-arm64", "azure", "openstack").on("agent.metadata", Warn, "kubevirt", "vmware").
				on("agent.datasource", Skip)
		}},
		{"datasource-nocloud", func(f *Facts) { f.Root.Datasources = []string{"NoCloud", "None"} }, func(e expect) expect {
			return e.on("agent.datasource", Fail, "aws", "aws-arm64", "gcp", "azure", "openstack").on("agent.datasource", Warn, "vmware")
		}},
		{"datasource-ec2", func(f *Facts) { f.Root.Datasources = []string{"Ec2", "None"} }, func(e expect) expect {
			return e.on("agent.datasource", Fail, "gcp", "azure", "openstack").on("agent.datasource", Warn, "kubevirt", "vmware")
		}},
		{"network-by-networkd", func(f *Facts) { f.Root.Network = []string{"systemd-networkd"} }, func(e expect) expect { return e }},
		{"no-growth", func(f *Facts) { f.Root.Grow = Grow{} }, func(e expect) expect { return e.on("grow.root", Warn) }},
		// A read-only root (imgfab build --rootfs erofs): fsck pass 0 on /, /var grows instead.
		{"read-only-root", readOnlyRoot1, func(e expect) expect { return e }},
		{"read-only-root-no-var-growth", func(f *Facts) { readOnlyRoot1(f); f.Root.Grow.RepartVar = nil }, func(e expect) expect {
			return e.on("grow.root", Warn)
		}},
		{"read-only-root-no-var-growfs", func(f *Facts) { readOnlyRoot1(f); f.Root.Fstab[3].Options = "defaults" }, func(e expect) expect {
			return e.on("grow.root", Warn)
		}},
		{"growth-by-cloud-init", func(f *Facts) { f.Root.Grow = Grow{Growpart: true}; f.Root.Fstab[0].Options = "defaults" }, func(e expect) expect { return e }},
		{"repart-on-mbr", func(f *Facts) { f.Table = "mbr"; f.Root.Grow.Growpart = false }, func(e expect) expect { return e.on("grow.root", Warn) }},
		{"growpart-unit-on-mbr", func(f *Facts) {
			f.Table = "mbr"
			f.Root.Grow = Grow{GrowpartUnit: true, Growpart: true, Growfs: true}
			f.Root.Agents, f.Root.Network, f.Root.SSHKeygen = []string{"waagent"}, []string{"ifupdown"}, f.Root.SSHKeygen[:1]
		}, func(e expect) expect {
			return e.on("agent.metadata", Fail, "aws", "aws-arm64", "gcp", "openstack").on("agent.metadata", Warn, "kubevirt", "vmware").
				on("agent.datasource", Skip)
		}},
		{"baked-machine-id", func(f *Facts) { f.Root.MachineID = "id" }, func(e expect) expect { return e.on("identity.machine-id", Fail) }},
		{"machine-id-missing", func(f *Facts) { f.Root.MachineID = "missing" }, func(e expect) expect { return e }},
		{"dbus-machine-id", func(f *Facts) { f.Root.DBusMachineID = "id" }, func(e expect) expect { return e.on("identity.dbus-machine-id", Fail) }},
		{"host-keys", func(f *Facts) { f.Root.SSHHostKeys = []string{"/etc/ssh/ssh_host_ed25519_key"} }, func(e expect) expect {
			return e.on("identity.ssh-host-keys", Fail)
		}},
		{"no-keygen", func(f *Facts) { f.Root.SSHKeygen = nil }, func(e expect) expect { return e.on("identity.ssh-keygen", Fail) }},
		{"no-sshd", func(f *Facts) { f.Root.SSHD, f.Root.SSHKeygen = false, nil }, func(e expect) expect { return e.on("identity.ssh-keygen", Skip) }},
		{"random-seed", func(f *Facts) { f.Root.RandomSeed = true }, func(e expect) expect { return e.on("identity.random-seed", Warn) }},
		{"credential-secret", func(f *Facts) { f.Root.CredentialSecret = true }, func(e expect) expect {
			return e.on("identity.credential-secret", Fail)
		}},
		{"fstab-without-root", func(f *Facts) { f.Root.Fstab = f.Root.Fstab[1:] }, func(e expect) expect { return e.on("fstab.root", Warn) }},
		{"fstab-root-pass-0", func(f *Facts) { f.Root.Fstab[0].Pass = 0 }, func(e expect) expect { return e.on("fstab.root", Warn) }},
		{"fstab-root-names-esp", func(f *Facts) { f.Root.Fstab[0].Spec = "LABEL=ESP" }, func(e expect) expect {
			return e.on("fstab.root", Warn).on("fstab.esp", Warn) // and the ESP is mounted at /
		}},
		{"fstab-without-esp", func(f *Facts) { f.Root.Fstab = slices.Delete(f.Root.Fstab, 1, 2) }, func(e expect) expect {
			return e.on("fstab.esp", Warn)
		}},
		{"esp-at-mnt", func(f *Facts) { f.Root.Fstab[1].File = "/mnt/esp" }, func(e expect) expect { return e.on("fstab.esp", Warn) }},
		{"esp-by-partuuid-at-efi", func(f *Facts) {
			f.Root.Fstab[1].Spec, f.Root.Fstab[1].File = "/dev/disk/by-partuuid/11111111-2222-4333-8444-555555555555", "/efi"
		}, func(e expect) expect { return e }},
		{"no-esp", func(f *Facts) { f.ESP = 0; f.Root.Fstab = slices.Delete(f.Root.Fstab, 1, 2) }, func(e expect) expect {
			return e.on("fstab.esp", Skip)
		}},
		{"fstab-unknown-uuid", func(f *Facts) {
			f.Root.Fstab = append(f.Root.Fstab, FstabEntry{Spec: "UUID=0e1f2a3b-0000-4000-8000-000000000000", File: "/data", Type: "ext4", Options: "defaults", Pass: 2})
		}, func(e expect) expect { return e.on("fstab.devices", Fail) }},
		{"fstab-unknown-uuid-nofail", func(f *Facts) {
			f.Root.Fstab = append(f.Root.Fstab, FstabEntry{Spec: "UUID=0e1f2a3b-0000-4000-8000-000000000000", File: "/data", Type: "ext4", Options: "defaults,nofail", Pass: 2})
		}, func(e expect) expect { return e }},
		{"fstab-kernel-name", func(f *Facts) {
			f.Root.Fstab = append(f.Root.Fstab, FstabEntry{Spec: "/dev/sdb1", File: "/srv", Type: "ext4", Options: "defaults", Pass: 2})
		}, func(e expect) expect { return e.on("fstab.devices", Fail).on("fstab.devices", Warn, "metal") }},
		{"70-TiB", func(f *Facts) { f.Container.VirtualSize = 70 << 40 }, func(e expect) expect {
			return e.on("size.limit", Fail, "aws", "aws-arm64", "azure")
		}},
		{"1-TiB", func(f *Facts) { f.Container.VirtualSize = 1 << 40 }, func(e expect) expect { return e.on("size.limit", Fail, "azure") }},
		{"3-TiB-MBR", func(f *Facts) { f.Container.VirtualSize, f.Table = 3<<40, "mbr" }, func(e expect) expect {
			return e.on("size.limit", Fail)
		}},
		{"gce-tarball", func(f *Facts) { f.Container = Container{Format: "gce", VirtualSize: 2 << 30} }, func(e expect) expect {
			return e.on("gcp.tarball", Pass, "gcp").on("format", Warn, "kubevirt", "openstack")
		}},
		{"gce-tarball-off-GiB", func(f *Facts) { f.Container = Container{Format: "gce", VirtualSize: 2<<30 + 1<<20} }, func(e expect) expect {
			return e.on("gcp.tarball", Fail, "gcp").on("format", Warn, "kubevirt", "openstack")
		}},
		{"converted-to-gce", func(f *Facts) { f.Container.ConvertedTo = "gce" }, func(e expect) expect {
			return e.on("gcp.tarball", Pass, "gcp")
		}},
		{"vhd", func(f *Facts) { f.Container = Container{Format: "vhd", VirtualSize: 2 << 30, FileSize: 2<<30 + 512} }, func(e expect) expect {
			return e.on("azure.vhd", Pass, "azure").on("format", Warn, "kubevirt")
		}},
		{"vhd-off-MiB", func(f *Facts) {
			f.Container = Container{Format: "vhd", VirtualSize: 2<<30 + 1536, FileSize: 2<<30 + 2048}
		}, func(e expect) expect {
			return e.on("azure.vhd", Fail, "azure").on("format", Warn, "kubevirt")
		}},
		{"vhd-dynamic", func(f *Facts) {
			f.Container = Container{Format: "vhd-dynamic", VirtualSize: 2 << 30, FileSize: 1 << 20}
		}, func(e expect) expect {
			return e.on("azure.vhd", Fail, "azure").on("format", Warn, "kubevirt")
		}},
		{"converted-to-vhd", func(f *Facts) { f.Container.ConvertedTo = "vhd" }, func(e expect) expect {
			return e.on("azure.vhd", Pass, "azure")
		}},
		{"vmdk", func(f *Facts) { f.Container.Format = "vmdk" }, func(e expect) expect {
			return e.on("format", Pass, "vmware").on("format", Warn, "kubevirt")
		}},
		{"raw", func(f *Facts) { f.Container.Format = "raw" }, func(e expect) expect { return e.on("format", Pass, "metal") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := goodFacts()
			c.mut(f)
			assertExpect(t, f, c.delta(baseExpect()))
		})
	}
}

// noAgent is the delta of an image without an active cloud-init: no agent where the target needs
// one, no datasource to judge, nothing configures the network.
func noAgent(e expect) expect {
	return e.on("agent.metadata", Fail, "aws", "aws-arm64", "gcp", "azure", "openstack").on("agent.metadata", Warn, "kubevirt", "vmware").
		on("agent.datasource", Skip).on("network.config", Warn)
}

// readOnlyRoot1 makes goodFacts a read-only root as `imgfab build --rootfs erofs --verity` lays
// it out: erofs under /dev/mapper/root with fsck pass 0, /var on an ext4 partition that systemd-repart
// grows (Type=var) and systemd-growfs fills.
func readOnlyRoot1(f *Facts) {
	f.Partitions[1].FS = "erofs"
	f.Partitions = append(f.Partitions, Partition{Number: 3, Name: "var", Type: "var", FS: "ext4", UUID: "0e1f2a3b-0000-4000-8000-00000000000a"})
	f.Root.Grow = Grow{RepartVar: []string{"/etc/repart.d/50-imgfab-var.conf"}, Repart: true, Growfs: true}
	f.Root.Fstab = []FstabEntry{
		{Spec: "UUID=" + rootUUID, File: "/", Type: "erofs", Options: "ro", Pass: 0},
		{Spec: "UUID=" + espUUID, File: "/boot/efi", Type: "vfat", Options: "umask=0077", Pass: 2},
		{Spec: "tmpfs", File: "/tmp", Type: "tmpfs", Options: "defaults"},
		{Spec: "UUID=0e1f2a3b-0000-4000-8000-00000000000a", File: "/var", Type: "ext4", Options: "defaults,x-systemd.growfs", Pass: 2},
	}
}

func eq(s string) func(string) bool { return func(x string) bool { return x == s } }

// TestCheckRootUnread: without a readable root filesystem every rule that needs it says so, with its
// own status, and the rules on the boot path still judge.
func TestCheckRootUnread(t *testing.T) {
	f := goodFacts()
	f.Root, f.RootError = nil, "root partition 2: filesystem xfs cannot be read (only ext2/3/4)"
	rep, err := Check(context.Background(), f, "aws")
	if err != nil {
		t.Fatal(err)
	}
	got := nonPass(rep)
	want := map[string]Status{
		"agent.metadata": Fail, "agent.datasource": Fail, "network.config": Warn, "grow.root": Warn,
		"identity.machine-id": Fail, "identity.dbus-machine-id": Fail, "identity.ssh-host-keys": Fail, "identity.ssh-keygen": Fail,
		"identity.random-seed": Warn, "identity.credential-secret": Fail, "fstab.root": Warn, "fstab.esp": Warn, "fstab.devices": Fail,
	}
	if !maps.Equal(got, want) {
		t.Errorf("non-pass %v, want %v", got, want)
	}
	for _, r := range rep.Rules {
		if r.Status != Pass && !strings.Contains(r.Message, "xfs cannot be read") {
			t.Errorf("%s: %q does not say why", r.ID, r.Message)
		}
	}
}

// TestCheckCatalogue: at least 20 rules over the 8 targets, every rule applying somewhere with a
// source for each of its targets, an unknown target an error naming the known ones, and the
// report's JSON shape as docs/CHECK.md documents it.
func TestCheckCatalogue(t *testing.T) {
	want := []string{"aws", "aws-arm64", "azure", "gcp", "kubevirt", "metal", "openstack", "vmware"}
	if !slices.Equal(Targets(), want) {
		t.Errorf("targets %v, want %v", Targets(), want)
	}
	rs := Rules()
	if len(rs) < 20 {
		t.Errorf("%d rules, want at least 20", len(rs))
	}
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.ID] || len(r.Targets) == 0 || r.Title == "" {
			t.Errorf("rule %+v: duplicate, no target or no title", r)
		}
		seen[r.ID] = true
		for _, tg := range r.Targets {
			if !strings.HasPrefix(r.Sources[tg], "https://") {
				t.Errorf("rule %s target %s: source %q", r.ID, tg, r.Sources[tg])
			}
		}
	}
	if _, err := Check(context.Background(), goodFacts(), "ec2"); err == nil || !strings.Contains(err.Error(), "aws-arm64") {
		t.Errorf("unknown target: %v", err)
	}
	rep, _ := Check(context.Background(), goodFacts(), "aws")
	rep.Disk = "d.qcow2"
	b, _ := json.Marshal(rep)
	var shape struct {
		Target, Disk string
		Rules        []map[string]any
		Summary      map[string]int
	}
	if err := json.Unmarshal(b, &shape); err != nil {
		t.Fatal(err)
	}
	if shape.Target != "aws" || shape.Disk != "d.qcow2" || len(shape.Rules) != len(rep.Rules) || shape.Summary["pass"] != len(rep.Rules) {
		t.Errorf("JSON %s", b)
	}
	for _, k := range []string{"id", "status", "message", "source"} {
		if _, ok := shape.Rules[0][k]; !ok {
			t.Errorf("rule JSON has no %q: %s", k, b)
		}
	}
	for _, k := range []string{"pass", "fail", "warn", "skip"} {
		if _, ok := shape.Summary[k]; !ok {
			t.Errorf("summary JSON has no %q: %s", k, b)
		}
	}
}

func TestCheckParsers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"# If you use datasource_list array, keep array items in a single line.\nusers: [default]\n", nil, false},
		{"datasource_list: [ NoCloud, ConfigDrive, 'Ec2', None ]\n", []string{"NoCloud", "ConfigDrive", "Ec2", "None"}, true},
		{"datasource_list:\n  - GCE # google\n  - None\nother: 1\n", []string{"GCE", "None"}, true},
		{"datasource_list: []\n", []string{}, true},
		{"  datasource_list: [Ec2]\n", nil, false}, // not top level
	} {
		got, ok := datasourceList([]byte(c.in))
		if ok != c.ok || !slices.Equal(got, c.want) {
			t.Errorf("datasourceList(%q) = %q %v, want %q %v", c.in, got, ok, c.want, c.ok)
		}
	}
	fst := parseFstab([]byte("# /etc/fstab\nUUID=x / ext4 defaults,x-systemd.growfs 0 1\n\n/dev/disk/by-label/My\\040Disk /mnt/my\\040disk ext4 nofail\nLABEL=swap none swap sw 0 0\n"))
	want := []FstabEntry{
		{Spec: "UUID=x", File: "/", Type: "ext4", Options: "defaults,x-systemd.growfs", Pass: 1},
		{Spec: "/dev/disk/by-label/My Disk", File: "/mnt/my disk", Type: "ext4", Options: "nofail"},
		{Spec: "LABEL=swap", File: "none", Type: "swap", Options: "sw"},
	}
	if !slices.Equal(fst, want) {
		t.Errorf("parseFstab: %+v", fst)
	}
	if !fst[0].HasOption("x-systemd.growfs") || fst[0].HasOption("x-systemd") {
		t.Error("HasOption")
	}
	if v, ok := iniValue([]byte("# c\n[Partition]\nType=root\n[Other]\nType=var\n"), "Partition", "Type"); !ok || v != "root" {
		t.Errorf("iniValue: %q %v", v, ok)
	}
	for in, want := range map[string]string{"": "empty", "uninitialized\n": "uninitialized", "6389fdf6082b4fc0ac2bb5f9ac0d125c\n": "id", "x": "other"} {
		if got := idState([]byte(in)); got != want {
			t.Errorf("idState(%q) = %q, want %q", in, got, want)
		}
	}
	if got := moduleNames([]byte("kernel/drivers/nvme/host/nvme-core.ko.xz: \nkernel/drivers/net/ethernet/amazon/ena/ena.ko: kernel/x.ko\n")); !slices.Equal(got, []string{"ena", "nvme_core"}) {
		t.Errorf("moduleNames: %q", got)
	}
}
