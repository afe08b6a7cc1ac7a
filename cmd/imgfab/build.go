package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/check"
	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/firstboot"
)

var errHelp = errors.New("help shown")

const buildHelp = `Usage: imgfab build [flags] SOURCE
       imgfab build -f FILE [--json] [--insecure] [CLASS...]

Build a bootable disk image (GPT or MBR: a FAT EFI system partition with the boot loaders, kernel
and initrd, and an ext4 root) from a container image. UEFI boots through systemd-boot, a Unified
Kernel Image (--uki) or the distribution's signed shim (--boot-chain shim); BIOS through GRUB
assembled from the image's own modules. Nothing runs as root, no container engine, no VM, no
outside program.

SOURCE is one of:
  oci:DIR[:TAG]            an OCI image layout (TAG matches org.opencontainers.image.ref.name)
  docker-archive:FILE      a 'docker save' tarball
  docker://REF or REF      a registry image (credentials from ~/.docker/config.json)

The image must contain a kernel (/boot/vmlinuz-*, /usr/lib/modules/*/vmlinuz or /boot/vmlinuz-lts)
and, for UEFI, systemd-boot (/usr/lib/systemd/boot/efi/systemd-bootx64.efi, Debian: systemd-boot-efi)
or the systemd stub for --uki; for BIOS, /usr/lib/grub/i386-pc (Debian: grub-pc-bin).
The kernel command line is "root=PARTUUID=<root partition> rw" followed by --cmdline.

With -f, the build is described by a class file (imgfab.yaml, docs/CLASSFILE.md): it builds the
listed classes (all by default), in file order, each once per platform, with the files, users,
groups, hostname, time zone and systemd units it asks for laid over the image as one generated
layer. The file sets what the flags would (SOURCE, -o, --size, …): giving them too is a usage
error. --json then prints one JSON object per line, one per class and platform, with "class" and
"platform" beside the fields of a plain build's result.

--platform linux/amd64,linux/arm64 builds one disk per platform (arm64 on any machine: nothing of
the image runs at build time); each -o path then holds {arch} (or {platform}), e.g. disk-{arch}.qcow2.
--print-spec prints the class file equivalent to the other flags (class name: --class, default
"default") and builds nothing; building that file gives the same bytes.

Examples:
  imgfab build oci:./layout:debian --cmdline console=ttyS0 -o disk.qcow2
  imgfab build docker-archive:image.tar --size 4GiB -o disk.raw
  imgfab build ghcr.io/example/node:1.2 --layer ./overlay -o node.qcow2 --json
  imgfab build oci:./layout --format raw -o - | ssh host 'dd of=/dev/sdb bs=4M'
  imgfab build oci:./layout -o disk.vmdk -o disk.vhd -o disk.tar.gz -o disk.raw.zst
  imgfab build oci:./layout -o disk.qcow2 --compress zstd
  imgfab build oci:./layout --boot hybrid -o disk.raw         # one file, BIOS and UEFI
  imgfab build oci:./layout --boot bios --table mbr -o disk.raw
  imgfab build oci:./layout -o disk.vhd --push 'azure --resource-group rg --storage-account sa --name web-1'
  imgfab build -f imgfab.yaml                  # every class of the file
  imgfab build -f imgfab.yaml web --json       # one class
  imgfab build oci:./layout --cmdline console=ttyS0 -o disk.qcow2 --print-spec > imgfab.yaml

Flags:
`

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newBuildFlags()
	if err := f.fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *f.help {
		fmt.Fprint(stdout, buildHelp+f.fl.FlagUsages())
		return errHelp
	}
	if *f.file != "" {
		if f.fl.Changed("target") {
			return usagef("--target goes with a plain build (check a class's output with imgfab check DISK --target T)")
		}
		var push *string
		if f.fl.Changed("push") {
			push = f.push
		}
		return runBuildFile(ctx, f.fl, *f.file, f.fl.Args(), *f.asJSON, *f.insecure, push, stdout, stderr)
	}
	for _, name := range []string{"cache", "locked", "offline", "no-cache"} {
		if f.fl.Changed(name) {
			return usagef("--%s goes with -f FILE (a class file's sources are what it caches and locks)", name)
		}
	}
	plan, err := f.plan(stdout)
	if err != nil {
		return err
	}
	if *f.printSpc {
		if f.fl.Changed("push") || *f.asJSON {
			return usagef("--print-spec builds nothing: not with --push or --json (publish is not printed yet)")
		}
		return printSpec(plan, *f.className, stdout)
	}
	if platforms, err := splitPlatforms(*f.platform); err != nil {
		return err
	} else if len(platforms) > 1 {
		plans, err := platformPlans(plan, platforms)
		if err != nil {
			return err
		}
		return f.buildPlatforms(ctx, plans, stdout, stderr)
	}
	pushArgs, err := f.pushArgs()
	if err != nil {
		return err
	}
	prog := newProgress(stderr)
	plan.Progress = prog.event
	res, err := assemble.Run(ctx, plan)
	prog.done()
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "imgfab build: warning: %s\n", w)
	}
	if pushArgs != nil {
		return f.runPush(ctx, &res, pushArgs, stdout, stderr)
	}
	if err := report(&res, *f.asJSON, stdout, stderr); err != nil || *f.target == "" {
		return err
	}
	return f.checkBuilt(ctx, plan, stdout, stderr)
}

