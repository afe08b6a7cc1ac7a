package bootloader

import (
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

// Arch is what differs between the CPU architectures imgfab builds disks for: the UEFI file
// names, the PE machine of the loaders, whether BIOS boot exists. It is data, one table entry per
// architecture, so that the rest of the code has no branch on the architecture.
type Arch struct {
	Name      string // the OCI/Go architecture: "amd64", "arm64"
	Machine   string // as people say it: "x86-64", "arm64"
	EFI       string // the UEFI suffix of loader file names: "x64", "aa64"
	PEMachine uint16 // the PE/COFF machine of its EFI binaries and EFI-stub kernels
	GRUBEFI   string // GRUB's EFI platform directory: "x86_64-efi", "arm64-efi"
	Deb       string // Debian's architecture, in package names: "amd64", "arm64"
	BIOS      bool   // BIOS boot exists (GRUB i386-pc)
}

// Arches are the architectures imgfab builds for.
var Arches = map[string]Arch{
	"amd64": {Name: "amd64", Machine: "x86-64", EFI: "x64", PEMachine: pe.IMAGE_FILE_MACHINE_AMD64, GRUBEFI: "x86_64-efi", Deb: "amd64", BIOS: true},
	"arm64": {Name: "arm64", Machine: "arm64", EFI: "aa64", PEMachine: pe.IMAGE_FILE_MACHINE_ARM64, GRUBEFI: "arm64-efi", Deb: "arm64"},
}

// AMD64 is the default architecture (a zero Arch means it).
var AMD64 = Arches["amd64"]

// ArchFor is the Arch of an OCI architecture name.
func ArchFor(name string) (Arch, error) {
	if a, ok := Arches[name]; ok {
		return a, nil
	}
	names := make([]string, 0, len(Arches))
	for n := range Arches {
		names = append(names, n)
	}
	sort.Strings(names)
	return Arch{}, fmt.Errorf("architecture %q: imgfab builds %s", name, strings.Join(names, ", "))
}

// orDefault is a, or AMD64 for the zero Arch.
func (a Arch) orDefault() Arch {
	if a.Name == "" {
		return AMD64
	}
	return a
}

// RemovableLoader is the UEFI removable-media path: the firmware boots it with empty NVRAM.
func (a Arch) RemovableLoader() string {
	return "/EFI/BOOT/BOOT" + strings.ToUpper(a.orDefault().EFI) + ".EFI"
}

// systemdBootPaths are where systemd-boot is looked for in the image.
func (a Arch) systemdBootPaths() []string {
	f := "systemd-boot" + a.orDefault().EFI + ".efi"
	return []string{"usr/lib/systemd/boot/efi/" + f, "lib/systemd/boot/efi/" + f}
}

// stubPaths are where the systemd EFI stub is looked for.
func (a Arch) stubPaths() []string {
	f := "linux" + a.orDefault().EFI + ".efi.stub"
	return []string{"usr/lib/systemd/boot/efi/" + f, "lib/systemd/boot/efi/" + f}
}

// systemdBootESP is the second copy of systemd-boot on the ESP, where bootctl installs it.
func (a Arch) systemdBootESP() string {
	return "/EFI/systemd/systemd-boot" + a.orDefault().EFI + ".efi"
}

func (a Arch) shimPaths() []string {
	return []string{"usr/lib/shim/shim" + a.orDefault().EFI + ".efi.signed"}
}

func (a Arch) signedGrubPaths() []string {
	a = a.orDefault()
	return []string{"usr/lib/grub/" + a.GRUBEFI + "-signed/grub" + a.EFI + ".efi.signed"}
}

func (a Arch) mokManagerPaths() []string {
	return []string{"usr/lib/shim/mm" + a.orDefault().EFI + ".efi.signed"}
}

// MachineName names a PE machine for messages.
func MachineName(m uint16) string {
	for _, a := range Arches {
		if a.PEMachine == m {
			return a.Machine
		}
	}
	switch m {
	case pe.IMAGE_FILE_MACHINE_I386:
		return "x86 (32-bit)"
	case pe.IMAGE_FILE_MACHINE_ARMNT:
		return "arm (32-bit)"
	case pe.IMAGE_FILE_MACHINE_RISCV64:
		return "riscv64"
	}
	return fmt.Sprintf("PE machine %#x", m)
}

// peMachineOf reads the PE machine of the EFI binary at path in tree (only its headers).
func peMachineOf(tree fs.FS, path string) (uint16, error) {
	f, err := tree.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return 0, err
	}
	m, _, ok := peHeader(head[:n])
	if !ok {
		return 0, fmt.Errorf("/%s is not a PE image", path)
	}
	return m, nil
}

// peHeader reads a PE image's machine and (PE32+) SizeOfImage from its first bytes: the MS-DOS
// header's e_lfanew at 0x3c, the "PE\0\0" signature there, the COFF header's machine after it,
// and the optional header's SizeOfImage at its offset 56. Only the headers are read (debug/pe
// also reads the COFF symbol table, which may lie past them).
func peHeader(head []byte) (machine uint16, sizeOfImage uint32, ok bool) {
	if len(head) < 0x40 || head[0] != 'M' || head[1] != 'Z' {
		return 0, 0, false
	}
	off := int(binary.LittleEndian.Uint32(head[0x3c:]))
	if off < 0x40 || off > len(head)-24 || string(head[off:off+4]) != "PE\x00\x00" {
		return 0, 0, false
	}
	machine = binary.LittleEndian.Uint16(head[off+4:])
	optSize := int(binary.LittleEndian.Uint16(head[off+20:]))
	opt := off + 24
	if optSize >= 60 && opt+60 <= len(head) && binary.LittleEndian.Uint16(head[opt:]) == 0x20b {
		sizeOfImage = binary.LittleEndian.Uint32(head[opt+56:])
	}
	return machine, sizeOfImage, true
}

// checkMachine refuses an EFI binary of another architecture, naming both. A file that is not a
// PE image at all is left to the firmware (the loader's own error is clearer than a guess).
func (a Arch) checkMachine(tree fs.FS, path, what string) error {
	a = a.orDefault()
	m, err := peMachineOf(tree, path)
	if err != nil {
		return nil
	}
	if m != a.PEMachine {
		return fmt.Errorf("%s /%s is for %s, but the image is %s (its config's architecture)", what, path, MachineName(m), a.Name)
	}
	return nil
}
