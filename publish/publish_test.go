package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
