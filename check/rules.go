package check

import (
	"fmt"
	"slices"
	"strings"
)

// Sources of the rules that are not one cloud's: the specifications and manuals of what they check.
const (
	srcUEFIBoot    = "https://uefi.org/specs/UEFI/2.10/03_Boot_Manager.html#removable-media-boot-behavior"
	srcKernelParam = "https://docs.kernel.org/admin-guide/kernel-parameters.html"
	srcSerial      = "https://docs.kernel.org/admin-guide/serial-console.html"
	srcModprobe    = "https://man7.org/linux/man-pages/man8/modprobe.8.html"
	srcDatasources = "https://cloudinit.readthedocs.io/en/latest/reference/datasources.html"
	srcNetwork     = "https://cloudinit.readthedocs.io/en/latest/reference/network-config.html"
	srcRepart      = "https://www.freedesktop.org/software/systemd/man/latest/repart.d.html"
	srcMachineID   = "https://www.freedesktop.org/software/systemd/man/latest/machine-id.html"
	srcSysprep     = "https://libguestfs.org/virt-sysprep.1.html"
	srcKeygen      = "https://man.openbsd.org/ssh-keygen.1#A"
	srcRandomSeed  = "https://www.freedesktop.org/software/systemd/man/latest/systemd-random-seed.service.html"
	srcCreds       = "https://www.freedesktop.org/software/systemd/man/latest/systemd-creds.html"
	srcFstab       = "https://man7.org/linux/man-pages/man5/fstab.5.html"
	srcBLS         = "https://uapi-group.org/specifications/specs/boot_loader_specification/#mount-points"
	srcMBR         = "https://uefi.org/specs/UEFI/2.10/05_GUID_Partition_Table_Format.html"
	srcFormats     = "https://github.com/imgfab/imgfab/blob/main/docs/FORMATS.md"
)

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
	tib = int64(1) << 40
)

// rules are every rule, in the order they are reported.
var rules = []rule{
	{"boot.firmware", "the disk has a loader for a firmware the target starts machines with (UEFI: EFI/BOOT/BOOT*.EFI on the ESP; BIOS: boot code in sector 0)", srcUEFIBoot, always, checkFirmware},
	{"boot.arch", "the disk has a loader for a CPU the target's machines have: BOOTX64.EFI or BIOS boot code for x86-64, BOOTAA64.EFI for arm64", srcUEFIBoot, always, checkArch},
	{"cmdline.root", "root= on the kernel command line names the root by an identifier (PARTUUID=, UUID=, …) of this disk, not by the kernel's device name", srcKernelParam, always, checkCmdlineRoot},
	{"cmdline.console", "the kernel command line has the console on the first serial port, where the target's console reads (console=ttyS0; ttyAMA0 for arm64 but on AWS)", srcSerial, func(t *Target) bool { return t.Console != "" }, checkConsole},
	{"drivers.storage", "the drivers of the target's disk controller are in the initrd or built into the kernel", srcModprobe, func(t *Target) bool { return len(t.Storage) > 0 }, checkStorage},
	{"drivers.network", "the drivers of the target's network device are in the initrd, built in, or modules on the root filesystem", srcModprobe, func(t *Target) bool { return len(t.Network) > 0 }, checkNetwork},
	{"initrd.kernel", "the initrd's modules are for the kernel it boots with (lib/modules/VERSION)", srcModprobe, always, checkInitrdKernel},
	{"agent.metadata", "a metadata agent (cloud-init, or the target's own) installs the SSH keys and user data the target delivers", srcDatasources, func(t *Target) bool { return t.AgentStatus != "" }, checkAgent},
	{"agent.datasource", "cloud-init's datasource_list, when set, includes the target's datasource", srcDatasources, func(t *Target) bool { return t.AgentStatus != "" && len(t.Datasources) > 0 }, checkDatasource},
	{"network.config", "something configures the network at boot by DHCP (cloud-init, NetworkManager, ifupdown, netplan, systemd-networkd)", srcNetwork, always, checkNetworkConfig},
	{"grow.root", "the root partition and its filesystem grow to the disk on first boot (systemd-repart or growpart, and systemd-growfs; or cloud-init)", srcRepart, always, checkGrow},
	{"identity.machine-id", "/etc/machine-id is empty or \"uninitialized\", so that each machine makes its own", srcMachineID, always, checkMachineID},
	{"identity.dbus-machine-id", "/var/lib/dbus/machine-id is absent or a symlink to /etc/machine-id", srcMachineID, always, checkDBusMachineID},
	{"identity.ssh-host-keys", "the image carries no SSH host keys (/etc/ssh/ssh_host_*)", srcSysprep, always, checkHostKeys},
	{"identity.ssh-keygen", "where the image has sshd, something makes its host keys on boot (imgfab-ssh-keygen.service, sshd-keygen@.service, cloud-init)", srcKeygen, always, checkKeygen},
	{"identity.random-seed", "the image carries no systemd random seed (/var/lib/systemd/random-seed)", srcRandomSeed, always, checkRandomSeed},
	{"identity.credential-secret", "the image carries no systemd credential secret (/var/lib/systemd/credential.secret)", srcCreds, always, checkCredentialSecret},
	{"fstab.root", "/etc/fstab mounts the root filesystem by its identifier with fsck pass 1", srcFstab, always, checkFstabRoot},
	{"fstab.esp", "/etc/fstab mounts the ESP at /boot/efi, /efi or /boot, so the distribution's kernel hooks reach the boot menu", srcBLS, always, checkFstabESP},
	{"fstab.devices", "every /etc/fstab entry names a filesystem this disk has, by an identifier rather than a kernel device name", srcFstab, always, checkFstabDevices},
	{"size.limit", "the disk is no larger than the target takes (and an MBR disk no larger than 2 TiB)", srcMBR, always, checkSize},
	{"gcp.tarball", "a GCE image tarball's disk.raw is a whole number of GiB", gcpImport, func(t *Target) bool { return t.Name == "gcp" }, checkGCETarball},
	{"azure.vhd", "a VHD for Azure is fixed and its virtual size a whole number of MiB", azureGeneric, func(t *Target) bool { return t.Name == "azure" }, checkAzureVHD},
	{"format", "the file is in a format the target imports as it is", srcFormats, func(t *Target) bool { return len(t.Formats) > 0 }, checkFormat},
}

