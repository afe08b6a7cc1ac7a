package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errTransient = errors.New("transient")

func TestDo(t *testing.T) {
	p := Policy{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Millisecond, Jitter: true}
	retryable := func(err error) bool { return errors.Is(err, errTransient) }
	calls := 0
	n, err := p.Do(context.Background(), retryable, func() error {
		calls++
		if calls < 3 {
			return errTransient
		}
		return nil
	})
	if n != 3 || err != nil {
		t.Errorf("succeeds on the 3rd try: %d tries, %v", n, err)
	}
	n, err = p.Do(context.Background(), retryable, func() error { return errTransient })
	if n != 4 || !errors.Is(err, errTransient) {
		t.Errorf("always failing: %d tries, %v (want 4 and the error)", n, err)
	}
	perm := errors.New("permanent")
	n, err = p.Do(context.Background(), retryable, func() error { return perm })
	if n != 1 || err != perm {
		t.Errorf("not retryable: %d tries, %v", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	slow := Policy{Attempts: 10, Base: time.Hour}
	start := time.Now()
	n, err = slow.Do(ctx, retryable, func() error { cancel(); return errTransient })
	if n != 1 || !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("cancelled: %d tries, %v after %v", n, err, time.Since(start))
	}
}

func TestDelay(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for failed, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 100: time.Second} {
		if got := p.Delay(failed); got != want {
			t.Errorf("Delay(%d) = %v, want %v", failed, got, want)
		}
	}
	if d := (Policy{Base: time.Second}).Delay(200); d <= 0 {
		t.Errorf("uncapped Delay overflowed to %v", d)
	}
}
