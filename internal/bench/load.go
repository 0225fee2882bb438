package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// load is the result of running one operation n times.
type load struct {
	latencies []time.Duration
	elapsed   time.Duration
}

// runLoad calls op for i in 0..n-1 with inFlight calls at a time, timing
// each, and reports progress while it runs. The first error cancels the
// calls not yet started and is returned.
func runLoad(ctx context.Context, n, inFlight int, p *progress, what string, op func(ctx context.Context, i int) error) (load, error) {
	lat := make([]time.Duration, n)
	var next, done atomic.Int64
	stop := p.track(what, n, &done)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range min(inFlight, n) {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || gctx.Err() != nil {
					return nil
				}
				t0 := time.Now()
				if err := op(gctx, i); err != nil {
					return err
				}
				lat[i] = time.Since(t0)
				done.Add(1)
			}
		})
	}
	if err := g.Wait(); err != nil {
		return load{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := ctx.Err(); err != nil {
		return load{}, err
	}
	return load{latencies: lat, elapsed: time.Since(start)}, nil
}

// progress writes one line per phase and, every interval while a phase
// runs, how far it got, so that a long benchmark is seen to be alive.
type progress struct {
	w        io.Writer
	interval time.Duration
	mu       sync.Mutex
}

func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// track reports done out of total for what until the returned stop is called.
func (p *progress) track(what string, total int, done *atomic.Int64) (stop func()) {
	start := time.Now()
	p.printf("  %s: %d …", what, total)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		interval := p.interval
		if interval <= 0 {
			interval = 2 * time.Second
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				p.printf("  %s: %d/%d after %.1fs", what, done.Load(), total, time.Since(start).Seconds())
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		p.printf("  %s: %d/%d in %.1fs", what, done.Load(), total, time.Since(start).Seconds())
	}
}

// group runs the background parts of a fan-out (connectors, consumers, the
// naive design's signaller) until stop. A part that stops on its own fails
// the whole benchmark, since the measurement under way would otherwise wait
// for answers that never come.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	fail   func(error)
}

func newGroup(ctx context.Context, fail func(error)) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel, fail: fail}
}

// run runs fn in the background with a context that ends at stop.
func (g *group) run(name string, fn func(ctx context.Context) error) {
	g.wg.Go(func() {
		err := fn(g.ctx)
		if g.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("it returned early")
		}
		g.fail(fmt.Errorf("%s stopped: %w", name, err))
	})
}

// stop ends every part and waits for them.
func (g *group) stop() {
	g.cancel()
	g.wg.Wait()
}

// add appends another round's latencies and time.
func (l *load) add(o load) {
	l.latencies = append(l.latencies, o.latencies...)
	l.elapsed += o.elapsed
}

// share is round r's part of n operations split into rounds parts; the
// parts differ by at most one and add up to n.
func share(n, rounds, r int) int {
	q, rem := n/rounds, n%rounds
	if r < rem {
		return q + 1
	}
	return q
}

// Backoff bounds of retry.
const (
	retryMinDelay = 50 * time.Millisecond
	retryMaxDelay = 2 * time.Second
)

// retry calls op until it succeeds, fails with an error transient does not
// accept, or ctx ends. An overloaded stack refuses some calls; the
// benchmark waits them out, and counts the wait in the latency, rather
// than stop.
func retry(ctx context.Context, transient func(error) bool, op func(ctx context.Context) error) error {
	delay := retryMinDelay
	for {
		err := op(ctx)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMaxDelay)
	}
}