// rootUnread is the verdict of a rule that needs the root filesystem when it could not be read.
func rootUnread(f *Facts, s Status) verdict {
	why := f.RootError
	if why == "" {
		why = "no root filesystem found"
	}
	return bad(s, "the root filesystem could not be read: "+why, "check the disk with imgfab inspect; only ext2/3/4 and erofs roots are read")
}

func uefiModes(f *Facts) []string {
	var out []string
	for _, m := range f.BootModes {
		if strings.HasPrefix(m, "uefi-") {
			out = append(out, m)
		}
	}
	return out
}

func checkFirmware(f *Facts, t *Target) verdict {
	uefi, bios := len(uefiModes(f)) > 0, has(f.BootModes, "bios")
	if !uefi && !bios {
		return bad(Fail, "the disk has no loader: no EFI/BOOT/BOOT*.EFI on an ESP and no boot code in sector 0",
			"build the disk with imgfab build from an image that ships a boot loader (systemd-boot-efi, grub-pc-bin)")
	}
	var ok []string
	if uefi && has(t.Firmware, "uefi") {
		ok = append(ok, "UEFI")
	}
	if bios && has(t.Firmware, "bios") {
		ok = append(ok, "BIOS")
	}
	if len(ok) == 0 {
		have := "BIOS"
		if uefi {
			have = "UEFI"
		}
		return bad(Fail, fmt.Sprintf("the disk boots %s only; %s starts machines with %s only", have, t.Name, strings.ToUpper(join(t.Firmware, "or"))),
			"build with --boot "+t.Firmware[0]+" (or --boot hybrid)")
	}
	msg := fmt.Sprintf("the disk boots %s", join(ok, "and"))
	if t.Name == "azure" {
		msg += " (" + strings.ReplaceAll(strings.ReplaceAll(join(ok, "and"), "UEFI", "generation 2"), "BIOS", "generation 1") + ")"
	}
	return pass("%s", msg)
}

