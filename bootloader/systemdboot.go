package bootloader

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/imgfab/imgfab/internal/iox"
	"github.com/imgfab/imgfab/rootfs"
)

// SystemdBootPaths are where the x86-64 loader binary is looked for in the image, in order
// (Arch gives every architecture's).
var SystemdBootPaths = AMD64.systemdBootPaths()

// Config is what an ESP with systemd-boot needs.
type Config struct {
	Tree    fs.FS         // the image's root tree
	Kernel  rootfs.Kernel // from rootfs.FindKernel
	Title   string        // entry title; default from os-release PRETTY_NAME
	Options string        // the kernel command line
	Epoch   time.Time     // all FAT timestamps
	EntryID string        // entry file name without ".conf"; default "imgfab-" + kernel version
	Serial  uint32        // FAT volume serial of the ESP (InstallSystemdBoot)
	Arch    Arch          // the image's architecture; the zero value is AMD64
}

// Entry describes what was installed, for --json and tests.
type Entry struct {
	Loader  string   `json:"loader"` // "/EFI/BOOT/BOOTX64.EFI"
	Conf    string   `json:"conf"`   // "/loader/entries/ID.conf"
	Linux   string   `json:"linux"`  // on the ESP
	Initrd  string   `json:"initrd,omitempty"`
	Options string   `json:"options"`
	Files   []string `json:"-"`
}

// LoaderNotFoundError lists where the loader was looked for.
type LoaderNotFoundError struct{ Looked []string }

func (e *LoaderNotFoundError) Error() string {
	return "no systemd-boot in the image (install systemd-boot-efi); looked at: /" + strings.Join(e.Looked, ", /")
}

// PlanSystemdBoot works out the ESP files for systemd-boot without writing anything, so a caller can
// check the sizes first.
func PlanSystemdBoot(cfg Config) ([]FileSpec, Entry, error) {
	var loader FileSpec
	var err error
	found := false
	src := ""
	for _, p := range cfg.Arch.systemdBootPaths() {
		loader, err = treeFile(cfg.Tree, p, cfg.Arch.RemovableLoader())
		if err == nil {
			found, src = true, p
			break
		}
	}
	if !found {
		return nil, Entry{}, &LoaderNotFoundError{Looked: cfg.Arch.systemdBootPaths()}
	}
	if err := cfg.Arch.checkMachine(cfg.Tree, src, "systemd-boot"); err != nil {
		return nil, Entry{}, err
	}
	if cfg.Kernel.Linux == "" {
		return nil, Entry{}, fmt.Errorf("systemd-boot: no kernel")
	}
	title := cfg.Title
	if title == "" {
		osr, err := rootfs.OSRelease(cfg.Tree)
		if err != nil {
			return nil, Entry{}, err
		}
		title = osr["PRETTY_NAME"]
		if title == "" {
			title = "Linux"
		}
	}
	id := cfg.EntryID
	if id == "" {
		id = "imgfab-" + cfg.Kernel.Version
	}
	if strings.ContainsAny(id, "/\\ \n") {
		return nil, Entry{}, fmt.Errorf("systemd-boot: bad entry id %q", id)
	}
	// Boot Loader Specification: kernel and initrd below /ENTRY-TOKEN/VERSION/ on the same partition.
	dir := "/imgfab/" + cfg.Kernel.Version
	e := Entry{Loader: cfg.Arch.RemovableLoader(), Conf: "/loader/entries/" + id + ".conf", Linux: dir + "/linux", Options: cfg.Options}
	kernel, err := kernelFile(cfg, e.Linux)
	if err != nil {
		return nil, Entry{}, fmt.Errorf("systemd-boot: %w", err)
	}
	files := []FileSpec{loader}
	second := loader
	second.Path = cfg.Arch.systemdBootESP()
	files = append(files, second, kernel)
	if cfg.Kernel.Initrd != "" {
		e.Initrd = dir + "/initrd"
		initrd, err := treeFile(cfg.Tree, cfg.Kernel.Initrd, e.Initrd)
		if err != nil {
			return nil, Entry{}, fmt.Errorf("systemd-boot: initrd: %w", err)
		}
		files = append(files, initrd)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "title %s\nversion %s\nlinux %s\n", oneLine(title), cfg.Kernel.Version, e.Linux)
	if e.Initrd != "" {
		fmt.Fprintf(&conf, "initrd %s\n", e.Initrd)
	}
	fmt.Fprintf(&conf, "options %s\n", oneLine(cfg.Options))
	files = append(files,
		bytesFile("/loader/loader.conf", []byte("default "+id+".conf\ntimeout 0\nconsole-mode keep\neditor no\n")),
		bytesFile(e.Conf, []byte(conf.String())),
	)
	for _, f := range files {
		e.Files = append(e.Files, f.Path)
	}
	return files, e, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// InstallSystemdBoot formats the ESP region f[offset:offset+size] and installs systemd-boot, the
// kernel, the initrd and one entry.
func InstallSystemdBoot(ctx context.Context, f iox.DiskFile, offset, size int64, cfg Config) (Entry, error) {
	files, e, err := PlanSystemdBoot(cfg)
	if err != nil {
		return Entry{}, err
	}
	if err := WriteESP(ctx, f, offset, size, "ESP", cfg.Serial, cfg.Epoch, files); err != nil {
		return Entry{}, err
	}
	return e, nil
}
