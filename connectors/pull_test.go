package connectors_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// pullLethe serves the two pull routes of one system from a queue of lease
// answers, and keeps the confirmations posted to it.
type pullLethe struct {
	t      *testing.T
	system string
	keyID  string
	secret []byte

	mu       sync.Mutex
	answers  []pullAnswer
	failPost int // how many POSTs still answer 503
	posts    int
	confs    []wire.Confirmation
	badPosts int  // POSTs whose signature did not verify
	unsigned bool // the connector has no credential: posts are not checked
	changed  chan struct{}
}

// pullAnswer is one lease answer: items (raw JSON) signed with secret, or
// unsigned when secret is nil.
type pullAnswer struct {
	items  []json.RawMessage
	secret []byte
}

func newPullLethe(t *testing.T, system string) (*pullLethe, *httptest.Server) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i + 1)
	}
	f := &pullLethe{t: t, system: system, keyID: "k_test", secret: secret, changed: make(chan struct{}, 100)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *pullLethe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/systems/"+f.system+"/commands":
		f.mu.Lock()
		var a pullAnswer
		if len(f.answers) > 0 {
			a, f.answers = f.answers[0], f.answers[1:]
		}
		f.mu.Unlock()
		if a.items == nil {
			time.Sleep(20 * time.Millisecond) // a short long-poll
			a.items = []json.RawMessage{}
		}
		body, _ := json.Marshal(map[string]any{"items": a.items})
		if a.secret != nil {
			w.Header().Set(wire.HeaderKeyID, f.keyID)
			w.Header().Set(wire.HeaderSignature, wire.Sign(a.secret, body))
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/systems/"+f.system+"/confirmations":
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		defer func() { f.changed <- struct{}{} }()
		f.posts++
		if f.failPost > 0 {
			f.failPost--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !f.unsigned && (r.Header.Get(wire.HeaderKeyID) != f.keyID || !wire.Verify(f.secret, body, r.Header.Get(wire.HeaderSignature))) {
			f.badPosts++
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var confs []wire.Confirmation
		if err := json.Unmarshal(body, &confs); err != nil {
			f.t.Errorf("POST body is not an array of confirmations: %v", err)
		}
		f.confs = append(f.confs, confs...)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"received":1}`))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *pullLethe) offer(secret []byte, items ...any) {
	a := pullAnswer{secret: secret, items: []json.RawMessage{}}
	for _, it := range items {
		b, _ := json.Marshal(it)
		if s, ok := it.(string); ok {
			b = []byte(s)
		}
		a.items = append(a.items, b)
	}
	f.mu.Lock()
	f.answers = append(f.answers, a)
	f.mu.Unlock()
}

// confirmed waits for a confirmation of commandID.
func (f *pullLethe) confirmed(t *testing.T, commandID string) wire.Confirmation {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		for _, c := range f.confs {
			if c.CommandID == commandID {
				f.mu.Unlock()
				return c
			}
		}
		f.mu.Unlock()
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("no confirmation of command %s", commandID)
		}
	}
}

func pullCommand(system string) wire.Command {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return wire.Command{Schema: wire.SchemaCommand, CommandID: uuid.NewString(), RequestID: uuid.NewString(),
		System: system, Attempt: 1, Identifiers: []wire.Identifier{{Type: "user_id", Value: "u-" + uuid.NewString()}},
		IssuedAt: now, ConfirmBy: now.Add(time.Hour)}
}

// startPull runs RunPull against srv until the test ends, counting the
// handler's calls by command id.
func startPull(t *testing.T, srv *httptest.Server, f *pullLethe, signed bool) (calls func(string) int, stop func() error) {
	t.Helper()
	var mu sync.Mutex
	n := make(map[string]int)
	h := connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		mu.Lock()
		n[req.CommandID]++
		mu.Unlock()
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	cfg := connectors.PullConfig{URL: srv.URL, System: f.system, Token: "tok", Wait: time.Second}
	if signed {
		cfg.KeyID, cfg.Secret = f.keyID, hex.EncodeToString(f.secret)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- connectors.RunPull(ctx, cfg, h) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("RunPull did not return within 10s of its context's end")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return func(id string) int { mu.Lock(); defer mu.Unlock(); return n[id] }, stop
}

// TestRunPullRefusesABadlySignedAnswer: with a credential, an unsigned
// answer and one signed with another secret are refused whole, their
// commands never handled nor confirmed; a good answer after them is
// handled and its confirmation posted signed.
func TestRunPullRefusesABadlySignedAnswer(t *testing.T) {
	f, srv := newPullLethe(t, "orders")
	unsigned, forged, good := pullCommand("orders"), pullCommand("orders"), pullCommand("orders")
	other := make([]byte, 32)
	f.offer(nil, unsigned)
	f.offer(other, forged)
	f.offer(f.secret, good)
	calls, stop := startPull(t, srv, f, true)
	conf := f.confirmed(t, good.CommandID)
	if conf.Outcome != wire.OutcomeErased || calls(good.CommandID) != 1 {
		t.Fatalf("good command: outcome %s, %d calls; want erased, 1", conf.Outcome, calls(good.CommandID))
	}
	if err := stop(); err != nil {
		t.Fatalf("RunPull = %v", err)
	}
	for _, c := range []wire.Command{unsigned, forged} {
		if calls(c.CommandID) != 0 {
			t.Errorf("a badly signed answer's command was handled %d times", calls(c.CommandID))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.confs) != 1 || f.badPosts != 0 {
		t.Errorf("confirmations %d (bad signatures %d), want only the good command's, signed", len(f.confs), f.badPosts)
	}
}

// TestRunPullRetriesAFailedPost: a POST answered 503 is retried with the
// same confirmation until Lethe accepts it, and the handler is not called
// again for it.
func TestRunPullRetriesAFailedPost(t *testing.T) {
	f, srv := newPullLethe(t, "orders")
	f.failPost = 2
	cmd := pullCommand("orders")
	f.offer(f.secret, cmd)
	calls, _ := startPull(t, srv, f, true)
	f.confirmed(t, cmd.CommandID)
	f.mu.Lock()
	posts := f.posts
	f.mu.Unlock()
	if posts != 3 || calls(cmd.CommandID) != 1 {
		t.Fatalf("%d POSTs and %d handler calls; want 3 (two refused) and 1", posts, calls(cmd.CommandID))
	}
}

// TestRunPullSkipsAnInvalidItem: an item that is not a valid command is not
// acted on; the answer's other items and the next lease are.
func TestRunPullSkipsAnInvalidItem(t *testing.T) {
	f, srv := newPullLethe(t, "orders")
	bad := pullCommand("orders")
	bad.Identifiers = nil // breaks the contract
	with, next := pullCommand("orders"), pullCommand("orders")
	f.offer(nil, `{"schema":"erasure.command.v1","command_id":1}`, bad, with)
	f.offer(nil, next)
	f.unsigned = true
	calls, _ := startPull(t, srv, f, false)
	f.confirmed(t, next.CommandID)
	f.confirmed(t, with.CommandID)
	if calls(bad.CommandID) != 0 {
		t.Fatalf("an invalid item was handled")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.confs {
		if c.CommandID == bad.CommandID {
			t.Fatal("an invalid item was confirmed")
		}
	}
}

// TestRunPullRefusesABadConfig names the missing setting.
func TestRunPullRefusesABadConfig(t *testing.T) {
	t.Setenv(connectors.EnvAPIURL, "")
	t.Setenv(connectors.EnvToken, "")
	h := connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{}, nil
	})
	err := connectors.RunPull(context.Background(), connectors.PullConfig{System: "orders"}, h)
	if err == nil || !strings.Contains(err.Error(), connectors.EnvAPIURL) {
		t.Fatalf("RunPull without a URL = %v, want an error naming $%s", err, connectors.EnvAPIURL)
	}
	t.Setenv(connectors.EnvAPIURL, "http://127.0.0.1:1")
	err = connectors.RunPull(context.Background(), connectors.PullConfig{System: "orders"}, h)
	if err == nil || !strings.Contains(err.Error(), connectors.EnvToken) {
		t.Fatalf("RunPull without a token = %v, want an error naming $%s", err, connectors.EnvToken)
	}
}