func checkArch(f *Facts, t *Target) verdict {
	uefi, bios := uefiModes(f), has(f.BootModes, "bios")
	if len(uefi) == 0 && !bios {
		return skip("no loader (boot.firmware)")
	}
	var disk []string // the CPUs the disk's loaders are for
	if has(uefi, "uefi-x64") || bios {
		disk = append(disk, "x86-64")
	}
	if has(uefi, "uefi-aa64") {
		disk = append(disk, "arm64")
	}
	for _, a := range disk {
		if has(t.Archs, a) {
			return pass("the loaders are for %s", join(disk, "and"))
		}
	}
	have := "no loader for x86-64 or arm64"
	if len(disk) > 0 {
		have = "loaders for " + join(disk, "and") + " only"
	}
	want := map[string]string{"x86-64": "x86-64 (EFI/BOOT/BOOTX64.EFI or BIOS boot code)", "arm64": "arm64 (EFI/BOOT/BOOTAA64.EFI)"}
	var need []string
	for _, a := range t.Archs {
		need = append(need, want[a])
	}
	platform := map[string]string{"x86-64": "linux/amd64", "arm64": "linux/arm64"}
	return bad(Fail, fmt.Sprintf("the disk has %s: %s machines are %s", have, t.Name, join(need, "or")),
		"build from an image for "+join(t.Archs, "or")+" (--platform "+platform[t.Archs[0]]+")")
}

// lastParam is the value of the last occurrence of key= on a command line (the kernel and systemd
// take the last), and whether there is one.
func lastParam(line, key string) (string, bool) {
	v, ok := "", false
	for _, w := range strings.Fields(line) {
		if x, found := strings.CutPrefix(w, key+"="); found {
			v, ok = x, true
		}
	}
	return v, ok
}

// uniqueCmdlines drops command lines identical to an earlier one (a hybrid disk's UEFI and BIOS
// entries usually say the same).
func uniqueCmdlines(f *Facts) []Cmdline {
	var out []Cmdline
	for _, c := range f.Cmdlines {
		if !slices.ContainsFunc(out, func(o Cmdline) bool { return o.Line == c.Line }) {
			out = append(out, c)
		}
	}
	return out
}

func checkCmdlineRoot(f *Facts, t *Target) verdict {
	cls := uniqueCmdlines(f)
	if len(cls) == 0 {
		return skip("no boot entry's command line was read")
	}
	worst := pass("")
	var notes []string
	for _, c := range cls {
		v, ok := lastParam(c.Line, "root")
		switch {
		case !ok:
			if worst.status == Pass {
				worst = bad(Warn, fmt.Sprintf("%s has no root=: only an initrd with systemd-gpt-auto-generator finds the root", c.Source),
					"rebuild with imgfab build, which writes root=PARTUUID=… itself")
			}
		case kernelDeviceName(v):
			worst = bad(t.NameStatus, fmt.Sprintf("%s says root=%s, the kernel's name for a disk in the order it finds it: on %s the root disk may be nvme0n1, sda or vda", c.Source, v, t.Name),
				"drop root= from --cmdline: imgfab writes root=PARTUUID=… itself")
		default:
			p, named := f.resolve(v)
			if named && p == nil {
				worst = bad(Fail, fmt.Sprintf("%s says root=%s, which names no partition of this disk", c.Source, v),
					"drop root= from --cmdline: imgfab writes root=PARTUUID=… itself")
			} else {
				notes = append(notes, "root="+v)
			}
		}
	}
	if worst.status != Pass {
		return worst
	}
	slices.Sort(notes)
	return pass("%s", strings.Join(slices.Compact(notes), ", "))
}

func hasConsole(line, tty string) bool {
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, "console="); ok && (v == tty || strings.HasPrefix(v, tty+",")) {
			return true
		}
	}
	return false
}

// diskArch is the CPU the disk boots: "arm64" when its only loader is BOOTAA64.EFI, else "x86-64".
func diskArch(f *Facts) string {
	if has(f.BootModes, "uefi-aa64") && !has(f.BootModes, "uefi-x64") && !has(f.BootModes, "bios") {
		return "arm64"
	}
	return "x86-64"
}

func checkConsole(f *Facts, t *Target) verdict {
	cls := uniqueCmdlines(f)
	if len(cls) == 0 {
		return skip("no boot entry's command line was read")
	}
	tty := "ttyS0"
	if diskArch(f) == "arm64" {
		tty = t.ArmConsole
		if tty == "" {
			tty = "ttyAMA0"
		}
	}
	var missing []string
	for _, c := range cls {
		if !hasConsole(c.Line, tty) {
			missing = append(missing, c.Source)
		}
	}
	if len(missing) == 0 {
		return pass("console=%s is on the command line", tty)
	}
	fix := "build with --cmdline console=" + tty
	if t.Name == "azure" {
		fix = "build with --cmdline 'console=" + tty + " earlyprintk=" + tty + "'"
	}
	return bad(t.Console, fmt.Sprintf("%s: no console=%s, so %s's serial console shows nothing of the boot", strings.Join(missing, "; "), tty, t.Name), fix)
}

