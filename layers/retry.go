package layers

// Registry reads that survive transient faults.
//
// go-containerregistry's transport already retries a request that fails before its response
// (connection refused or reset, and the status codes in retryStatusCodes); we set its backoff and
// codes. It does not retry a blob body that breaks off mid-stream, nor a blob whose bytes do not
// match its digest. retryLayer does:
//
//   - a blob of at most wholeBlobMax bytes (by its manifest size) is read whole into memory and
//     checked (size and sha256) before its first byte is used. A transient failure fetches it again
//     from the start, up to the policy's attempts; a wrong blob (size or digest mismatch) is
//     fetched once more, then fails with a *DigestError.
//   - a bigger blob streams. When the stream breaks off after N bytes, the blob is fetched again
//     from the start, its first N bytes are hashed and must equal the N bytes already passed on
//     (else an error: never spliced), then reading goes on. At the end the whole stream's digest is
//     checked (here and again by ImageLayers' verifyReader); a mismatch there cannot be retried, the
//     bytes are used already: it is a *DigestError.
//
// Errors name the layer digest and the number of attempts.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imgfab/imgfab/internal/retry"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// retryStatusCodes are the HTTP statuses retried: timeouts, rate limits and server-side failures.
var retryStatusCodes = []int{
	http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
}

// wholeBlobMax: registry blobs up to this size are read whole and checked before use, so a wrong
// blob can be fetched again. A variable for tests.
var wholeBlobMax int64 = 4 << 20

// retryPolicy is imgfab's one retry policy (internal/retry): tries in all, and the wait after
// the first failure, doubled after each further one.
type retryPolicy = retry.Policy

var defaultRetry = retryPolicy{Attempts: 5, Base: 250 * time.Millisecond}

// WithRetry sets how often a registry request or blob read is tried in all (at least 1) and the
// wait after the first failure, doubled after each further one (default 5 tries, 250ms: at most
// 3.75s of waiting per request).
func WithRetry(attempts int, base time.Duration) Option {
	return func(o *options) {
		if attempts < 1 {
			attempts = 1
		}
		o.retry = retryPolicy{Attempts: attempts, Base: base}
	}
}

// remoteOptions are the go-containerregistry options for a registry source; sizes (may be nil)
// checks blob responses against the manifest sizes.
func remoteOptions(ctx context.Context, o *options, sizes *blobSizes) []remote.Option {
	var t http.RoundTripper = remote.DefaultTransport
	if sizes != nil {
		sizes.base = t
		t = sizes
	}
	return []remote.Option{
		remote.WithTransport(t),
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithRetryBackoff(remote.Backoff{Duration: o.retry.Base, Factor: 2, Jitter: 0.1, Steps: o.retry.Attempts}),
		remote.WithRetryStatusCodes(retryStatusCodes...),
	}
}

// transient reports whether a failed blob read is worth another try.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, c := range retryStatusCodes {
			if te.StatusCode == c {
				return true
			}
		}
		return false
	}
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne)
}

// retryLayer is a registry layer whose Compressed stream is fetched again after transient faults.
type retryLayer struct {
	v1.Layer
	ctx    context.Context
	pol    retryPolicy
	digest v1.Hash
	size   int64 // from the manifest; -1 unknown
}

// failed reports a blob that could not be read; the callers name the layer.
func (l *retryLayer) failed(attempts int, err error) error {
	return fmt.Errorf("fetching blob failed after %d attempt(s): %w", attempts, err)
}

// blobSizes is the HTTP transport below go-containerregistry's for a registry source. A blob
// response whose Content-Length is not the size the manifest gives is refused before its first
// byte: the blob served is not the one asked for (go-containerregistry checks this itself only for
// a layer looked up through its image, which parses the whole manifest again for every layer).
type blobSizes struct {
	base http.RoundTripper
	mu   sync.Mutex
	want map[string]int64 // "sha256:…" -> size
}

func newBlobSizes() *blobSizes { return &blobSizes{want: make(map[string]int64)} }

