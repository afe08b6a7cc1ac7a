package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/inspect"
	"github.com/imgfab/imgfab/publish"
)

// pushTargets maps `imgfab push TARGET` to the function that parses that target's flags and
// pushes. Each lives in its own file (push_aws.go, push_gcp.go, push_azure.go, push_oci.go) and
// registers itself in an init function.
var pushTargets = map[string]pushFunc{}

// pushFunc runs `imgfab push TARGET args...`.
type pushFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

const pushHelp = `Usage: imgfab push TARGET [flags] DISK ...

Upload a disk image to where machines boot from it.

Targets:
  aws     EBS direct APIs → snapshot → AMI (or --via s3: S3 + ImportSnapshot)
          imgfab push aws DISK --name NAME [--region R]
  gcp     GCS upload of the GCE tarball → images.insert
          imgfab push gcp DISK --project P --bucket B --name NAME
  azure   page blob upload of the fixed VHD → managed image
          imgfab push azure DISK --resource-group G --storage-account A --name NAME
  oci     a registry: KubeVirt containerDisk (or --artifact)
          imgfab push oci DISK REGISTRY/REPO:TAG

Before anything is sent, the disk is checked for the target (imgfab check: aws or aws-arm64,
gcp, azure, kubevirt for oci): a failing rule stops the push; --no-check skips the check.

Credentials come from each provider's standard chain (environment, shared config, instance
metadata; ~/.docker/config.json for registries) and are never printed or stored.
Run 'imgfab push TARGET --help' for a target's flags.
`

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("push needs a TARGET (%s)", strings.Join(pushTargetNames(), ", "))
	}
	if args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, pushHelp)
		return errHelp
	}
	fn, ok := pushTargets[args[0]]
	if !ok {
		return usagef("unknown push target %q (known: %s)", args[0], strings.Join(pushTargetNames(), ", "))
	}
	return fn(ctx, args[1:], stdout, stderr)
}

func pushTargetNames() []string {
	var names []string
	for n := range pushTargets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// pushDisk opens disk, checks it for t's target (imgfab check; not with noCheck), pushes it to
// t with progress on stderr and prints the result. The text of an error goes through redactEnv
// with secretEnv (belt and braces: publish redacts too).
func pushDisk(ctx context.Context, t publish.Target, disk string, stdout, stderr io.Writer, asJSON, noCheck bool, secretEnv ...string) error {
	a, closeDisk, err := openArtifact(ctx, disk)
	if err != nil {
		return err
	}
	defer closeDisk()
	if !noCheck {
		if err := checkBeforePush(ctx, t, a, stderr); err != nil {
			return err
		}
	}
	prog := newPushProgress(stderr)
	// Said before the first request, which may wait on a slow or retrying endpoint.
	fmt.Fprintf(stderr, "imgfab push: %s: uploading %s (%s, %d MiB virtual)…\n", t.Name(), disk, a.Image.Format(), a.Image.Size()>>20)
	res, err := t.Push(ctx, a, prog.event)
	prog.done()
	if err != nil {
		if len(secretEnv) == 0 {
			return err
		}
		return fmt.Errorf("%s", redactEnv(err.Error(), secretEnv...))
	}
	return printPushResult(stdout, res, asJSON)
}

// redactEnv replaces in s the values (of 4 bytes or more) of the environment variables named.
func redactEnv(s string, names ...string) string {
	for _, k := range names {
		if v := os.Getenv(k); len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[REDACTED]")
		}
	}
	return s
}

// parseKV turns repeated KEY=VALUE flag values into a map (nil when there are none); cmd and
// flag name the flag in the usage error.
func parseKV(cmd, flag string, kvs []string) (map[string]string, error) {
	var m map[string]string
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("%s: %s %q: want KEY=VALUE", cmd, flag, kv)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	return m, nil
}

// openArtifact opens DISK for a push: its format from the content, its boot modes from inspect.
func openArtifact(ctx context.Context, path string) (publish.Artifact, func(), error) {
	img, err := diskfmt.Open(ctx, path)
	if err != nil {
		return publish.Artifact{}, nil, err
	}
	a := publish.Artifact{Path: path, Image: img}
	if rep, err := inspect.Inspect(ctx, img); err == nil {
		// The disk's architecture from its loader (BOOTAA64.EFI: arm64); amd64 when unknown.
		a.BootModes, a.Arch = rep.BootModes, rep.Architecture
	}
	return a, func() { img.Close() }, nil
}

// printPushResult prints the result: JSON with --json, else one line.
func printPushResult(stdout io.Writer, res publish.Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	line := fmt.Sprintf("%s: %s", res.Target, res.ID)
	if res.Name != "" {
		line += " (" + res.Name + ")"
	}
	if res.Region != "" {
		line += " in " + res.Region
	}
	if res.Snapshot != "" {
		line += ", snapshot " + res.Snapshot
	}
	if res.Existing {
		line += ", already there"
	}
	fmt.Fprintln(stdout, line)
	return nil
}

// pushProgress draws bytes, rate and ETA per upload on stderr when it is a terminal.
type pushProgress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	start time.Time
	last  time.Time
}

func newPushProgress(w io.Writer) *pushProgress {
	p := &pushProgress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.on = true
	}
	return p
}

func (p *pushProgress) event(e publish.Event) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && (e.Total == 0 || e.Done < e.Total) {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	line := fmt.Sprintf("%s %s", e.Target, e.Step)
	if e.Done > 0 && el > 0 {
		rate := float64(e.Done) / el
		line += fmt.Sprintf(" %d MiB, %.1f MiB/s", e.Done>>20, rate/(1<<20))
		if e.Total > 0 && rate > 0 {
			line += fmt.Sprintf(", %d%%, eta %ds", e.Done*100/e.Total, int64(float64(e.Total-e.Done)/rate))
		}
	}
	if e.Note != "" {
		line += " — " + e.Note
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}

func (p *pushProgress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