// checkBuilt runs imgfab check on the first file output for --target: the report goes to stdout,
// or to stderr under --json (stdout holds the build's result). A failing rule is exit status 1;
// the outputs stay.
func (f *buildFlags) checkBuilt(ctx context.Context, plan assemble.Plan, stdout, stderr io.Writer) error {
	w := stdout
	if *f.asJSON {
		w = stderr
	}
	for _, o := range plan.Outputs {
		if o.Path == "-" {
			continue
		}
		failed, err := checkDisk(ctx, *f.target, o.Path, w, false)
		if err != nil {
			return fmt.Errorf("check %s: %w", o.Path, err)
		}
		if failed != nil {
			return fmt.Errorf("check %s: %w", o.Path, failed)
		}
		return nil
	}
	return nil
}

// buildFlags are build's flags, parsed by fl.
type buildFlags struct {
	fl                                                      *pflag.FlagSet
	outputs, extra                                          *[]string
	format, compress, size, espSize, cmdline, platform, sde *string
	bootMode, table, chain, push, file, className, target   *string
	asJSON, insecure, noJournal, uki, printSpc, help        *bool
	noGrow, verity, checksum                                *bool
	keep                                                    *[]string
	rootFS, signKey, signCert, enrollKeys                   *string
}

func newBuildFlags() *buildFlags {
	fl := pflag.NewFlagSet("build", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	addStoreFlags(fl) // --cache, --locked, --offline, --no-cache (cache.go)
	return &buildFlags{
		fl:         fl,
		outputs:    fl.StringArrayP("output", "o", nil, "output file, - for stdout (with --format); the format comes from the extension (.raw, .img, .qcow2, …); may repeat"),
		format:     fl.String("format", "", "output format for every -o: "+strings.Join(diskfmt.Names(), ", ")+" (default: from the extension)"),
		compress:   fl.String("compress", "", "compression for every -o: deflate or zstd (qcow2); zstd, xz or gzip (raw)"),
		size:       fl.String("size", "", "disk size, e.g. 4GiB (default: content + headroom, rounded to MiB)"),
		espSize:    fl.String("esp-size", "256MiB", "EFI system partition size"),
		cmdline:    fl.String("cmdline", "", "kernel command line, appended after root=PARTUUID=... rw"),
		extra:      fl.StringArray("layer", nil, "a directory or tar applied on top of the image; may repeat, applied in order"),
		platform:   fl.String("platform", "linux/amd64", "platform to pick from a multi-platform image; several, comma-separated, build one disk each ({arch} in -o paths); without it a single-platform image builds for its own architecture"),
		sde:        fl.String("source-date-epoch", "", "unix time of every timestamp imgfab makes (default: $SOURCE_DATE_EPOCH, else the image's created time)"),
		asJSON:     fl.Bool("json", false, "print the result as JSON on stdout (with each output's sha256, as --checksum)"),
		checksum:   fl.Bool("checksum", false, "compute each output's sha256 and print it (the first output, when it is the disk itself, is read back for it: about 0.4 s per GB)"),
		insecure:   fl.Bool("insecure", false, "allow a plain-HTTP registry"),
		noJournal:  fl.Bool("no-journal", false, "make the ext4 root without a journal"),
		bootMode:   fl.String("boot", "auto", "uefi, bios, hybrid, or auto: hybrid when the image has GRUB's i386-pc modules (grub-pc-bin), else uefi"),
		table:      fl.String("table", "gpt", "partition table: gpt, or mbr for BIOS-only targets that need it"),
		uki:        fl.Bool("uki", false, "boot UEFI through a Unified Kernel Image built from the image's systemd stub (linuxx64.efi.stub)"),
		chain:      fl.String("boot-chain", "", "shim: boot UEFI through the image's signed shim and GRUB (Secure Boot)"),
		push:       fl.String("push", "", "after the build, push the first output: 'TARGET FLAGS…' as for imgfab push, e.g. 'aws --name web-1'; with -f: all, or targets separated by commas, runs the classes' publish: entries"),
		file:       fl.StringP("file", "f", "", "build the classes of this class file (imgfab.yaml); the arguments are class names (default: all)"),
		printSpc:   fl.Bool("print-spec", false, "print the class file equivalent to these flags and exit"),
		className:  fl.String("class", "", "the class name --print-spec writes (default \"default\")"),
		noGrow:     fl.Bool("no-grow", false, "leave the root at the image's size: no growth to the disk on first boot"),
		keep:       fl.StringSlice("keep", nil, "first-boot operations not to do, comma-separated: "+strings.Join(firstboot.Operations, ", ")+", or all"),
		rootFS:     fl.String("rootfs", "ext4", "root filesystem: ext4 (writable), or erofs (read-only; /var on an ext4 partition of its own that grows on first boot)"),
		verity:     fl.Bool("verity", false, "with --rootfs erofs: put the root under dm-verity (hash tree in a root-verity partition, roothash= on the kernel command line)"),
		signKey:    fl.String("sign-key", "", "sign the EFI binaries (systemd-boot, the --uki image) for Secure Boot with this RSA key (PEM)"),
		signCert:   fl.String("sign-cert", "", "the X.509 certificate (PEM) of --sign-key"),
		enrollKeys: fl.String("enroll-keys", "", "a directory from imgfab keys create: its PK/KEK/db .auth files go to the ESP for systemd-boot to enroll in a firmware in setup mode"),
		target:     fl.String("target", "", "check the first output for this target after the build (as imgfab check --target): "+strings.Join(check.Targets(), ", ")),
		help:       fl.BoolP("help", "h", false, "show this help"),
	}
}

// plan turns the flags of a build from one SOURCE into an assemble.Plan.
func (f *buildFlags) plan(stdout io.Writer) (assemble.Plan, error) {
	fl := f.fl
	if fl.Changed("class") && !*f.printSpc {
		return assemble.Plan{}, usagef("--class goes with --print-spec (or name classes after -f FILE)")
	}
	if fl.NArg() != 1 {
		return assemble.Plan{}, usagef("want exactly one SOURCE, got %d arguments", fl.NArg())
	}
	if len(*f.outputs) == 0 {
		return assemble.Plan{}, usagef("no output: give -o PATH")
	}
	plan := assemble.Plan{
		Source:      fl.Arg(0),
		Platform:    f.platformGiven(),
		ExtraLayers: *f.extra,
		Cmdline:     *f.cmdline,
		Insecure:    *f.insecure,
		NoJournal:   *f.noJournal,
		Boot:        assemble.BootOptions{Mode: *f.bootMode, Table: *f.table, UKI: *f.uki, Chain: *f.chain},
		Stdout:      stdout,
		FirstBoot:   assemble.FirstBootOptions{NoGrow: *f.noGrow, Keep: *f.keep},
		RootFS:      *f.rootFS,
		Verity:      *f.verity,
		Checksum:    *f.checksum || *f.asJSON,
	}
	if *f.signKey != "" || *f.signCert != "" || *f.enrollKeys != "" {
		plan.Sign = &assemble.SignOptions{Key: *f.signKey, Cert: *f.signCert, Enroll: *f.enrollKeys}
	}
	if err := firstboot.CheckKeep(*f.keep); err != nil {
		return plan, usagef("--keep: %v", err)
	}
	if t := *f.target; t != "" && !isCheckTarget(t) {
		return plan, usagef("--target %q: want one of %s", t, strings.Join(check.Targets(), ", "))
	}
	stdoutUsed := false
	for _, o := range *f.outputs {
		if o == "-" {
			if *f.format == "" {
				return plan, usagef("-o - (stdout) needs --format")
			}
			if stdoutUsed || *f.asJSON {
				return plan, usagef("-o - (stdout) can be given once and not with --json")
			}
			stdoutUsed = true
		}
		plan.Outputs = append(plan.Outputs, assemble.Output{Path: o, Format: *f.format, Compress: *f.compress})
	}
	return plan, f.numbers(&plan)
}

// numbers parses the sizes and the epoch into plan; assemble range-checks them (the one checker)
// and the error is reported in the user's own spelling.
func (f *buildFlags) numbers(plan *assemble.Plan) error {
	if *f.size != "" {
		n, err := parseSize(*f.size)
		if err != nil {
			return usagef("--size: %v", err)
		}
		if n <= assemble.MaxDiskSize && n%(1<<20) != 0 {
			n = (n + 1<<20 - 1) &^ (1<<20 - 1)
		}
		plan.Size = n
	}
	n, err := parseSize(*f.espSize)
	if err != nil {
		return usagef("--esp-size: %v", err)
	}
	if n == 0 { // 0 in a Plan means the default
		return usagef("--esp-size %s: want %s", *f.espSize, assemble.ESPSizeWant)
	}
	plan.ESPSize = n
	epochStr, epochFrom := *f.sde, "--source-date-epoch"
	if epochStr == "" {
		epochStr, epochFrom = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if epochStr != "" {
		e, err := strconv.ParseInt(strings.TrimSpace(epochStr), 10, 64)
		if err != nil {
			return usagef("%s: %q: want %s", epochFrom, epochStr, assemble.EpochWant)
		}
		plan.SourceDateEpoch = &e
	}
	var re *assemble.RangeError
	switch err := plan.CheckNumbers(); {
	case err == nil:
		return nil
	case !errors.As(err, &re):
		return err
	case re.Field == "Size":
		return usagef("--size %s: want %s", *f.size, re.Want)
	case re.Field == "ESPSize":
		return usagef("--esp-size %s: want %s", *f.espSize, re.Want)
	case re.Field == "SourceDateEpoch":
		return usagef("%s: %q: want %s", epochFrom, epochStr, re.Want)
	default:
		return usagef("%v", err)
	}
}

// pushArgs checks --push: nil when it is not given.
func (f *buildFlags) pushArgs() ([]string, error) {
	if !f.fl.Changed("push") {
		return nil, nil
	}
	args := strings.Fields(*f.push)
	if len(args) == 0 {
		return nil, usagef("--push %q: want a target and its flags, e.g. --push 'aws --name web-1'", *f.push)
	}
	if _, ok := pushTargets[args[0]]; !ok {
		return nil, usagef("--push: unknown target %q (known: %s)", args[0], strings.Join(pushTargetNames(), ", "))
	}
	if (*f.outputs)[0] == "-" {
		return nil, usagef("--push needs the first -o to be a file")
	}
	return args, nil
}

// runPush runs `imgfab push` on the first output; it prints its own result (with --json when build
// has it, the build's result going to stderr first).
func (f *buildFlags) runPush(ctx context.Context, res *assemble.Result, pushArgs []string, stdout, stderr io.Writer) error {
	args := append([]string{pushArgs[0], (*f.outputs)[0]}, pushArgs[1:]...)
	if *f.asJSON {
		args = append(args, "--json")
		enc := json.NewEncoder(stderr)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	if err := runPush(ctx, args, stdout, stderr); err != nil {
		return fmt.Errorf("--push %s: %w", pushArgs[0], err)
	}
	return nil
}

// report prints a build's result: JSON on stdout, or one line per output.
func report(res *assemble.Result, asJSON bool, stdout, stderr io.Writer) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, o := range res.Outputs {
		if o.Path == "-" {
			fmt.Fprintf(stderr, "stdout: %s\n", outputLine(res, o))
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", o.Path, outputLine(res, o))
	}
	return nil
}

// outputLine describes one output for a person: its format, the disk's size and, when it was
// computed (--checksum, class files), its sha256.
func outputLine(res *assemble.Result, o assemble.OutputResult) string {
	s := fmt.Sprintf("%s, %d MiB virtual", o.Format, res.VirtualSize>>20)
	if o.SHA256 != "" {
		s += ", sha256 " + o.SHA256
	}
	return s
}

// platformGiven is --platform when given; "" lets the build take a single-platform image's own
// architecture (an index still resolves for linux/amd64).
func (f *buildFlags) platformGiven() string {
	if f.fl.Changed("platform") {
		return *f.platform
	}
	return ""
}
