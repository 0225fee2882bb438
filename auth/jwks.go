package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// DefaultKeyRefresh is the shortest time between two fetches of the
// issuer's key set. go-oidc fetches the key set again for every JWT that
// its cached keys do not verify, forged ones included; without a floor,
// anyone could make Lethe send the issuer one request per forged token.
// Issuers publish a new key before they sign with it, so a refetch at most
// every ten seconds still learns a rotated key in time.
const DefaultKeyRefresh = 10 * time.Second

// maxKeySetBytes bounds a key set response; real ones are a few KiB.
const maxKeySetBytes = 1 << 20

// keySetThrottle is the HTTP transport of key set fetches: it lets one
// fetch through per interval and answers the others with the outcome of
// the last one. A replayed key set that lacks a forged token's key refuses
// that token as any fetch would; a legitimate token of a new key is
// learned once the interval has passed since the previous fetch.
type keySetThrottle struct {
	next  http.RoundTripper
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	last   time.Time
	body   []byte      // the last key set fetched, nil if the last fetch failed
	header http.Header // its headers (go-oidc reads Content-Type)
	err    error       // why the last fetch failed
}

func (k *keySetThrottle) RoundTrip(req *http.Request) (*http.Response, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if !k.last.IsZero() && now.Sub(k.last) < k.every {
		return k.replay(req)
	}
	k.last = now
	k.body, k.header, k.err = nil, nil, nil
	resp, err := k.next.RoundTrip(req)
	if err != nil {
		k.err = err
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySetBytes+1))
	switch {
	case err != nil:
		k.err = fmt.Errorf("read key set: %w", err)
	case len(body) > maxKeySetBytes:
		k.err = errors.New("key set larger than 1 MiB")
	case resp.StatusCode != http.StatusOK:
		k.err = fmt.Errorf("key set answered %s", resp.Status)
	default:
		k.body, k.header = body, resp.Header.Clone()
	}
	return k.replay(req)
}

// replay answers req with the last outcome; the caller holds k.mu.
func (k *keySetThrottle) replay(req *http.Request) (*http.Response, error) {
	if k.body == nil {
		return nil, k.err
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: k.header.Clone(), Body: io.NopCloser(bytes.NewReader(k.body)),
		ContentLength: int64(len(k.body)), Request: req,
	}, nil
}

// newKeySet returns go-oidc's remote key set for url, fetching through a
// keySetThrottle.
func newKeySet(base *http.Client, url string, every time.Duration, now func() time.Time) *keySet {
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	client := *base
	client.Transport = &keySetThrottle{next: next, every: every, now: now}
	// Key set fetches outlive the request that starts them, so they get a
	// context of their own; it only carries the HTTP client.
	ctx := oidc.ClientContext(context.Background(), &client)
	return &keySet{remote: oidc.NewRemoteKeySet(ctx, url)}
}

// keySet is go-oidc's remote key set, with one addition: it tells Verify
// when the keys could not be fetched, which go-oidc reports only as text.
// A token whose key could not be fetched is not known to be forged, so it
// is answered 503, not 401.
type keySet struct{ remote *oidc.RemoteKeySet }

type fetchFailureKey struct{}

type fetchFailure struct{ err error }

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	// The remote key set wraps (%w) exactly one kind of error: a failed
	// fetch of the key set. A signature that no key verifies is a plain one.
	if err != nil && errors.Unwrap(err) != nil {
		if f, ok := ctx.Value(fetchFailureKey{}).(*fetchFailure); ok {
			f.err = err
		}
	}
	return payload, err
}
