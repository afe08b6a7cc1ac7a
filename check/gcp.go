package check

// Google Compute Engine: virtio-scsi disks and virtio-net on the first and second generation
// machine series, NVMe disks and gVNIC (gve) on the third generation and later (C3, …); the
// serial console is ttyS0; images are imported as a gzip'd tar of disk.raw, a whole number of GiB.

const (
	gcpCustomOS = "https://cloud.google.com/compute/docs/images/building-custom-os"
	gcpGVNIC    = "https://cloud.google.com/compute/docs/networking/using-gvnic"
	gcpImport   = "https://cloud.google.com/compute/docs/import/import-existing-image"
	gcpAgent    = "https://cloud.google.com/compute/docs/images/guest-environment"
	gcpBoot     = "https://cloud.google.com/compute/docs/images/create-custom#guest-os-features"
	gcpGrow     = "https://cloud.google.com/compute/docs/disks/resize-persistent-disk"
)

func init() {
	register(&Target{
		Name:          "gcp",
		Archs:         []string{"x86-64", "arm64"},
		Firmware:      []string{"uefi", "bios"},
		Storage:       [][]string{{"virtio_pci"}, {"virtio_scsi"}, {"nvme"}},
		Network:       [][]string{{"gve", "virtio_net"}},
		PreferNetwork: "gve",
		PreferWhy:     "third-generation machine types (C3, …) and per-VM Tier_1 networking have only gVNIC",
		Console:       Fail,
		Agents:        []string{"cloud-init", "google-guest-agent"},
		AgentStatus:   Fail,
		Datasources:   []string{"GCE"},
		NameStatus:    Fail,
		Sources: map[string]string{
			"boot.firmware":    gcpBoot,
			"boot.arch":        gcpBoot,
			"drivers.storage":  gcpCustomOS,
			"drivers.network":  gcpGVNIC,
			"cmdline.console":  gcpCustomOS,
			"agent.metadata":   gcpAgent,
			"agent.datasource": "https://cloudinit.readthedocs.io/en/latest/reference/datasources/gce.html",
			"gcp.tarball":      gcpImport,
			"grow.root":        gcpGrow,
		},
	})
}
