package check

// KubeVirt: virtio disks and network (the default bus and model), a containerDisk holding a qcow2
// or raw image, the serial console through virtctl console, cloud-init (NoCloud or ConfigDrive)
// or the QEMU guest agent for SSH keys.

const (
	kubevirtDisks   = "https://kubevirt.io/user-guide/storage/disks_and_volumes/"
	kubevirtNet     = "https://kubevirt.io/user-guide/network/interfaces_and_networks/"
	kubevirtAccess  = "https://kubevirt.io/user-guide/user_workloads/accessing_virtual_machines/"
	kubevirtStartup = "https://kubevirt.io/user-guide/user_workloads/startup_scripts/"
)

func init() {
	register(&Target{
		Name:        "kubevirt",
		Archs:       []string{"x86-64", "arm64"},
		Firmware:    []string{"bios", "uefi"},
		Storage:     [][]string{{"virtio_pci"}, {"virtio_blk", "virtio_scsi"}},
		Network:     [][]string{{"virtio_net"}},
		Console:     Warn,
		Agents:      []string{"cloud-init", "qemu-guest-agent"},
		AgentStatus: Warn,
		Datasources: []string{"NoCloud", "ConfigDrive"},
		NameStatus:  Fail,
		Formats:     []string{"qcow2", "raw"},
		Sources: map[string]string{
			"boot.firmware":    kubevirtDisks,
			"drivers.storage":  kubevirtDisks,
			"drivers.network":  kubevirtNet,
			"cmdline.console":  kubevirtAccess,
			"agent.metadata":   kubevirtStartup,
			"agent.datasource": kubevirtStartup,
			"format":           kubevirtDisks + "#containerdisk",
		},
	})
}
