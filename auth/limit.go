package auth

import (
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter bounds how fast each principal may call the API, so that one
// runaway script or compromised token cannot starve every other caller.
// Each Subject has its own token bucket; a bucket idle long enough to have
// refilled is forgotten, which changes nothing it would answer, so memory
// follows the number of recently active principals. A nil *Limiter, or one
// whose Rate is 0, allows everything.
type Limiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration // how long an unused bucket takes to refill
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// LimiterConfig is a Limiter's settings.
type LimiterConfig struct {
	// Rate is the requests per second each principal may make on average;
	// 0 means unlimited.
	Rate float64
	// Burst is how many requests a principal may make at once; zero means
	// one second's worth of Rate, and at least 1.
	Burst int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate checks the settings.
func (c LimiterConfig) Validate() error {
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return errors.New("rate limit: the rate must be a finite number of requests per second, 0 for unlimited")
	case c.Burst < 0:
		return errors.New("rate limit: the burst cannot be negative")
	}
	return nil
}

// NewLimiter returns a per-principal limiter.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	burst := cfg.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(cfg.Rate)))
	}
	l := &Limiter{limit: rate.Limit(cfg.Rate), burst: burst, now: cfg.Now, buckets: map[string]*bucket{}}
	if l.now == nil {
		l.now = time.Now
	}
	if cfg.Rate > 0 {
		l.idle = time.Duration(float64(burst) / cfg.Rate * float64(time.Second))
	}
	return l, nil
}

// Allow takes one request from subject's bucket. When the bucket is empty
// it answers false and how long until a request would be allowed, rounded
// up to whole seconds and at least one, for the Retry-After header.
func (l *Limiter) Allow(subject string) (ok bool, retryAfter time.Duration) {
	if l == nil || l.limit == 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[subject]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[subject] = b
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay == 0 {
		return true, 0
	}
	r.CancelAt(now)
	secs := max(1, int64(math.Ceil(delay.Seconds())))
	return false, time.Duration(secs) * time.Second
}

// sweep forgets the buckets that have been idle long enough to be full
// again, at most once per refill time so that Allow stays cheap.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < l.idle {
		return
	}
	for s, b := range l.buckets {
		if now.Sub(b.last) >= l.idle {
			delete(l.buckets, s)
		}
	}
	l.lastSweep = now
}
