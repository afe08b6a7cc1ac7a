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
