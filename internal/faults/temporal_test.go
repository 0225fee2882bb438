package faults_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/devstack"
)

// TestTemporalRestartedSameFile stops the embedded Temporal server (SQLite
// file) while requests wait for confirmations, lets the confirmations pile up
// on Kafka while the relay cannot signal, and starts the server again on the
// same folder and port. The clients of the API, the worker and the relay
// redial on their own; every request completes exactly once. While Temporal
// is down the API still answers reads from the ledger.
func TestTemporalRestartedSameFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ts := startTemporal(t, devstack.TemporalConfig{Address: addr, DataDir: t.TempDir()})
	s := newStack(t, stackOptions{Temporal: ts, Worker: true, Relay: true})
	ctx, cancel := s.deadline()
	defer cancel()
	quick, held := newService("quick", false), newService("held", true)
	s.putSystem(quick)
	s.putSystem(held)
	const n = 4
	var reqs []lethe.Erasure
	for i := range n {
		reqs = append(reqs, s.submit(subject("restart", i)))
	}
	eventually(t, ctx, "every request waits for its held system only", func() bool {
		for _, e := range reqs {
			if !s.systemIs(ctx, e.ID, quick.name, lethe.SystemErased) {
				return false
			}
		}
		return s.published(held.name) == n
	})

	ts.Stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("Temporal still accepts connections at %s after its stop", addr)
	}
	calls := s.SignalCalls.Load()
	s.release(held)
	eventually(t, ctx, "the relay tried to signal the held confirmations to the stopped server", func() bool {
		return s.SignalCalls.Load() > calls
	})
	if got := s.countFinal(ctx, ids(reqs)); got != 0 {
		t.Fatalf("%d requests finished while Temporal was down", got)
	}
	r := s.do(http.MethodGet, "/v1/erasures/"+reqs[0].ID, nil)
	if r.Status != http.StatusOK {
		t.Errorf("GET a request while Temporal is down = %d %s, want 200 from the ledger", r.Status, r.Body)
	}

	ts.Start()
	if ts.Address() != addr {
		t.Fatalf("Temporal restarted at %s, want %s", ts.Address(), addr)
	}
	s.awaitFinal(ctx, ids(reqs)...)
	s.verify(ctx, expectCompleted(reqs, quick.name, held.name)...)
	// The API's client redialed too: a new request goes all the way through.
	e := s.submit(subject("restart", n))
	s.awaitFinal(ctx, e.ID)
	s.verify(ctx, expectCompleted([]lethe.Erasure{e}, quick.name, held.name)...)
}
