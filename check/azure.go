package check

// Microsoft Azure: Hyper-V's VMBus devices (storvsc disks, netvsc network) whose drivers must be
// in the initramfs; generation 1 VMs boot BIOS, generation 2 UEFI; a fixed VHD whose virtual size
// is a whole number of MiB; the serial console is ttyS0; provisioning by cloud-init or the Azure
// Linux Agent.

const (
	azureGeneric   = "https://learn.microsoft.com/en-us/azure/virtual-machines/linux/create-upload-generic"
	azureGen2      = "https://learn.microsoft.com/en-us/azure/virtual-machines/generation-2"
	azureProvision = "https://learn.microsoft.com/en-us/azure/virtual-machines/linux/provisioning"
	azureGrow      = "https://learn.microsoft.com/en-us/azure/virtual-machines/linux/expand-disks"
	azureGeneral   = "https://learn.microsoft.com/en-us/azure/virtual-machines/generalize"
)

func init() {
	register(&Target{
		Name:        "azure",
		Archs:       []string{"x86-64", "arm64"},
		Firmware:    []string{"uefi", "bios"},
		Storage:     [][]string{{"hv_vmbus"}, {"hv_storvsc"}},
		Network:     [][]string{{"hv_netvsc"}},
		Console:     Fail,
		Agents:      []string{"cloud-init", "waagent"},
		AgentStatus: Fail,
		Datasources: []string{"Azure"},
		NameStatus:  Fail,
		MaxSize:     1023 << 30,
		MaxSizeWhy:  "1,023 GiB, the largest VHD Azure allows",
		Sources: map[string]string{
			"boot.firmware":            azureGen2,
			"boot.arch":                azureGen2,
			"drivers.storage":          azureGeneric,
			"drivers.network":          azureGeneric,
			"cmdline.console":          azureGeneric,
			"agent.metadata":           azureProvision,
			"agent.datasource":         "https://cloudinit.readthedocs.io/en/latest/reference/datasources/azure.html",
			"azure.vhd":                azureGeneric,
			"size.limit":               azureGeneric,
			"grow.root":                azureGrow,
			"identity.ssh-host-keys":   azureGeneral,
			"identity.machine-id":      azureGeneral,
			"identity.dbus-machine-id": azureGeneral,
		},
	})
}