// initrdName names the initrd for messages.
func initrdName(f *Facts) string {
	if f.Initrd != nil && f.Initrd.Source != "" {
		return "the initrd (" + f.Initrd.Source + ")"
	}
	return "the initrd"
}

func kernelName(f *Facts) string {
	if f.KernelVersion != "" {
		return "kernel " + f.KernelVersion
	}
	return "the kernel"
}

func checkStorage(f *Facts, t *Target) verdict {
	var found, missing, first, onlyLoadable []string
	for _, group := range t.Storage {
		place, mod := "", ""
		var loadable []string
		for _, m := range group {
			p := f.modulePlace(m)
			if p == "initrd" || p == "builtin" {
				place, mod = p, m
				break
			}
			if p == "loadable" {
				loadable = append(loadable, m)
			}
		}
		if place == "" {
			missing, first = append(missing, join(group, "or")), append(first, group[0])
			onlyLoadable = append(onlyLoadable, loadable...)
			continue
		}
		found = append(found, fmt.Sprintf("%s (%s)", mod, place))
	}
	if len(missing) == 0 {
		return pass("%s", strings.Join(found, ", "))
	}
	msg := fmt.Sprintf("%s %s neither in %s nor built into %s: on %s the root disk is not found and the boot stops in the initramfs",
		join(missing, "and"), isAre(missing), initrdName(f), kernelName(f), t.Name)
	if f.Initrd == nil {
		why := f.InitrdError
		if why == "" {
			why = "the entry has none"
		}
		msg = fmt.Sprintf("%s %s not built into %s and no initrd was read (%s): on %s the root disk is not found", join(missing, "and"), isAre(missing), kernelName(f), why, t.Name)
	}
	if len(onlyLoadable) > 0 {
		msg += fmt.Sprintf(" (%s %s only a module on the root filesystem, which cannot be reached without the driver)", join(onlyLoadable, "and"), isAre(onlyLoadable))
	}
	return bad(Fail, msg, fmt.Sprintf("add %s to the initrd (Debian: list them in /etc/initramfs-tools/modules and run update-initramfs -u in the image) or use a kernel with them built in", strings.Join(first, " ")))
}

func checkNetwork(f *Facts, t *Target) verdict {
	var found, missing []string
	for _, group := range t.Network {
		got := ""
		for _, m := range group {
			if p := f.modulePlace(m); p != "" {
				got = fmt.Sprintf("%s (%s)", m, p)
				break
			}
		}
		if got == "" {
			missing = append(missing, join(group, "or"))
			continue
		}
		found = append(found, got)
	}
	if len(missing) > 0 {
		return bad(Fail, fmt.Sprintf("%s %s neither in %s, built into %s, nor a module under lib/modules on the root filesystem: on %s the machine has no network",
			join(missing, "and"), isAre(missing), initrdName(f), kernelName(f), t.Name),
			"install a kernel that has the driver (Debian's linux-image-amd64 and linux-image-arm64 do), or add the module to the image")
	}
	if t.PreferNetwork != "" && f.modulePlace(t.PreferNetwork) == "" {
		return bad(Warn, fmt.Sprintf("%s, but no %s: %s", strings.Join(found, ", "), t.PreferNetwork, t.PreferWhy),
			"use a kernel with the "+t.PreferNetwork+" driver (Linux 5.3 and later have it)")
	}
	return pass("%s", strings.Join(found, ", "))
}

func checkInitrdKernel(f *Facts, t *Target) verdict {
	if f.Initrd == nil {
		if f.InitrdError != "" {
			return skip("no initrd read: %s", f.InitrdError)
		}
		return skip("the default entry boots without an initrd")
	}
	if f.KernelVersion == "" {
		return skip("the kernel's version is not known")
	}
	if len(f.Initrd.KernelVersions) == 0 {
		return pass("%s has no modules directory (its drivers are built into the kernel)", initrdName(f))
	}
	if has(f.Initrd.KernelVersions, f.KernelVersion) {
		return pass("%s has modules for %s", initrdName(f), f.KernelVersion)
	}
	return bad(Fail, fmt.Sprintf("%s has modules for %s only (lib/modules/…), the kernel is %s: none of them loads, and the root disk's driver with them",
		initrdName(f), strings.Join(f.Initrd.KernelVersions, ", "), f.KernelVersion),
		"regenerate the initrd for the kernel in the image (update-initramfs -u -k "+f.KernelVersion+")")
}