func (b *blobSizes) expect(d v1.Hash, size int64) {
	b.mu.Lock()
	b.want[d.String()] = size
	b.mu.Unlock()
}

// wrongLength is a blob response of the wrong length.
type wrongLength struct {
	digest    string
	want, got int64
}

func (e *wrongLength) Error() string {
	return fmt.Sprintf("blob %s: response of %d bytes, the manifest says %d", e.digest, e.got, e.want)
}

func (b *blobSizes) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK || resp.ContentLength < 0 {
		return resp, err
	}
	// A blob request may be redirected (to a CDN): the digest is in the first request's path.
	first := req
	for n := 0; first.Response != nil && first.Response.Request != nil && n < 20; n++ {
		first = first.Response.Request
	}
	i := strings.LastIndex(first.URL.Path, "/blobs/")
	if i < 0 {
		return resp, nil
	}
	d := first.URL.Path[i+len("/blobs/"):]
	b.mu.Lock()
	want, ok := b.want[d]
	b.mu.Unlock()
	if ok && want >= 0 && resp.ContentLength != want {
		resp.Body.Close()
		return nil, &wrongLength{digest: d, want: want, got: resp.ContentLength}
	}
	return resp, nil
}

// contentLength matches go-containerregistry's check of a blob response against the manifest size
// (fetcher.go); the blob served is not the one asked for.
var contentLength = regexp.MustCompile(`Content-Length header (\d+) does not match expected size (\d+)`)

// open fetches the blob; a response of the wrong length is a wrong blob: a *DigestError.
func (l *retryLayer) open() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		var wl *wrongLength
		if errors.As(err, &wl) {
			return nil, &DigestError{Layer: l.digest.String(), What: "blob", WantSize: wl.want, GotSize: wl.got}
		}
		if m := contentLength.FindStringSubmatch(err.Error()); m != nil {
			got, _ := strconv.ParseInt(m[1], 10, 64)
			want, _ := strconv.ParseInt(m[2], 10, 64)
			return nil, &DigestError{Layer: l.digest.String(), What: "blob", WantSize: want, GotSize: got}
		}
	}
	return rc, err
}

func (l *retryLayer) Compressed() (io.ReadCloser, error) {
	if l.size >= 0 && l.size <= wholeBlobMax {
		return l.whole()
	}
	return &streamBlob{l: l, h: sha256.New()}, nil
}

// check compares bytes got against the manifest's size and digest.
func (l *retryLayer) check(b []byte) *DigestError {
	if l.size >= 0 && int64(len(b)) != l.size {
		return &DigestError{Layer: l.digest.String(), What: "blob", WantSize: l.size, GotSize: int64(len(b))}
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != l.digest.Hex {
		return &DigestError{Layer: l.digest.String(), What: "blob", Want: l.digest.String(), Got: "sha256:" + got}
	}
	return nil
}

// whole reads a small blob completely and checks it before handing out a byte.
func (l *retryLayer) whole() (io.ReadCloser, error) {
	for n := 1; ; n++ {
		b, err := l.readAll()
		if err == nil {
			return io.NopCloser(bytes.NewReader(b)), nil
		}
		var de *DigestError
		wrong := errors.As(err, &de)
		limit := l.pol.Attempts
		if wrong {
			limit = min(2, l.pol.Attempts) // a wrong blob: one more try, it may have been a bad cache
		}
		if (!wrong && !transient(err)) || n >= limit {
			if wrong {
				return nil, fmt.Errorf("%w (blob fetched %d times)", err, n)
			}
			return nil, l.failed(n, err)
		}
		if werr := l.pol.Wait(l.ctx, n); werr != nil {
			return nil, l.failed(n, werr)
		}
	}
}

func (l *retryLayer) readAll() ([]byte, error) {
	rc, err := l.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, l.size+1))
	// go-containerregistry checks the digest too and may report a mismatch as its own error: the
	// bytes decide. A complete blob with the right digest is good whatever the stream said at its
	// end; a complete or overlong one with the wrong bytes is a wrong blob; a short one is a
	// wrong blob only if the stream ended cleanly.
	if int64(len(b)) >= l.size {
		if de := l.check(b); de != nil {
			return nil, de
		}
		return b, nil
	}
	if err == nil || (!transient(err) && !errors.As(err, new(*transport.Error))) {
		return nil, l.check(b)
	}
	return nil, fmt.Errorf("blob broke off after %d of %d bytes: %w", len(b), l.size, err)
}

