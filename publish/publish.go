package publish

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/imgfab/imgfab/diskfmt"
)

// Artifact is a disk image to publish.
type Artifact struct {
	Path  string        // the file, for targets that upload a file as it is (GCE tar.gz, VHD, qcow2)
	Image diskfmt.Image // the same disk opened for reading (guest bytes, extents, virtual size)
	// BootModes the disk supports: "uefi", "bios" (from `imgfab inspect` / the build result).
	BootModes []string
	// Arch is the disk's CPU architecture as `imgfab inspect` reports it
	// (inspect.Report.Architecture): "amd64" or "arm64"; empty means "amd64". The kernel's names
	// "x86_64" and "aarch64" are taken as the same. Every target carries it: AWS RegisterImage
	// Architecture x86_64 or arm64 (arm64 with BootMode uefi), GCE images.insert architecture
	// X86_64 or ARM64, Azure a compute gallery image definition of architecture x64 or Arm64
	// (Arm64 with Hyper-V V2), the OCI platform linux/amd64 or linux/arm64. Use Architecture to
	// read it.
	Arch string
}

// The architectures an Artifact can have (Artifact.Arch, as Go and OCI name them).
const (
	AMD64 = "amd64"
	ARM64 = "arm64"
)

// Architecture returns a.Arch as AMD64 or ARM64 ("" and "x86_64" are AMD64, "aarch64" is ARM64);
// any other value is an error naming it.
func (a Artifact) Architecture() (string, error) {
	switch a.Arch {
	case "", AMD64, "x86_64":
		return AMD64, nil
	case ARM64, "aarch64":
		return ARM64, nil
	}
	return "", fmt.Errorf("architecture %q: want amd64 or arm64", a.Arch)
}

// Boots reports whether the artifact boots in mode ("uefi" or "bios").
func (a Artifact) Boots(mode string) bool {
	for _, m := range a.BootModes {
		if m == mode {
			return true
		}
	}
	return false
}

// Event is a progress report of one upload.
type Event struct {
	Target string // "aws", "gcp", "azure", "oci"
	Step   string // "upload", "register", "wait", …
	Done   int64  // bytes (or items) done
	Total  int64  // 0 when unknown
	Note   string // e.g. "skipped 812 zero blocks"
}

// Progress receives events; it may be nil.
type Progress func(Event)

// Emit sends e to p; a nil Progress drops it.
func (p Progress) Emit(e Event) {
	if p != nil {
		p(e)
	}
}

// Result is what a push made, documented for --json.
type Result struct {
	Target   string            `json:"target"`
	ID       string            `json:"id"`                 // AMI id, GCE image self link, Azure image id, manifest digest
	Name     string            `json:"name,omitempty"`     // image name or reference
	Region   string            `json:"region,omitempty"`   // AWS region, Azure location
	Snapshot string            `json:"snapshot,omitempty"` // AWS snapshot id
	Existing bool              `json:"existing"`           // true when an identical image already existed and was reused
	Details  map[string]string `json:"details,omitempty"`  // target-specific facts (block counts, blob URL, digests)
}

// Target is one place to publish to.
type Target interface {
	Name() string
	Push(ctx context.Context, a Artifact, p Progress) (Result, error)
}

// Redact replaces every secret in s with "[REDACTED]", for error messages built from SDK errors
// that may echo request data. Secrets shorter than 4 bytes (empty ones included) are ignored.
func Redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// StepError is a failed step of a push: its text names the target and the step and has every
// secret removed; Unwrap gives the cause, so errors.Is and errors.As see through it (a
// cancellation, an SDK's typed error). Print Error(), never the cause's own text.
type StepError struct {
	Target, Step string
	msg          string // the cause's text, redacted
	err          error
}

func (e *StepError) Error() string { return e.Target + ": " + e.Step + ": " + e.msg }
func (e *StepError) Unwrap() error { return e.err }

// NewStepError wraps err as a *StepError of target and step, with secrets removed from its text.
// It returns nil when err is nil, so a call can wrap a result as it is.
func NewStepError(target, step string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	return &StepError{Target: target, Step: step, msg: Redact(err.Error(), secrets...), err: err}
}

// Counter adds up the bytes parallel workers have done and emits each sum in order: a Progress
// fed through it sees Done only grow, and the last event it gets is the final count (two workers
// adding and emitting on their own can deliver their sums out of order).
type Counter struct {
	mu   sync.Mutex
	done int64
}

// Add adds n and emits e with Done set to the new sum, under the counter's lock.
func (c *Counter) Add(p Progress, n int64, e Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	e.Done = c.done
	p.Emit(e)
}

// Done is the sum so far.
func (c *Counter) Done() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}