// cloudInitActive reports cloud-init installed and not disabled (/etc/cloud/cloud-init.disabled,
// cloud-init=disabled on the command line).
func cloudInitActive(f *Facts) bool {
	if f.Root == nil || !has(f.Root.Agents, "cloud-init") || f.Root.CloudInitDisabled {
		return false
	}
	for _, c := range f.Cmdlines {
		if v, ok := lastParam(c.Line, "cloud-init"); ok && v == "disabled" {
			return false
		}
	}
	return true
}

// activeAgents are the agents of list the image has, cloud-init only when active.
func activeAgents(f *Facts, list []string) []string {
	var out []string
	for _, a := range list {
		if a == "cloud-init" {
			if cloudInitActive(f) {
				out = append(out, a)
			}
		} else if f.Root != nil && has(f.Root.Agents, a) {
			out = append(out, a)
		}
	}
	return out
}

func checkAgent(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, t.AgentStatus)
	}
	if got := activeAgents(f, t.Agents); len(got) > 0 {
		return pass("%s", strings.Join(got, ", "))
	}
	msg := fmt.Sprintf("no %s: %s delivers SSH keys and user data through its metadata, and nothing in the image reads them", join(t.Agents, "or"), t.Name)
	if has(f.Root.Agents, "cloud-init") {
		msg = fmt.Sprintf("cloud-init is installed but disabled (/etc/cloud/cloud-init.disabled or cloud-init=disabled): %s's SSH keys and user data are never read", t.Name)
	}
	return bad(t.AgentStatus, msg, "install cloud-init in the image (apt-get install cloud-init)")
}

func checkDatasource(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, t.AgentStatus)
	}
	if !cloudInitActive(f) {
		return skip("cloud-init is not active (agent.metadata)")
	}
	if others := activeAgents(f, slices.DeleteFunc(slices.Clone(t.Agents), func(a string) bool { return a == "cloud-init" })); len(others) > 0 {
		return pass("%s reads the metadata", strings.Join(others, ", "))
	}
	ds := f.Root.Datasources
	if ds == nil {
		return pass("datasource_list is not set: cloud-init tries every datasource it knows")
	}
	for _, d := range ds {
		if has(t.Datasources, d) {
			return pass("datasource_list has %s", d)
		}
	}
	return bad(t.AgentStatus, fmt.Sprintf("cloud-init's datasource_list [%s] has no %s: it never reads %s's metadata", strings.Join(ds, ", "), join(t.Datasources, "or"), t.Name),
		"add "+t.Datasources[0]+" to datasource_list in /etc/cloud/cloud.cfg.d/, or remove the setting")
}

func checkNetworkConfig(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Warn)
	}
	var got []string
	for _, n := range f.Root.Network {
		if n == "cloud-init" && !cloudInitActive(f) {
			continue
		}
		got = append(got, n)
	}
	if len(got) > 0 {
		return pass("%s", strings.Join(got, ", "))
	}
	return bad(Warn, "nothing in the image configures the network at boot: no cloud-init, NetworkManager, ifupdown or netplan DHCP stanza, or systemd-networkd .network with DHCP= in /etc/systemd/network",
		"install cloud-init, or add /etc/systemd/network/80-dhcp.network ([Match] Type=ether, [Network] DHCP=yes) and enable systemd-networkd")
}

func rootFstab(f *Facts) *FstabEntry {
	for i := range f.Root.Fstab {
		if f.Root.Fstab[i].File == "/" {
			return &f.Root.Fstab[i]
		}
	}
	return nil
}

// readOnlyRoot returns the root partition's filesystem type when it is a read-only one (erofs,
// squashfs: `imgfab build --rootfs erofs`), else "".
func readOnlyRoot(f *Facts) string {
	for _, p := range f.Partitions {
		if p.IsRoot && (p.FS == "erofs" || p.FS == "squashfs") {
			return p.FS
		}
	}
	return ""
}