// streamBlob streams a big blob, fetching it again from the start when it breaks off.
type streamBlob struct {
	l        *retryLayer
	rc       io.ReadCloser
	h        hash.Hash // of the n bytes passed on
	n        int64
	attempts int
	err      error // sticky
}

func (s *streamBlob) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for {
		if s.rc == nil {
			if err := s.reopen(); err != nil {
				var de *DigestError
				wrong := errors.As(err, &de)
				if s.attempts < s.l.pol.Attempts && transient(err) || wrong && s.attempts < min(2, s.l.pol.Attempts) {
					if werr := s.l.pol.Wait(s.l.ctx, s.attempts); werr != nil {
						s.err = s.l.failed(s.attempts, werr)
						return 0, s.err
					}
					continue
				}
				switch {
				case wrong:
					s.err = fmt.Errorf("%w (blob fetched %d times)", err, s.attempts)
				case errors.As(err, new(*spliceError)):
					s.err = err
				default:
					s.err = s.l.failed(s.attempts, err)
				}
				return 0, s.err
			}
		}
		k, err := s.rc.Read(p)
		s.h.Write(p[:k])
		s.n += int64(k)
		if err == io.EOF || err != nil && (s.l.size >= 0 && s.n >= s.l.size || !transient(err)) {
			// The end, or a stream that ended with go-containerregistry's own digest error: the
			// bytes decide (see readAll).
			s.err = s.end()
			return k, s.err
		}
		if err == nil {
			return k, nil
		}
		s.rc.Close()
		s.rc = nil
		if s.attempts >= s.l.pol.Attempts || !transient(err) {
			s.err = s.l.failed(s.attempts, fmt.Errorf("blob broke off after %d bytes: %w", s.n, err))
			return k, s.err
		}
		if werr := s.l.pol.Wait(s.l.ctx, s.attempts); werr != nil {
			s.err = s.l.failed(s.attempts, werr)
			return k, s.err
		}
		if k > 0 {
			return k, nil
		}
	}
}

func (s *streamBlob) end() error {
	if s.l.size >= 0 && s.n != s.l.size {
		return &DigestError{Layer: s.l.digest.String(), What: "blob", WantSize: s.l.size, GotSize: s.n}
	}
	if got := hex.EncodeToString(s.h.Sum(nil)); got != s.l.digest.Hex {
		return &DigestError{Layer: s.l.digest.String(), What: "blob", Want: s.l.digest.String(), Got: "sha256:" + got}
	}
	return io.EOF
}

// spliceError: a blob fetched again does not begin with the bytes already passed on.
type spliceError struct{ n int64 }

func (e *spliceError) Error() string {
	return fmt.Sprintf("blob fetched again differs in its first %d bytes from the first fetch: not spliced", e.n)
}

// reopen fetches the blob (again) and skips the n bytes already passed on, checking they are equal.
func (s *streamBlob) reopen() error {
	s.attempts++
	rc, err := s.l.open()
	if err != nil {
		return err
	}
	if s.n > 0 {
		h := sha256.New()
		if m, err := io.CopyN(h, rc, s.n); err != nil {
			rc.Close()
			return fmt.Errorf("re-reading the first %d bytes: after %d: %w", s.n, m, err)
		}
		if !bytes.Equal(h.Sum(nil), s.h.Sum(nil)) {
			rc.Close()
			return &spliceError{n: s.n}
		}
	}
	s.rc = rc
	return nil
}

func (s *streamBlob) Close() error {
	if s.rc != nil {
		err := s.rc.Close()
		s.rc = nil
		return err
	}
	return nil
}
