// Command serveload is the load test of `imgfab serve` (testdata/bench-serve.sh, issue 16):
// -clients concurrent clients download the given URLs (round robin, whole bodies, each checked
// against its expected sha256) for -duration and it prints requests, throughput and latency
// percentiles of whole downloads as one JSON line.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	clients := flag.Int("clients", 32, "concurrent clients")
	duration := flag.Duration("duration", 2*time.Minute, "how long to load")
	flag.Parse()
	// Arguments: URL=SHA256 pairs.
	type target struct{ url, sha string }
	var ts []target
	for _, a := range flag.Args() {
		u, s, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "serveload: argument %q: want URL=SHA256\n", a)
			os.Exit(2)
		}
		ts = append(ts, target{u, s})
	}
	if len(ts) == 0 {
		fmt.Fprintln(os.Stderr, "serveload: no URL=SHA256 given")
		os.Exit(2)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *clients, DisableCompression: true}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var bytes int64
	var errs int
	var firstErr string
	var wg sync.WaitGroup
	start := time.Now()
	for c := range *clients {
		wg.Go(func() {
			for i := c; ctx.Err() == nil; i++ {
				t := ts[i%len(ts)]
				t0 := time.Now()
				n, err := get(client, t.url, t.sha)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						errs++
						if firstErr == "" {
							firstErr = err.Error()
						}
					}
				} else {
					lat = append(lat, d)
					bytes += n
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))].Seconds() * 1000
	}
	out := map[string]any{
		"clients": *clients, "seconds": wall.Seconds(), "requests": len(lat), "errors": errs,
		"requests_per_s": float64(len(lat)) / wall.Seconds(), "mib_per_s": float64(bytes) / wall.Seconds() / (1 << 20),
		"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1),
	}
	if firstErr != "" {
		out["first_error"] = firstErr
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if errs > 0 {
		os.Exit(1)
	}
}

// get downloads url whole and checks its sha256.
func get(c *http.Client, url, want string) (int64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("%s: sha256 %s, want %s", url, got, want)
	}
	return n, nil
}