func checkGrow(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Warn)
	}
	if ro := readOnlyRoot(f); ro != "" {
		return checkGrowVar(f, t, ro)
	}
	g, ci := f.Root.Grow, cloudInitActive(f)
	part := ""
	switch {
	case len(g.RepartRoot) > 0 && g.Repart && f.Table == "gpt":
		part = "systemd-repart (" + g.RepartRoot[0] + ")"
	case g.GrowpartUnit && g.Growpart:
		part = "growpart (imgfab-growpart.service)"
	case ci && g.Growpart:
		part = "cloud-init's growpart"
	}
	fsys := ""
	if e := rootFstab(f); e != nil && e.HasOption("x-systemd.growfs") && g.Growfs {
		fsys = "systemd-growfs (x-systemd.growfs)"
	} else if ci {
		fsys = "cloud-init's resizefs"
	}
	if part != "" && fsys != "" {
		return pass("the root partition grows with %s, its filesystem with %s", part, fsys)
	}
	var missing []string
	if part == "" {
		missing = append(missing, "the root partition")
	}
	if fsys == "" {
		missing = append(missing, "its filesystem")
	}
	return bad(Warn, fmt.Sprintf("nothing grows %s on first boot: on %s, a disk larger than the image keeps the space after the root unused", join(missing, "nor"), t.Name),
		"build without --no-grow (imgfab sets up systemd-repart or growpart and systemd-growfs); the image needs systemd-repart or cloud-guest-utils")
}

// checkGrowVar is grow.root for a read-only root: it cannot grow, the writable /var partition
// (the disk's last, as imgfab lays it out) must: systemd-repart with a Type=var definition, and
// x-systemd.growfs on the /var line with systemd-growfs.
func checkGrowVar(f *Facts, t *Target, ro string) verdict {
	g := f.Root.Grow
	part, fsys := "", ""
	if len(g.RepartVar) > 0 && g.Repart && f.Table == "gpt" {
		part = "systemd-repart (" + g.RepartVar[0] + ")"
	}
	for _, e := range f.Root.Fstab {
		if e.File == "/var" && e.HasOption("x-systemd.growfs") && g.Growfs {
			fsys = "systemd-growfs (x-systemd.growfs)"
		}
	}
	if part != "" && fsys != "" {
		return pass("the root is read-only (%s); the /var partition grows with %s, its filesystem with %s", ro, part, fsys)
	}
	var missing []string
	if part == "" {
		missing = append(missing, "the /var partition")
	}
	if fsys == "" {
		missing = append(missing, "its filesystem")
	}
	return bad(Warn, fmt.Sprintf("the root is read-only (%s) and nothing grows %s on first boot: on %s, a disk larger than the image keeps the space after /var unused", ro, join(missing, "nor"), t.Name),
		"build without --no-grow (imgfab puts a systemd-repart Type=var definition in /etc/repart.d and x-systemd.growfs on the /var line); the image needs systemd-repart")
}

func checkMachineID(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Fail)
	}
	switch f.Root.MachineID {
	case "id":
		return bad(Fail, "/etc/machine-id holds a machine id: every machine started from the image would share it (and journald, DHCP client ids and systemd's first boot with it)",
			"build without --keep machine-id: imgfab writes \"uninitialized\"")
	case "other":
		return bad(Fail, "/etc/machine-id holds neither a machine id nor \"uninitialized\"", "build without --keep machine-id: imgfab writes \"uninitialized\"")
	case "missing":
		return pass("no /etc/machine-id: systemd makes one on first boot")
	}
	return pass("/etc/machine-id is %s: each machine makes its own on first boot", f.Root.MachineID)
}

func checkDBusMachineID(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Fail)
	}
	switch f.Root.DBusMachineID {
	case "id", "other":
		return bad(Fail, "/var/lib/dbus/machine-id is a file of its own: D-Bus would give every machine the same id",
			"build without --keep machine-id: imgfab links it to /etc/machine-id")
	case "link":
		return pass("/var/lib/dbus/machine-id links to /etc/machine-id")
	}
	return pass("no /var/lib/dbus/machine-id")
}

func checkHostKeys(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Fail)
	}
	if n := len(f.Root.SSHHostKeys); n > 0 {
		return bad(Fail, fmt.Sprintf("the image carries %d SSH host key files (%s): every machine started from it would have the same host keys",
			n, strings.Join(f.Root.SSHHostKeys, ", ")), "build without --keep ssh-hostkeys: imgfab removes them and has them made on first boot")
	}
	return pass("no SSH host keys in the image")
}

