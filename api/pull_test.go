package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// pullStore adds a pull queue to the fake store; it records what reaches
// it, so that a test can tell a refused call changed nothing.
type pullStore struct {
	*fakeStore
	mu       sync.Mutex
	queue    []registry.PullCommand
	finished []registry.PullKey
	audits   []lethe.AuditEvent
}

func (s *pullStore) LeasePull(ctx context.Context, system string, limit int, now time.Time, lease time.Duration,
	fill func(ctx context.Context, due []registry.PullCommand) ([]string, error)) ([]registry.PullCommand, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []registry.PullCommand
	for _, c := range s.queue {
		if c.System == system && len(due) < limit {
			due = append(due, c)
		}
	}
	if len(due) == 0 {
		return nil, nil
	}
	if _, err := fill(ctx, due); err != nil {
		return nil, err
	}
	s.queue = nil
	return due, nil
}

func (s *pullStore) FinishPull(ctx context.Context, keys []registry.PullKey) (map[registry.PullKey]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = append(s.finished, keys...)
	return map[registry.PullKey]bool{}, nil
}

func (s *pullStore) SystemCredentials(ctx context.Context, systems []string, at time.Time) (map[string][]string, error) {
	return map[string][]string{}, nil
}

func (s *pullStore) ErasureRecorded(ctx context.Context, id string) (bool, error) { return true, nil }

func (s *pullStore) AppendAudit(ctx context.Context, events []lethe.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audits = append(s.audits, events...)
	return nil
}

// pullEngine adds the open-command query and signals to the fake engine.
type pullEngine struct {
	*fakeEngine
	mu      sync.Mutex
	signals []any
}

func (e *pullEngine) OpenCommand(ctx context.Context, requestID, commandID string) (wire.Command, bool, error) {
	return wire.Command{Schema: wire.SchemaCommand, CommandID: commandID, RequestID: requestID, System: "pulled",
		Attempt: 1, Identifiers: []wire.Identifier{{Type: "user_id", Value: "u-1"}},
		IssuedAt: testNow, ConfirmBy: testNow.Add(time.Hour)}, true, nil
}

func (e *pullEngine) SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.signals = append(e.signals, arg)
	return nil
}

const (
	pullRequestID = "6f1c2b9e-8d1a-4c3e-9f00-0123456789ab"
	pullCommandID = "0b5c2b9e-8d1a-4c3e-9f00-0123456789ab"
)

func newPullHarness(t *testing.T) (*harness, *pullStore, *pullEngine) {
	t.Helper()
	var ps *pullStore
	var pe *pullEngine
	h := newHarnessWith(t, func(c *api.Config) {
		ps = &pullStore{fakeStore: c.Store.(*fakeStore)}
		pe = &pullEngine{fakeEngine: c.Engine.(*fakeEngine)}
		c.Store, c.Engine = ps, pe
	})
	if r := h.putSystem(t, "pulled", `{"identifiers": ["user_id"], "mode": "pull"}`); r.status != http.StatusCreated {
		t.Fatalf("PUT pull system = %s", describe(r))
	}
	if r := h.putSystem(t, "pushed", `{"identifiers": ["user_id"]}`); r.status != http.StatusCreated {
		t.Fatalf("PUT kafka system = %s", describe(r))
	}
	return h, ps, pe
}

func pullConfirmation(system string) string {
	b, _ := json.Marshal(wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: pullCommandID,
		RequestID: pullRequestID, System: system, Outcome: wire.OutcomeErased, ConfirmedAt: testNow})
	return string(b)
}

// TestPutSystemMode checks the mode a system is registered with.
func TestPutSystemMode(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct{ body, want, code string }{
		{`{"identifiers": ["user_id"]}`, "kafka", ""},
		{`{"identifiers": ["user_id"], "mode": "pull"}`, "pull", ""},
		{`{"identifiers": ["user_id"], "mode": "kafka"}`, "kafka", ""},
		{`{"identifiers": ["user_id"], "mode": "PULL"}`, "", "invalid_mode"},
		{`{"identifiers": ["user_id"], "mode": "http"}`, "", "invalid_mode"},
		{`{"identifiers": ["user_id"], "mode": "pull", "batch": true}`, "", "invalid_mode"},
	} {
		r := h.putSystem(t, "moded", c.body)
		if c.code != "" {
			if r.status != http.StatusBadRequest || r.errorCode(t) != c.code {
				t.Errorf("PUT %s = %s, want 400 %s", c.body, describe(r), c.code)
			}
			continue
		}
		var sys lethe.System
		r.decode(t, &sys)
		if r.status/100 != 2 || string(sys.Mode) != c.want {
			t.Errorf("PUT %s = %d mode %q, want %q", c.body, r.status, sys.Mode, c.want)
		}
		var got lethe.System
		h.do(t, req{method: "GET", path: "/v1/systems/moded"}).decode(t, &got)
		if string(got.Mode) != c.want {
			t.Errorf("GET after PUT %s shows mode %q, want %q", c.body, got.Mode, c.want)
		}
	}
}

