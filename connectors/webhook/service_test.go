package webhook_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/wire"
)

// testSecret is the shared secret of the tests' connectors and services.
var testSecret = []byte("a-test-secret-of-at-least-32-bytes!!")

// service plays a team's erasure endpoint written against the protocol: an
// in-memory store guarded by Verifier.Middleware, idempotent by command id.
type service struct {
	v *webhook.Verifier

	mu sync.Mutex
	// records counts what is held under each identifier.
	records map[wire.Identifier]int64
	// derived are the further identifiers the service knows for one.
	derived map[wire.Identifier][]wire.Identifier
	// answers records the answer to every command, for repeats.
	answers map[string]webhook.Answer
	// erasures counts commands that deleted something.
	erasures map[string]int
	// problems collects what the service found wrong with a request.
	problems []string
	// ignoreDryRun breaks the service on purpose: it erases on a dry run.
	ignoreDryRun bool
}

func newService(t *testing.T) (*service, *httptest.Server) {
	t.Helper()
	s := &service{
		v:        &webhook.Verifier{Secret: testSecret},
		records:  make(map[wire.Identifier]int64),
		derived:  make(map[wire.Identifier][]wire.Identifier),
		answers:  make(map[string]webhook.Answer),
		erasures: make(map[string]int),
	}
	srv := httptest.NewServer(s.v.Middleware(http.HandlerFunc(s.serve)))
	t.Cleanup(srv.Close)
	return s, srv
}

// seed stores n records under each of ids, which know derived.
func (s *service) seed(ids []wire.Identifier, derived []wire.Identifier, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.records[id] += n
		s.derived[id] = append(s.derived[id], derived...)
	}
}

// remaining counts what is still held under any of ids.
func (s *service) remaining(ids []wire.Identifier) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, id := range ids {
		n += s.records[id]
	}
	return n
}

func (s *service) erasuresOf(commandID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.erasures[commandID]
}

func (s *service) problemsSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

func (s *service) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var d webhook.Delivery
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		s.problem("undecodable delivery")
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if r.Header.Get(webhook.HeaderIdempotency) != d.CommandID || r.Header.Get(webhook.HeaderCommandID) != d.CommandID {
		s.problem("idempotency headers do not carry the command id")
	}
	if r.Header.Get("Content-Type") != "application/json" {
		s.problem("content type is not application/json")
	}
	a := s.erase(d)
	w.Header().Set("Content-Type", "application/json")
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(a)
	w.Write(b.Bytes())
}

func (s *service) problem(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, p)
}

func (s *service) erase(d webhook.Delivery) webhook.Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.answers[d.CommandID]; ok {
		return a
	}
	var n int64
	var derived []wire.Identifier
	for _, id := range d.Identifiers {
		n += s.records[id]
		if s.records[id] > 0 {
			derived = append(derived, s.derived[id]...)
		}
	}
	a := webhook.Answer{Outcome: wire.OutcomeNotFound}
	if n > 0 {
		a = webhook.Answer{Outcome: wire.OutcomeErased, Records: n, DerivedIdentifiers: dedupe(derived)}
		if !d.DryRun || s.ignoreDryRun {
			for _, id := range d.Identifiers {
				delete(s.records, id)
			}
			s.erasures[d.CommandID]++
		}
	}
	s.answers[d.CommandID] = a
	return a
}

func dedupe(ids []wire.Identifier) []wire.Identifier {
	seen := make(map[wire.Identifier]bool)
	var out []wire.Identifier
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