func checkKeygen(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Fail)
	}
	if !f.Root.SSHD {
		return skip("the image has no sshd")
	}
	var got []string
	for _, k := range f.Root.SSHKeygen {
		if k == "cloud-init" && !cloudInitActive(f) {
			continue
		}
		got = append(got, k)
	}
	if len(got) > 0 {
		return pass("host keys are made on boot by %s", strings.Join(got, ", "))
	}
	return bad(Fail, "the image has sshd but nothing makes its host keys on boot (no imgfab-ssh-keygen.service, sshd-keygen@.service or cloud-init): sshd will not start without them",
		"build without --keep ssh-hostkeys (imgfab adds imgfab-ssh-keygen.service), or install cloud-init")
}

func checkRandomSeed(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Warn)
	}
	if f.Root.RandomSeed {
		return bad(Warn, "/var/lib/systemd/random-seed is in the image: every machine starts its entropy pool from the same seed",
			"build without --keep random-seed")
	}
	return pass("no random seed in the image")
}

func checkCredentialSecret(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Fail)
	}
	if f.Root.CredentialSecret {
		return bad(Fail, "/var/lib/systemd/credential.secret is in the image: every machine could decrypt every other's systemd credentials",
			"build without --keep credentials")
	}
	return pass("no systemd credential secret in the image")
}

func checkFstabRoot(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Warn)
	}
	e := rootFstab(f)
	fix := "build without --keep fstab: imgfab writes the root's line (UUID=… / ext4 defaults 0 1)"
	if e == nil {
		return bad(Warn, "/etc/fstab has no entry for /: the root is never checked by fsck and keeps the options the kernel mounted it with", fix)
	}
	if p, named := f.resolve(e.Spec); named && p != nil && !p.IsRoot {
		return bad(Warn, fmt.Sprintf("the / entry names %s (partition %d), not the root filesystem", e.Spec, p.Number), fix)
	}
	if ro := readOnlyRoot(f); ro != "" {
		// A read-only filesystem has nothing for fsck to repair: imgfab writes pass 0 for it.
		return pass("%s / %s %s, fsck pass %d (a read-only %s root)", e.Spec, e.Type, e.Options, e.Pass, ro)
	}
	if e.Pass != 1 {
		return bad(Warn, fmt.Sprintf("the / entry (%s) has fsck pass %d, not 1: the root is never checked", e.Spec, e.Pass), fix)
	}
	return pass("%s / %s %s, fsck pass 1", e.Spec, e.Type, e.Options)
}

func checkFstabESP(f *Facts, t *Target) verdict {
	esp := f.espPartition()
	if esp == nil {
		return skip("the disk has no EFI system partition")
	}
	if f.Root == nil {
		return rootUnread(f, Warn)
	}
	for _, e := range f.Root.Fstab {
		if p, _ := f.resolve(e.Spec); p == esp {
			switch e.File {
			case "/boot/efi", "/efi", "/boot":
				return pass("the ESP (%s) is mounted at %s", e.Spec, e.File)
			}
			return bad(Warn, fmt.Sprintf("the ESP (%s) is mounted at %s, where the kernel hooks do not look for it (/boot/efi, /efi or /boot)", e.Spec, e.File),
				"mount it at /boot/efi")
		}
	}
	name := "UUID=" + esp.UUID
	return bad(Warn, fmt.Sprintf("/etc/fstab does not mount the ESP (%s): a kernel the running system installs never reaches the boot menu", name),
		"build without --keep fstab: imgfab adds "+name+" /boot/efi vfat umask=0077 0 2")
}

// pseudoFS are fstab types that name no device of the disk.
var pseudoFS = map[string]bool{
	"tmpfs": true, "proc": true, "sysfs": true, "devpts": true, "devtmpfs": true, "cgroup": true, "cgroup2": true,
	"nfs": true, "nfs4": true, "cifs": true, "smb3": true, "9p": true, "virtiofs": true, "ceph": true,
	"glusterfs": true, "overlay": true, "efivarfs": true, "securityfs": true, "debugfs": true, "hugetlbfs": true,
	"mqueue": true, "fuse": true, "binfmt_misc": true, "configfs": true, "tracefs": true, "pstore": true,
}