// TestLeaseCommandsBadInput checks the bounds of wait, limit and lease,
// and that nothing is leased by a refused call.
func TestLeaseCommandsBadInput(t *testing.T) {
	h, ps, _ := newPullHarness(t)
	ps.queue = []registry.PullCommand{{CommandID: pullCommandID, RequestID: pullRequestID, System: "pulled", Attempt: 1}}
	for _, c := range []struct{ query, code string }{
		{"wait=61s", "invalid_wait"},
		{"wait=-1s", "invalid_wait"},
		{"wait=soon", "invalid_wait"},
		{"wait=1s&wait=2s", "invalid_wait"},
		{"limit=0", "invalid_limit"},
		{"limit=501", "invalid_limit"},
		{"limit=+5", "invalid_limit"},
		{"limit=ten", "invalid_limit"},
		{"lease=1s", "invalid_lease"},
		{"lease=2h", "invalid_lease"},
	} {
		r := h.do(t, req{method: "GET", path: "/v1/systems/pulled/commands?" + c.query})
		if r.status != http.StatusBadRequest || r.errorCode(t) != c.code {
			t.Errorf("GET commands?%s = %s, want 400 %s", c.query, describe(r), c.code)
		}
	}
	if len(ps.queue) != 1 {
		t.Fatalf("a refused call leased the queue")
	}
	if r := h.do(t, req{method: "GET", path: "/v1/systems/pushed/commands?wait=0s"}); r.status != http.StatusConflict || r.errorCode(t) != "not_pull_mode" {
		t.Errorf("GET commands of a kafka system = %s, want 409 not_pull_mode", describe(r))
	}
	if r := h.do(t, req{method: "GET", path: "/v1/systems/ghost/commands?wait=0s"}); r.status != http.StatusNotFound {
		t.Errorf("GET commands of an unknown system = %s, want 404", describe(r))
	}
	r := h.do(t, req{method: "GET", path: "/v1/systems/pulled/commands?wait=0s&limit=10"})
	var list struct{ Items []wire.Command }
	r.decode(t, &list)
	if r.status != http.StatusOK || len(list.Items) != 1 || list.Items[0].CommandID != pullCommandID {
		t.Errorf("GET commands = %s, want the queued command", describe(r))
	}
}

// TestPostConfirmationsBadInput checks that a malformed body, another
// system in the body or an array mixing good and bad items answers 400
// and signals nothing.
func TestPostConfirmationsBadInput(t *testing.T) {
	h, ps, pe := newPullHarness(t)
	good := pullConfirmation("pulled")
	for _, c := range []struct{ name, body, code string }{
		{"not json", `{"schema":`, "malformed_confirmation"},
		{"empty array", `[]`, "no_confirmations"},
		{"array of garbage", `[1, 2`, "invalid_json"},
		{"missing fields", `{"schema": "erasure.confirmation.v1"}`, "malformed_confirmation"},
		{"another system", pullConfirmation("pushed"), "system_mismatch"},
		{"array mixing good and another system", "[" + good + "," + pullConfirmation("pushed") + "]", "system_mismatch"},
		{"array mixing good and malformed", "[" + good + `, {"outcome": "erased"}]`, "malformed_confirmation"},
		{"too many", "[" + strings.Repeat(good+",", api.MaxPullConfirmations) + good + "]", "too_many_confirmations"},
	} {
		r := h.do(t, req{method: "POST", path: "/v1/systems/pulled/confirmations", body: c.body})
		if r.status != http.StatusBadRequest || r.errorCode(t) != c.code {
			t.Errorf("%s: POST = %s, want 400 %s", c.name, describe(r), c.code)
		}
	}
	if len(pe.signals) != 0 || len(ps.finished) != 0 {
		t.Fatalf("refused bodies signaled %d times and finished %d commands", len(pe.signals), len(ps.finished))
	}
	if r := h.do(t, req{method: "POST", path: "/v1/systems/pulled/confirmations", body: good, ctype: "text/plain"}); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST = %s, want 415", describe(r))
	}
	r := h.do(t, req{method: "POST", path: "/v1/systems/pulled/confirmations", body: "[" + good + "," + good + "]"})
	if r.status != http.StatusAccepted || len(pe.signals) != 1 || len(ps.finished) != 2 {
		t.Fatalf("good array = %s, %d signals, %d finished; want 202, one signal, both finished", describe(r), len(pe.signals), len(ps.finished))
	}
}
