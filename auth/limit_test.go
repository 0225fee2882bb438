package auth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/auth"
)

func TestLimiter(t *testing.T) {
	clk := newClock()
	l, err := auth.NewLimiter(auth.LimiterConfig{Rate: 0.5, Burst: 2, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if ok, _ := l.Allow("alice"); !ok {
			t.Fatalf("request %d of a burst of 2 refused", i+1)
		}
	}
	ok, retry := l.Allow("alice")
	if ok || retry != 2*time.Second {
		t.Errorf("third request: ok=%v retry=%v, want refused, retry after 2s (one token per 2s)", ok, retry)
	}
	if ok, _ := l.Allow("bob"); !ok {
		t.Error("bob refused because alice spent her bucket")
	}
	clk.Advance(500 * time.Millisecond)
	if ok, retry := l.Allow("alice"); ok || retry != 2*time.Second {
		t.Errorf("1.5s before a token: ok=%v retry=%v, want refused, retry 2s (rounded up)", ok, retry)
	}
	clk.Advance(1500 * time.Millisecond)
	if ok, _ := l.Allow("alice"); !ok {
		t.Error("refused although a token refilled (refused requests must not spend tokens)")
	}
}

func TestLimiterRetryAtLeastOneSecond(t *testing.T) {
	clk := newClock()
	l, _ := auth.NewLimiter(auth.LimiterConfig{Rate: 100, Burst: 1, Now: clk.Now})
	l.Allow("fast")
	if ok, retry := l.Allow("fast"); ok || retry != time.Second {
		t.Errorf("ok=%v retry=%v, want refused with retry 1s (10ms rounded up)", ok, retry)
	}
}

func TestLimiterUnlimited(t *testing.T) {
	var none *auth.Limiter
	if ok, _ := none.Allow("x"); !ok {
		t.Error("a nil limiter refused")
	}
	l, err := auth.NewLimiter(auth.LimiterConfig{Rate: 0})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if ok, _ := l.Allow("x"); !ok {
			t.Fatal("rate 0 refused a request")
		}
	}
	if n := l.Tracked(); n != 0 {
		t.Errorf("an unlimited limiter remembers %d principals, want 0", n)
	}
}

func TestLimiterForgetsIdlePrincipals(t *testing.T) {
	clk := newClock()
	l, _ := auth.NewLimiter(auth.LimiterConfig{Rate: 10, Now: clk.Now}) // burst 10: refilled after 1s
	for i := range 500 {
		l.Allow(fmt.Sprintf("user-%d", i))
	}
	if n := l.Tracked(); n != 500 {
		t.Fatalf("tracked %d, want 500", n)
	}
	clk.Advance(time.Second)
	l.Allow("late")
	if n := l.Tracked(); n != 1 {
		t.Errorf("after every bucket refilled, tracked %d principals, want only the one just seen", n)
	}
	// A forgotten principal starts with a full bucket, as if remembered.
	for i := range 10 {
		if ok, _ := l.Allow("user-1"); !ok {
			t.Fatalf("request %d of a full burst refused", i+1)
		}
	}
}

func TestLimiterConfigValidate(t *testing.T) {
	for _, cfg := range []auth.LimiterConfig{{Rate: -1}, {Rate: 1, Burst: -1}} {
		if _, err := auth.NewLimiter(cfg); err == nil {
			t.Errorf("NewLimiter(%+v) accepted", cfg)
		}
	}
}
