// Package retry is imgfab's one retry policy: a bounded number of tries with exponential
// backoff (optionally jittered and capped), waiting only while the context lives. The registry
// reads (layers), the EBS and EC2 calls (publish/aws) and the Google API calls (publish/gcp) use it.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy says how often to try and how long to wait between tries.
type Policy struct {
	Attempts int           // tries in all; less than 1 means 1
	Base     time.Duration // the wait after the first failure, doubled after each further one
	Max      time.Duration // the longest wait (0: no cap)
	Jitter   bool          // wait a random time in [d/2, d] instead of d (many clients at once)
}

// Delay is the wait after the failed-th failure (failed ≥ 1), before jitter.
func (p Policy) Delay(failed int) time.Duration {
	d := p.Base << min(max(failed-1, 0), 30)
	if d < 0 || (p.Max > 0 && d > p.Max) {
		d = p.Max
	}
	return d
}

// Wait sleeps after the failed-th failure; it returns ctx.Err() at once when ctx ends first.
func (p Policy) Wait(ctx context.Context, failed int) error {
	d := p.Delay(failed)
	if p.Jitter && d > 1 {
		d = d/2 + rand.N(d/2+1)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Do calls fn until it succeeds, fails with an error retryable does not accept, the tries are
// used up, or ctx ends (then the error is ctx.Err()). It returns the number of tries made and
// fn's last error.
func (p Policy) Do(ctx context.Context, retryable func(error) bool, fn func() error) (int, error) {
	for a := 1; ; a++ {
		err := fn()
		if err != nil && ctx.Err() != nil {
			return a, ctx.Err()
		}
		if err == nil || a >= max(p.Attempts, 1) || !retryable(err) {
			return a, err
		}
		if werr := p.Wait(ctx, a); werr != nil {
			return a, werr
		}
	}
}
