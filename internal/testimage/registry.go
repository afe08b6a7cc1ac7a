package testimage

import (
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Fault decides what a GET gets. hit counts the requests of this method and path so far, this one
// included; real is what the registry answered. It returns handled=false to have real served.
type Fault func(w http.ResponseWriter, r *http.Request, hit int, real *httptest.ResponseRecorder) (handled bool)

// FaultyRegistry is go-containerregistry's registry (quiet) behind a fault injector: serve it
// with httptest.NewServer. It counts the requests by "METHOD PATH".
type FaultyRegistry struct {
	reg   http.Handler
	mu    sync.Mutex
	hits  map[string]int
	fault Fault
}

// NewFaultyRegistry is a FaultyRegistry without faults.
func NewFaultyRegistry() *FaultyRegistry {
	return &FaultyRegistry{reg: registry.New(registry.Logger(log.New(io.Discard, "", 0))), hits: map[string]int{}}
}

func (f *FaultyRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	key := r.Method + " " + r.URL.Path
	f.hits[key]++
	hit, fault := f.hits[key], f.fault
	f.mu.Unlock()
	if fault == nil || r.Method != http.MethodGet {
		f.reg.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	f.reg.ServeHTTP(rec, r)
	if fault(w, r, hit, rec) {
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// SetFault sets the fault of the requests to come (nil: none). The counts go on.
func (f *FaultyRegistry) SetFault(fault Fault) {
	f.mu.Lock()
	f.fault = fault
	f.mu.Unlock()
}

// ResetHits starts the counts again from zero.
func (f *FaultyRegistry) ResetHits() {
	f.mu.Lock()
	f.hits = map[string]int{}
	f.mu.Unlock()
}

// Hits is a copy of the counts: "METHOD PATH" → requests.
func (f *FaultyRegistry) Hits() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.hits)
}

// DropAfterHalf is a fault's answer: the real headers and half the body, then the connection
// broken off.
func DropAfterHalf(w http.ResponseWriter, real *httptest.ResponseRecorder) {
	for k, v := range real.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(real.Code)
	b := real.Body.Bytes()
	w.Write(b[:len(b)/2])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}