func checkFstabDevices(f *Facts, t *Target) verdict {
	if f.Root == nil {
		return rootUnread(f, Fail)
	}
	worst := pass("")
	n := 0
	for _, e := range f.Root.Fstab {
		if pseudoFS[e.Type] || strings.HasPrefix(e.Type, "fuse.") || e.HasOption("noauto") || e.HasOption("nofail") ||
			e.HasOption("_netdev") || e.HasOption("bind") || e.HasOption("rbind") {
			continue
		}
		if kernelDeviceName(e.Spec) {
			if t.NameStatus == Fail || worst.status == Pass {
				worst = bad(t.NameStatus, fmt.Sprintf("%s (%s) is the kernel's name for a disk in the order it finds it: on %s it may be nvme0n1, sda or vda", e.Spec, e.File, t.Name),
					"name it by UUID= (blkid) in /etc/fstab")
			}
			continue
		}
		p, named := f.resolve(e.Spec)
		if named && p == nil {
			worst = bad(Fail, fmt.Sprintf("%s (%s) names no filesystem on this disk: systemd waits 90 s for it, then stops the boot in emergency mode", e.Spec, e.File),
				"remove the line from /etc/fstab or add nofail to its options")
		}
		n++
	}
	if worst.status != Pass {
		return worst
	}
	return pass("%d entries name filesystems of this disk", n)
}

func checkSize(f *Facts, t *Target) verdict {
	size := f.Container.VirtualSize
	if f.Table == "mbr" && size > 2*tib {
		return bad(Fail, fmt.Sprintf("an MBR disk of %d GiB: MBR addresses 2 TiB (32-bit sector numbers)", size/gib), "build with --table gpt")
	}
	if t.MaxSize > 0 && size > t.MaxSize {
		return bad(Fail, fmt.Sprintf("the disk is %d GiB; %s takes at most %s", ceilDiv(size, gib), t.Name, t.MaxSizeWhy), "build with a smaller --size")
	}
	return pass("%d MiB", ceilDiv(size, mib))
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// isAre is the verb for a list of names.
func isAre(names []string) string {
	if len(names) == 1 {
		return "is"
	}
	return "are"
}

func checkGCETarball(f *Facts, t *Target) verdict {
	c := f.Container
	switch {
	case c.Format == "gce" && c.VirtualSize%gib != 0:
		return bad(Fail, fmt.Sprintf("disk.raw is %d bytes, not a whole number of GiB: Compute Engine's image creation hangs and the image vanishes", c.VirtualSize),
			"imgfab convert DISK disk.tar.gz (disk.raw padded to a whole GiB)")
	case c.Format == "gce":
		return pass("disk.raw is %d GiB", c.VirtualSize/gib)
	case c.ConvertedTo == "gce":
		return pass("imgfab push gcp sends it as a GCE tarball of %d GiB", ceilDiv(c.VirtualSize, gib))
	}
	return skip("a %s file, not a GCE tarball: imgfab push gcp converts it (for gcloud: imgfab convert DISK disk.tar.gz)", c.Format)
}

func checkAzureVHD(f *Facts, t *Target) verdict {
	c := f.Container
	fix := "imgfab convert DISK disk.vhd (a fixed VHD of whole MiB)"
	switch {
	case c.ConvertedTo == "vhd":
		return pass("imgfab push azure sends it as a fixed VHD of %d MiB", ceilDiv(c.VirtualSize, mib))
	case c.Format == "vhd-dynamic":
		return bad(Fail, "a dynamic VHD: Azure takes fixed VHDs only", fix)
	case c.Format != "vhd":
		return skip("a %s file, not a VHD: imgfab push azure converts it (for az or azcopy: imgfab convert DISK disk.vhd)", c.Format)
	case c.VirtualSize%mib != 0:
		return bad(Fail, fmt.Sprintf("the VHD's virtual size is %d bytes, not a whole number of MiB: Azure refuses it", c.VirtualSize), fix)
	case c.FileSize != 0 && (c.FileSize < c.VirtualSize+512 || (c.FileSize-512)%mib != 0):
		return bad(Fail, fmt.Sprintf("the VHD file is %d bytes, not a whole number of MiB of data and the 512-byte footer", c.FileSize), fix)
	}
	return pass("a fixed VHD of %d MiB", c.VirtualSize/mib)
}

func checkFormat(f *Facts, t *Target) verdict {
	c := f.Container
	if c.ConvertedTo != "" && has(t.Formats, c.ConvertedTo) {
		return pass("imgfab push sends it as %s", c.ConvertedTo)
	}
	if has(t.Formats, c.Format) {
		return pass("%s", c.Format)
	}
	return bad(Warn, fmt.Sprintf("a %s file: %s takes %s", c.Format, t.Name, join(t.Formats, "or")),
		fmt.Sprintf("imgfab convert DISK disk.%s", extFor(t.Formats[0])))
}

func extFor(format string) string {
	switch format {
	case "vhd-dynamic":
		return "vhd"
	case "gce":
		return "tar.gz"
	}
	return format
}
