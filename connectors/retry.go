package connectors

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how Run retries a handler that returned an error, before
// it gives up and confirms a retryable failure. Most handler errors are
// transient (a deadlock, a failover, a timeout) and pass within a second or
// two, so retrying in the process answers sooner than Lethe's re-dispatch,
// which waits hours. The zero value is the default policy.
type RetryPolicy struct {
	// MaxAttempts is how many times the handler is called for one delivery
	// of a command, the first call included. Zero means
	// DefaultRetryAttempts; 1 disables retrying.
	MaxAttempts int
	// Initial bounds the wait before the second call; each later wait's
	// bound doubles. Zero means DefaultRetryInitial.
	Initial time.Duration
	// Max caps the bound of every wait. Zero means DefaultRetryMax.
	Max time.Duration
}

// Defaults of RetryPolicy.
const (
	DefaultRetryAttempts = 3
	DefaultRetryInitial  = 200 * time.Millisecond
	DefaultRetryMax      = 5 * time.Second
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultRetryAttempts
	}
	if p.Initial == 0 {
		p.Initial = DefaultRetryInitial
	}
	if p.Max == 0 {
		p.Max = DefaultRetryMax
	}
	return p
}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 0:
		return errors.New("connectors: config: retry max attempts is negative")
	case p.Initial < 0:
		return errors.New("connectors: config: retry initial delay is negative")
	case p.Max < 0:
		return errors.New("connectors: config: retry max delay is negative")
	}
	return nil
}

// delay is the wait after the given failed call (1 for the first): a random
// duration between zero and the call's bound, Initial doubled per earlier
// failure and capped at Max. The "full jitter" spreads the retries of
// replicas that failed together (a database failover fails them all at
// once), so they do not return together and fail again.
func (p RetryPolicy) delay(failed int) time.Duration {
	bound := p.Initial
	for i := 1; i < failed && bound < p.Max; i++ {
		bound *= 2
	}
	bound = min(bound, p.Max)
	if bound <= 0 {
		return 0
	}
	return rand.N(bound + 1)
}

// sleep waits d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Permanent marks err as an error that retrying cannot fix (a constraint
// the data breaks, a row locked by a legal hold the handler does not know),
// so that Run neither retries the handler nor asks Lethe to dispatch again:
// the command is confirmed failed, not retryable, at once. A handler returns
// Permanent(err) instead of err; errors.Is and errors.As see through it.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}
