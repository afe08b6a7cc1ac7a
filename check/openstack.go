package check

// OpenStack (Nova on KVM): virtio disks and network by default (hw_disk_bus, hw_vif_model), the
// console log from the serial port, cloud-init for keys, user data and growing the root.

const (
	openstackImages = "https://docs.openstack.org/image-guide/openstack-images.html"
	openstackProps  = "https://docs.openstack.org/glance/latest/admin/useful-image-properties.html"
	openstackFmts   = "https://docs.openstack.org/glance/latest/user/formats.html"
	openstackCons   = "https://docs.openstack.org/nova/latest/admin/remote-console-access.html"
)

func init() {
	register(&Target{
		Name:        "openstack",
		Archs:       []string{"x86-64", "arm64"},
		Firmware:    []string{"bios", "uefi"},
		Storage:     [][]string{{"virtio_pci"}, {"virtio_blk", "virtio_scsi"}},
		Network:     [][]string{{"virtio_net"}},
		Console:     Warn,
		Agents:      []string{"cloud-init"},
		AgentStatus: Fail,
		Datasources: []string{"OpenStack", "ConfigDrive"},
		NameStatus:  Fail,
		Formats:     []string{"raw", "qcow2", "vmdk", "vhd", "vhd-dynamic"},
		Sources: map[string]string{
			"boot.firmware":          openstackProps,
			"drivers.storage":        openstackProps,
			"drivers.network":        openstackProps,
			"cmdline.console":        openstackCons,
			"agent.metadata":         openstackImages,
			"agent.datasource":       "https://cloudinit.readthedocs.io/en/latest/reference/datasources/openstack.html",
			"grow.root":              openstackImages,
			"identity.ssh-keygen":    openstackImages,
			"format":                 openstackFmts,
			"network.config":         openstackImages,
			"identity.ssh-host-keys": openstackImages,
		},
	})
}
