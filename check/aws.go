package check

// Amazon EC2 on the Nitro System: EBS volumes are NVMe devices, the network is ENA, and the
// serial console (EC2 Serial Console, "Get system log") reads ttyS0. Graviton (arm64) instances
// boot UEFI only; Intel and AMD ones UEFI or legacy BIOS.

const (
	awsBoot    = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ami-boot.html"
	awsNVMe    = "https://docs.aws.amazon.com/ebs/latest/userguide/nvme-ebs-volumes.html"
	awsENA     = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/enhanced-networking-ena.html"
	awsConsole = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-serial-console.html"
	awsAgent   = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html"
	awsSize    = "https://docs.aws.amazon.com/ebs/latest/userguide/volume_constraints.html"
	awsGrow    = "https://docs.aws.amazon.com/ebs/latest/userguide/recognize-expanded-volume-linux.html"
)

func awsTarget(name, arch string, firmware []string) *Target {
	return &Target{
		Name:        name,
		Archs:       []string{arch},
		Firmware:    firmware,
		Storage:     [][]string{{"nvme"}},
		Network:     [][]string{{"ena"}},
		Console:     Fail,
		ArmConsole:  "ttyS0", // Graviton's UART is 16550-compatible
		Agents:      []string{"cloud-init"},
		AgentStatus: Fail,
		Datasources: []string{"Ec2"},
		NameStatus:  Fail,
		MaxSize:     64 << 40,
		MaxSizeWhy:  "64 TiB, the largest EBS volume (GPT)",
		Sources: map[string]string{
			"boot.firmware":    awsBoot,
			"boot.arch":        awsBoot,
			"drivers.storage":  awsNVMe,
			"drivers.network":  awsENA,
			"cmdline.console":  awsConsole,
			"cmdline.root":     awsNVMe,
			"fstab.devices":    awsNVMe,
			"agent.metadata":   awsAgent,
			"agent.datasource": "https://cloudinit.readthedocs.io/en/latest/reference/datasources/ec2.html",
			"size.limit":       awsSize,
			"grow.root":        awsGrow,
		},
	}
}

func init() {
	register(awsTarget("aws", "x86-64", []string{"uefi", "bios"}))
	register(awsTarget("aws-arm64", "arm64", []string{"uefi"}))
}
