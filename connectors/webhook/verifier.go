package webhook

import (
	"bytes"
	"container/heap"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Defaults of Verifier's optional fields.
const (
	// DefaultWindow is how far a request's timestamp may be from the
	// receiver's clock: long enough for clock skew and a slow network,
	// short enough that remembering every signature of the window is cheap.
	DefaultWindow = 5 * time.Minute
	// DefaultMaxSeen bounds the signatures a Verifier remembers.
	DefaultMaxSeen = 100_000
)

// MaxBodyBytes bounds a request body the Verifier reads, and a response body
// the connector reads.
const MaxBodyBytes = 1 << 20

// Reasons Verify fails. The Middleware maps them to statuses and error codes.
var (
	ErrUnsigned     = errors.New("the request carries no " + HeaderSignature + " header")
	ErrBadSignature = errors.New("the signature does not match")
	ErrStale        = errors.New("the signature's timestamp is outside the accepted window")
	ErrReplayed     = errors.New("the signature was seen before")
	ErrBodyTooLarge = errors.New("the body is larger than 1 MiB")
	// ErrTooManySeen means more signed requests arrived within one window
	// than MaxSeen: failing closed keeps the replay guarantee, and the
	// connector retries.
	ErrTooManySeen = errors.New("too many recent signatures to remember")
	// ErrWeakSecret means the Verifier was given a secret shorter than
	// MinSecretBytes; it then accepts nothing.
	ErrWeakSecret = errors.New("the verifier's secret is shorter than 32 bytes")
)

// Verifier is the receiving side of the protocol for services written in
// Go: it accepts a request only when it is signed with the shared secret,
// recent, and not seen before. The zero value with Secret set is ready to
// use; a Verifier must not be copied after first use, since it remembers the
// signatures it accepted. That memory is the process's own: replicas behind a
// load balancer do not share it, so a replay sent to another replica within
// the window passes, and the endpoint's idempotency by command_id is what
// makes it harmless.
type Verifier struct {
	// Secret is the shared secret, at least MinSecretBytes long.
	Secret []byte
	// Window is how far a timestamp may be from Now, either way; default
	// DefaultWindow.
	Window time.Duration
	// Now is the receiver's clock; default time.Now.
	Now func() time.Time
	// MaxSeen bounds how many accepted signatures are remembered until their
	// window passes; default DefaultMaxSeen.
	MaxSeen int

	mu   sync.Mutex
	seen map[string]time.Time
	exp  expiries
}

// Verify checks r's signature, timestamp and freshness and returns its body,
// which it also puts back into r.Body for the handler. The returned errors
// wrap the Err values above; their messages never quote the body.
func (v *Verifier) Verify(r *http.Request) ([]byte, error) {
	now := v.now()
	window := v.window()
	body, want, sent, err := authenticate(r, v.Secret, now, window)
	if err != nil {
		return nil, err
	}
	// The MAC, not the header's text, identifies the request, so that
	// reformatting the header cannot pass a replay off as new.
	if err := v.remember(string(want), sent.Add(window), now); err != nil {
		return nil, err
	}
	return body, nil
}

// authenticate checks r's Lethe-Signature under secret: present, within
// window of now, and matching the body in constant time. It returns the
// body, also put back into r.Body, the MAC it matched and when the request
// was signed. Verify and the connector's callback share it.
func authenticate(r *http.Request, secret []byte, now time.Time, window time.Duration) (body, want []byte, sent time.Time, err error) {
	if len(secret) < MinSecretBytes {
		return nil, nil, time.Time{}, ErrWeakSecret
	}
	h := r.Header.Get(HeaderSignature)
	if h == "" {
		return nil, nil, time.Time{}, ErrUnsigned
	}
	sig, err := parseSignature(h)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	sent = time.Unix(sig.unix, 0)
	if now.Sub(sent) > window || sent.Sub(now) > window {
		return nil, nil, time.Time{}, ErrStale
	}
	body, err = readBody(r.Body)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	want = mac(secret, sig.ts, body)
	matched := false
	for _, got := range sig.v1 {
		if hmac.Equal(got, want) {
			matched = true
		}
	}
	if !matched {
		return nil, nil, time.Time{}, ErrBadSignature
	}
	return body, want, sent, nil
}

func readBody(body io.ReadCloser) ([]byte, error) {
	if body == nil || body == http.NoBody {
		return []byte{}, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the body: %w", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) window() time.Duration {
	if v.Window > 0 {
		return v.Window
	}
	return DefaultWindow
}

// remember records a signature until expires, after which its timestamp is
// stale anyway, and reports whether it was already there.
func (v *Verifier) remember(key string, expires, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = make(map[string]time.Time)
	}
	for len(v.exp) > 0 && now.After(v.exp[0].at) {
		e := heap.Pop(&v.exp).(expiry)
		delete(v.seen, e.key)
	}
	if _, ok := v.seen[key]; ok {
		return ErrReplayed
	}
	limit := v.MaxSeen
	if limit <= 0 {
		limit = DefaultMaxSeen
	}
	if len(v.seen) >= limit {
		return ErrTooManySeen
	}
	v.seen[key] = expires
	heap.Push(&v.exp, expiry{key: key, at: expires})
	return nil
}

// remembered counts the signatures held, for tests of the bound.
func (v *Verifier) remembered() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.seen)
}

// Middleware lets only verified requests reach next, with the body intact.
// It answers rejections itself with Lethe's JSON error shape, so a service
// needs no code of its own for them: 401 for a missing, wrong, stale or
// replayed signature, 413 for a body over MaxBodyBytes, 400 for a body that
// cannot be read, 503 when too many signatures are remembered, 500 when the
// Verifier's own secret is too short.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := v.Verify(r); err != nil {
			status, code := rejection(err)
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			writeError(w, status, code, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Error codes of the Verifier's rejections; the connector retries
// CodeReplayed with a fresh delivery (see the package documentation).
const (
	CodeMissingSignature = "missing_signature"
	CodeInvalidSignature = "invalid_signature"
	CodeStaleSignature   = "stale_signature"
	CodeReplayed         = "replayed_signature"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnreadableBody   = "unreadable_body"
	CodeOverloaded       = "too_many_signatures"
	CodeMisconfigured    = "verifier_misconfigured"
)

func rejection(err error) (status int, code string) {
	switch {
	case errors.Is(err, ErrUnsigned):
		return http.StatusUnauthorized, CodeMissingSignature
	case errors.Is(err, ErrBadSignature):
		return http.StatusUnauthorized, CodeInvalidSignature
	case errors.Is(err, ErrStale):
		return http.StatusUnauthorized, CodeStaleSignature
	case errors.Is(err, ErrReplayed):
		return http.StatusUnauthorized, CodeReplayed
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge, CodeBodyTooLarge
	case errors.Is(err, ErrTooManySeen):
		return http.StatusServiceUnavailable, CodeOverloaded
	case errors.Is(err, ErrWeakSecret):
		return http.StatusInternalServerError, CodeMisconfigured
	default:
		return http.StatusBadRequest, CodeUnreadableBody
	}
}

// errorBody is Lethe's error shape, shared with the public API.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(b)
}

// expiry is one remembered signature in the heap ordered by when it may be
// forgotten.
type expiry struct {
	key string
	at  time.Time
}

type expiries []expiry

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e expiries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *expiries) Push(x any)        { *e = append(*e, x.(expiry)) }
func (e *expiries) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}
