package connectors

import (
	"testing"
	"time"
)

func TestRetryPolicyDelay(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 5, Initial: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		failed int
		bound  time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{60, time.Second}, // far past the cap, without overflowing
	}
	for _, tt := range tests {
		seen := make(map[time.Duration]bool)
		var largest time.Duration
		for range 1000 {
			d := p.delay(tt.failed)
			if d < 0 || d > tt.bound {
				t.Fatalf("delay after %d failures = %v, want within [0, %v]", tt.failed, d, tt.bound)
			}
			seen[d] = true
			largest = max(largest, d)
		}
		// Full jitter: the waits spread over the whole range rather than
		// sitting at the bound.
		if len(seen) < 100 || largest < tt.bound/2 {
			t.Errorf("delays after %d failures: %d distinct values, largest %v; want them spread up to %v", tt.failed, len(seen), largest, tt.bound)
		}
	}
}

func TestRetryPolicyDefaults(t *testing.T) {
	got := RetryPolicy{}.withDefaults()
	want := RetryPolicy{MaxAttempts: DefaultRetryAttempts, Initial: DefaultRetryInitial, Max: DefaultRetryMax}
	if got != want {
		t.Errorf("zero policy with defaults = %+v, want %+v", got, want)
	}
	if got := (RetryPolicy{MaxAttempts: 1}).withDefaults(); got.MaxAttempts != 1 {
		t.Errorf("MaxAttempts 1 became %d; it must disable retries", got.MaxAttempts)
	}
	for _, p := range []RetryPolicy{{MaxAttempts: -1}, {Initial: -1}, {Max: -1}} {
		if err := p.validate(); err == nil {
			t.Errorf("%+v validates, want an error", p)
		}
	}
}
