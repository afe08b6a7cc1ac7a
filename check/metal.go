package check

// Bare metal: the image is written to a disk as it is (dd); whatever firmware the machine has,
// no cloud's drivers, console or agent. Disk names are the machine's own, so a kernel name is a
// warning only.

const metalRaw = "https://www.gnu.org/software/coreutils/manual/html_node/dd-invocation.html"

func init() {
	register(&Target{
		Name:       "metal",
		Archs:      []string{"x86-64", "arm64"},
		Firmware:   []string{"bios", "uefi"},
		NameStatus: Warn,
		Formats:    []string{"raw"},
		Sources:    map[string]string{"format": metalRaw},
	})
}
