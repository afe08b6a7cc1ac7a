// Command imgfab builds bootable, reproducible disk images from container images.
//
//	imgfab build [flags] SOURCE     container image → bootable disk (raw, qcow2, vmdk, vhd, gce, …)
//	imgfab convert [flags] IN OUT   disk image → another format
//	imgfab inspect [--json] DISK    what is on a disk image
//	imgfab check DISK --target T    whether a disk image fits a target (aws, gcp, azure, …)
//	imgfab push TARGET [flags] DISK upload to AWS, GCP, Azure or an OCI registry
//	imgfab lock -f FILE             pin a class file's sources in imgfab.lock
//	imgfab cache ls|prune           the local cache of blobs and finished outputs
//	imgfab version
//
// Exit status: 0 success, 1 failure, 2 usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/imgfab/imgfab/diskfmt"
)

// usageError marks errors in how imgfab was called (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"build", "build a bootable disk image from a container image", runBuild},
	{"convert", "convert a disk image: raw, qcow2, VMDK, VHD or GCE tarball in; any output format out", runConvert},
	{"inspect", "show the partitions, boot entries, kernel command line and OS of a disk image (any format convert reads)", runInspect},
	{"check", "say whether a disk image fits a target (aws, gcp, azure, kubevirt, …) before it is uploaded", runCheck},
	{"push", "upload a disk image to AWS, GCP, Azure or an OCI registry", runPush},
	{"serve", "run the image factory as an HTTP service: classes in, disks built on request, stored in an OCI registry", runServe},
	{"keys", "create your own Secure Boot keys (PK, KEK, db) and the signed lists that enroll them", runKeys},
	{"lock", "resolve a class file's sources and write imgfab.lock; fill the cache", runLock},
	{"cache", "list (ls) or prune the local cache of blobs and finished outputs", runCache},
	{"version", "print the version", runVersion},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "imgfab turns container images into bootable, reproducible disk images.\n\nUsage:\n  imgfab COMMAND [flags] [args]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.short)
	}
	fmt.Fprintf(w, "\nRun 'imgfab COMMAND --help' for a command's flags and examples.\n")
}

// defaultMemoryLimit is the Go heap limit when GOMEMLIMIT is not set: memory grows with the
// number of entries in an image (about 500 bytes of live heap each), and without a limit the
// garbage collector lets the process grow to twice its live heap. 192 MiB keeps a 200,000-entry
// tree well inside 256 MiB of RSS at no measurable cost in time (testdata/bench-scale.sh).
const defaultMemoryLimit = 192 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sig := handleSignals(cancel)
	stopProfiles, err := startProfiles()
	if err != nil {
		fmt.Fprintf(os.Stderr, "imgfab: %v\n", err)
		os.Exit(1)
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfiles()
	if s := sig.Load(); s != nil {
		code = exitCode(s.(os.Signal))
	}
	os.Exit(code)
}

// forceExitAfter is how long a command has to return after SIGINT or SIGTERM cancelled its
// context before the process exits anyway (a read blocked in the kernel, a library loop that does
// not look at its context). Outputs are unnamed files until committed (diskfmt.CreateOutput), so
// exiting then leaves no partial output; diskfmt.RemoveTemps removes the few that have a name.
const forceExitAfter = 1500 * time.Millisecond

// drainFor, when set (imgfab serve --drain), replaces forceExitAfter: the time a service has to
// finish the requests and builds in flight after the first signal.
var drainFor atomic.Int64

// handleSignals cancels the context on the first SIGINT or SIGTERM and records it; the process
// exits 130 (SIGINT) or 143 (SIGTERM) after forceExitAfter, or at once on a second signal.
func handleSignals(cancel context.CancelFunc) *atomic.Value {
	var got atomic.Value
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-ch
		got.Store(s)
		cancel()
		select {
		case <-ch:
		case <-time.After(max(forceExitAfter, time.Duration(drainFor.Load()))):
		}
		diskfmt.RemoveTemps()
		fmt.Fprintf(os.Stderr, "imgfab: interrupted (%v)\n", s)
		os.Exit(exitCode(s))
	}()
	return &got
}

// exitCode is the shell's status for a process ended by s: 128 + the signal number.
func exitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help":
		usage(stdout)
		return 0
	case "help": // "imgfab help build" is "imgfab build --help"
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		args = []string{args[1], "--help"}
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ue usageError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "imgfab %s: %s\nRun 'imgfab %s --help' for usage.\n", c.name, ue.msg, c.name)
			return 2
		case errors.Is(err, errHelp):
			return 0
		case ctx.Err() != nil: // the command failed because a signal cancelled it
			fmt.Fprintf(stderr, "imgfab %s: interrupted\n", c.name)
			return 1 // main turns this into 130 or 143 from the signal
		default:
			// Libraries name their step ("build: root filesystem: …"); the command's own name
			// is printed once.
			msg := strings.TrimPrefix(err.Error(), c.name+": ")
			fmt.Fprintf(stderr, "imgfab %s: %s\n", c.name, msg)
			return 1
		}
	}
	fmt.Fprintf(stderr, "imgfab: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
