package publish

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// parallel runs fn(ctx, 0..n-1) on at most workers goroutines (errgroup.SetLimit); the first
// error cancels the ctx the others see and is returned; a cancelled parent returns its error.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, workers))
	for i := 0; i < n && gctx.Err() == nil; i++ {
		g.Go(func() error { return fn(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
