package check

// VMware vSphere: the paravirtual SCSI controller (PVSCSI) and VMXNET3 network adapter, VMDK
// disks, guest customisation through open-vm-tools or cloud-init.

const (
	vmwarePVSCSI  = "https://knowledge.broadcom.com/external/article?legacyId=1010398"
	vmwareVMXNET3 = "https://knowledge.broadcom.com/external/article?legacyId=1001805"
	vmwareTools   = "https://knowledge.broadcom.com/external/article?legacyId=2073803"
	vmwareVMDK    = "https://techdocs.broadcom.com/us/en/vmware-cis/vsphere/vsphere/8-0/vsphere-virtual-machine-administration-guide-8-0.html"
)

func init() {
	register(&Target{
		Name:        "vmware",
		Archs:       []string{"x86-64"},
		Firmware:    []string{"bios", "uefi"},
		Storage:     [][]string{{"vmw_pvscsi"}},
		Network:     [][]string{{"vmxnet3"}},
		Agents:      []string{"cloud-init", "open-vm-tools"},
		AgentStatus: Warn,
		Datasources: []string{"VMware", "OVF"},
		NameStatus:  Fail,
		Formats:     []string{"vmdk"},
		Sources: map[string]string{
			"drivers.storage":  vmwarePVSCSI,
			"drivers.network":  vmwareVMXNET3,
			"agent.metadata":   vmwareTools,
			"agent.datasource": "https://cloudinit.readthedocs.io/en/latest/reference/datasources/vmware.html",
			"format":           vmwareVMDK,
		},
	})
}
