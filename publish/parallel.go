package publish

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Parallel runs fn(ctx, i) for i in 0..n-1 on at most workers goroutines (errgroup.SetLimit;
// workers < 1 means 1). The first error cancels the ctx the other calls see and is returned; when
// every call succeeds but the parent ctx was cancelled, its error is returned.
func Parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
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
