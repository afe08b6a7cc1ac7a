package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/imgfab/imgfab/assemble"
)

// progress draws one status line on stderr when stderr is a terminal; otherwise it stays silent.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	last  time.Time
	stage string
	start time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.on = true
	}
	return p
}

func (p *progress) event(e assemble.Event) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if e.Stage == p.stage && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.stage, p.last = e.Stage, now
	line := fmt.Sprintf("%6.1fs %-7s", now.Sub(p.start).Seconds(), e.Stage)
	switch {
	case e.Total > 0:
		line += fmt.Sprintf(" %s %d/%d MiB (%d%%)", e.Item, e.Done>>20, e.Total>>20, e.Done*100/e.Total)
	case e.Done > 0:
		line += fmt.Sprintf(" %d MiB  %s", e.Done>>20, e.Item)
	default:
		line += " " + e.Item
	}
	if len(line) > 100 {
		line = line[:100]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
