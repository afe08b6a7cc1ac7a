package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestStepErrorWraps: a step's error keeps its cause for errors.Is and errors.As, and its text
// names the target and step with the secrets removed.
func TestStepErrorWraps(t *testing.T) {
	cause := fmt.Errorf("request with key hunter2-secret: %w", context.Canceled)
	err := NewStepError("aws", "uploading", cause, "hunter2-secret")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Target != "aws" || se.Step != "uploading" {
		t.Errorf("errors.As: %+v", se)
	}
	if got := err.Error(); strings.Contains(got, "hunter2") || got != "aws: uploading: request with key [REDACTED]: context canceled" {
		t.Errorf("text %q", got)
	}
	if NewStepError("aws", "x", nil) != nil {
		t.Error("NewStepError(nil) is not nil")
	}
}

// TestArtifactArchitecture: empty and the kernel's names map to amd64 and arm64; anything else
// is an error naming it.
func TestArtifactArchitecture(t *testing.T) {
	for arch, want := range map[string]string{"": "amd64", "amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64"} {
		if got, err := (Artifact{Arch: arch}).Architecture(); got != want || err != nil {
			t.Errorf("Arch %q: %q, %v; want %q", arch, got, err, want)
		}
	}
	for _, arch := range []string{"sparc", "AMD64", "arm", "i386"} {
		if got, err := (Artifact{Arch: arch}).Architecture(); err == nil || got != "" || err.Error() != fmt.Sprintf("architecture %q: want amd64 or arm64", arch) {
			t.Errorf("Arch %q: %q, %v; want an error naming it", arch, got, err)
		}
	}
}

// TestCounterOrder: workers adding at once through one Counter give a Progress whose Done only
// grows and whose last event is the sum.
func TestCounterOrder(t *testing.T) {
	var c Counter
	var got []int64
	p := Progress(func(e Event) { got = append(got, e.Done) }) // called under the counter's lock
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				c.Add(p, 3, Event{Step: "upload"})
			}
		}()
	}
	wg.Wait()
	if len(got) != 4000 || got[len(got)-1] != 12000 || c.Done() != 12000 {
		t.Fatalf("%d events, last %d, Done %d; want 4000, 12000", len(got), got[len(got)-1], c.Done())
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("event %d: Done %d after %d", i, got[i], got[i-1])
		}
	}
}
