package e2e_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
)

// arrivals records when each system's connector received its commands.
type arrivals struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (a *arrivals) handler(system string, next connectors.Handler) connectors.Handler {
	return connectors.HandlerFunc(func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		a.mu.Lock()
		a.at[system] = append(a.at[system], time.Now())
		a.mu.Unlock()
		return next.Erase(ctx, req)
	})
}

func (a *arrivals) of(system string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.at[system])
}

// TestOrderedChain runs the chain a ← b ← c (c is erased after b, b after
// a) on the real stack. The plan preview names the waves; a fails, which
// holds b and c, pending, and ends the request failed; a retry of a lets
// the chain proceed, strictly in order: each system receives its command
// only after the one before it confirmed.
func TestOrderedChain(t *testing.T) {
	s := newStack(t, stackOptions{Plaintext: true})
	s.putSystem(lethe.System{Name: "ord-a", Identifiers: []string{"email"}})
	s.putSystem(lethe.System{Name: "ord-b", Identifiers: []string{"email"}, After: []string{"ord-a"}})
	s.putSystem(lethe.System{Name: "ord-c", Identifiers: []string{"email", "user_id"}, After: []string{"ord-b"}})
	// ord-free waits for no one; ord-ghost waits for a system no request
	// of this subject targets.
	s.putSystem(lethe.System{Name: "ord-free", Identifiers: []string{"email"}})
	s.putSystem(lethe.System{Name: "ord-other", Identifiers: []string{"phone"}})
	s.putSystem(lethe.System{Name: "ord-ghost", Identifiers: []string{"user_id"}, After: []string{"ord-other"}})

	r := s.do(http.MethodPut, "/v1/systems/ord-a", map[string]any{"identifiers": []string{"email"}, "after": []string{"ord-c"}})
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "dependency_cycle") || !strings.Contains(string(r.Body), "ord-a → ord-c → ord-b → ord-a") {
		t.Fatalf("closing the cycle = %d %s, want 409 dependency_cycle naming it", r.Status, r.Body)
	}
	r = s.do(http.MethodPut, "/v1/systems/ord-d", map[string]any{"identifiers": []string{"email"}, "after": []string{"ord-nowhere"}})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "unknown_dependency") {
		t.Fatalf("an unknown dependency = %d %s, want 400 unknown_dependency", r.Status, r.Body)
	}

	subject := map[string]string{"email": "chain@example.test", "user_id": "u-chain-7"}
	r = s.do(http.MethodPost, "/v1/erasures/plan", map[string]any{"subject": subject})
	if r.Status != http.StatusOK {
		t.Fatalf("plan = %d %s", r.Status, r.Body)
	}
	var plan lethe.ErasurePlan
	r.Decode(t, &plan)
	wantWaves := [][]string{{"ord-a", "ord-free", "ord-ghost"}, {"ord-b"}, {"ord-c"}}
	if !slices.EqualFunc(plan.Waves, wantWaves, slices.Equal) {
		t.Fatalf("plan waves = %v, want %v", plan.Waves, wantWaves)
	}

	arr := &arrivals{at: map[string][]time.Time{}}
	broken := &mending{}
	s.runConnector("ord-a", arr.handler("ord-a", broken))
	for _, name := range []string{"ord-b", "ord-c", "ord-free", "ord-ghost"} {
		s.runConnector(name, arr.handler(name, erase()))
	}
	e := s.submit(subject)
	failed := s.await(e.ID, time.Minute)
	if failed.Status != lethe.RequestFailed {
		t.Fatalf("with ord-a failed the request is %s, want failed", failed.Status)
	}
	for _, name := range []string{"ord-b", "ord-c"} {
		p := systemByName(t, failed, name)
		if p.Status != lethe.SystemPending || !strings.Contains(p.Detail, "held up until a retry") {
			t.Errorf("%s while ord-a failed: %s %q, want pending, held up until a retry", name, p.Status, p.Detail)
		}
		if n := len(arr.of(name)); n != 0 {
			t.Errorf("%s received %d commands while ord-a failed, want none", name, n)
		}
	}
	if p := systemByName(t, failed, "ord-free"); p.Status != lethe.SystemErased {
		t.Errorf("ord-free, which waits for no one, is %s, want erased", p.Status)
	}

	broken.mend()
	s.retry(t, e.ID)
	done := s.await(e.ID, time.Minute)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("after the retry the request is %s, want completed: %+v", done.Status, done.Systems)
	}
	confirmed := func(name string) time.Time {
		p := systemByName(t, done, name)
		if p.ConfirmedAt == nil {
			t.Fatalf("%s has no confirmation time: %+v", name, p)
		}
		return *p.ConfirmedAt
	}
	for _, step := range [][2]string{{"ord-a", "ord-b"}, {"ord-b", "ord-c"}} {
		got := arr.of(step[1])
		if len(got) != 1 {
			t.Fatalf("%s received %d commands, want 1", step[1], len(got))
		}
		if before := confirmed(step[0]); !got[0].After(before) {
			t.Errorf("%s received its command at %s, not after %s confirmed at %s",
				step[1], got[0].Format(time.RFC3339Nano), step[0], before.Format(time.RFC3339Nano))
		}
	}

	// What the request dispatched is what the plan previewed: the same
	// systems, and no system before one of an earlier wave confirmed.
	var dispatched []string
	for _, p := range done.Systems {
		dispatched = append(dispatched, p.Name)
	}
	var planned []string
	for _, w := range plan.Waves {
		planned = append(planned, w...)
	}
	slices.Sort(dispatched)
	slices.Sort(planned)
	if !slices.Equal(dispatched, planned) {
		t.Errorf("the request reached %v, the plan previewed %v", dispatched, planned)
	}
	for _, p := range plan.Systems {
		for _, dep := range p.After {
			if first := arr.of(p.Name); len(first) == 0 || !first[0].After(confirmed(dep)) {
				t.Errorf("%s (wave %d) received its command before %s, which it waits for, confirmed", p.Name, p.Wave, dep)
			}
		}
	}
	s.assertNoValue(t, "chain@example.test", "u-chain-7")
}

func planSystem(p lethe.ErasurePlan, name string) lethe.PlannedSystem {
	for _, s := range p.Systems {
		if s.Name == name {
			return s
		}
	}
	return lethe.PlannedSystem{}
}
