package e2e_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/internal/testenv"
)

// webhookSecret is the endpoint's shared secret in these tests.
var webhookSecret = []byte(strings.Repeat("s", webhook.MinSecretBytes))

// slowVendor is an endpoint behind the webhook connector that accepts each
// command with 202. With a status URL, it answers its polls "still
// working" until poll doneAt, which answers erased; without (callback
// mode) it only remembers the command ids it accepted.
type slowVendor struct {
	srv    *httptest.Server
	posts  atomic.Int32
	polls  atomic.Int32
	doneAt int32

	mu       sync.Mutex
	commands []string
}

func newSlowVendor(t *testing.T, doneAt int32, statusURL bool) *slowVendor {
	t.Helper()
	v := &slowVendor{doneAt: doneAt}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/erase":
			v.posts.Add(1)
			var d webhook.Delivery
			if b, err := io.ReadAll(r.Body); err != nil || json.Unmarshal(b, &d) != nil {
				http.Error(w, "bad delivery", http.StatusBadRequest)
				return
			}
			v.mu.Lock()
			v.commands = append(v.commands, d.CommandID)
			v.mu.Unlock()
			if statusURL {
				w.Header().Set("Location", "/status/"+d.CommandID)
			}
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/status/"):
			if v.polls.Add(1) < v.doneAt {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			io.WriteString(w, `{"outcome":"erased","records":1}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *slowVendor) accepted() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.commands...)
}

// webhookConnector builds a webhook connector of system for v on store.
func webhookConnector(t *testing.T, s *stack, system string, v *slowVendor, store connectors.PendingStore, callbackSecretFile string) *webhook.Connector {
	t.Helper()
	cfg := webhook.Config{
		System: system, URL: v.srv.URL + "/erase", SecretEnv: "UNUSED_IN_TESTS",
		Poll:  webhook.PollConfig{Enabled: callbackSecretFile == "", Initial: 200 * time.Millisecond, Max: 400 * time.Millisecond},
		Store: store, Logger: s.Log.With("connector", system),
	}
	if callbackSecretFile != "" {
		cfg.Callback = &webhook.CallbackConfig{Listen: "127.0.0.1:0", SecretFile: callbackSecretFile}
	}
	conn, err := webhook.New(cfg, webhookSecret, nil)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	return conn
}

// postgresStore is a connector store in a database of its own, as a
// service keeps its connector's store apart from Lethe's.
func postgresStore(t *testing.T, s *stack) connectors.PendingStore {
	t.Helper()
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := connectors.NewPostgresDedup(s.ctx, db, "")
	if err != nil {
		t.Fatalf("NewPostgresDedup: %v", err)
	}
	return store.(connectors.PendingStore)
}

// awaitCount waits until n() reaches want.
func awaitCount(t *testing.T, what string, n func() int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for n() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d after a minute, want %d", what, n(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhookSlowVendorAcrossRestart is issue 15's acceptance: a vendor
// answers 202, then "done" on its third poll, and the connector restarts in
// between. The connector resumes the poll from its PostgreSQL store, the
// vendor is asked to erase once and polled three times, and the request
// completes erased. The stack is signed, so the confirmation written from
// the background counts only because it is signed like any other.
func TestWebhookSlowVendorAcrossRestart(t *testing.T) {
	s := newStack(t, stackOptions{Signed: true})
	s.putSystem(lethe.System{Name: "vendor", Identifiers: []string{"email"}, Owner: "e2e", Description: "a slow vendor behind the webhook connector"})
	v := newSlowVendor(t, 3, true)
	store := postgresStore(t, s)
	cfg := s.connectorConfig("vendor")
	cfg.Dedup = store
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 1}
	cfg.DeferredCheck = 50 * time.Millisecond

	stop := s.startConnector(cfg, webhookConnector(t, s, "vendor", v, store, ""))
	e := s.submit(map[string]string{"email": "slow-vendor@example.test"})
	awaitCount(t, "polls before the restart", v.polls.Load, 1)
	stop()
	if p := v.polls.Load(); p >= 3 {
		t.Fatalf("the vendor was polled %d times before the restart; the test needs the restart before the third", p)
	}

	// A new process: a new connector on the same store.
	s.startConnector(cfg, webhookConnector(t, s, "vendor", v, store, ""))
	done := s.await(e.ID, time.Minute)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("request %s, want completed: %s", done.Status, describe(done))
	}
	if p := systemByName(t, done, "vendor"); p.Status != lethe.SystemErased || p.Records != 1 {
		t.Errorf("vendor %s with %d records, want erased with 1", p.Status, p.Records)
	}
	if posts, polls := v.posts.Load(), v.polls.Load(); posts != 1 || polls != 3 {
		t.Errorf("the vendor got %d POSTs and %d polls, want exactly 1 and 3", posts, polls)
	}
}

// TestWebhookSignedCallback: a vendor that answers 202 without a status URL
// posts its final answer to the connector's callback server. A bad
// signature is refused with 401 and changes nothing; a good one completes
// the request; a repeat answers 200 and an unknown command 404.
func TestWebhookSignedCallback(t *testing.T) {
	s := newStack(t, stackOptions{Signed: true})
	s.putSystem(lethe.System{Name: "callback", Identifiers: []string{"email"}, Owner: "e2e", Description: "a vendor that calls back"})
	v := newSlowVendor(t, 0, false)
	store := postgresStore(t, s)
	callbackSecret := []byte(strings.Repeat("c", webhook.MinSecretBytes))
	secretFile := filepath.Join(t.TempDir(), "callback-secret")
	if err := os.WriteFile(secretFile, append(callbackSecret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := webhookConnector(t, s, "callback", v, store, secretFile)
	cb := httptest.NewServer(conn.CallbackHandler())
	defer cb.Close()
	cfg := s.connectorConfig("callback")
	cfg.Dedup = store
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 1}
	s.startConnector(cfg, conn)

	e := s.submit(map[string]string{"email": "calls-back@example.test"})
	awaitCount(t, "POSTs", v.posts.Load, 1)
	commandID := v.accepted()[0]
	answer := []byte(`{"outcome":"erased","records":2}`)
	post := func(id string, secret []byte) int {
		t.Helper()
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, cb.URL+"/callbacks/"+id, strings.NewReader(string(answer)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, time.Now(), answer))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}

	if got := post(commandID, []byte(strings.Repeat("x", webhook.MinSecretBytes))); got != http.StatusUnauthorized {
		t.Fatalf("callback with a bad signature = %d, want 401", got)
	}
	r := s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil)
	var still lethe.Erasure
	r.Decode(t, &still)
	if still.Status.Final() || systemByName(t, still, "callback").Status == lethe.SystemErased {
		t.Fatalf("after a badly signed callback the request is %s: %s", still.Status, describe(still))
	}

	if got := post(commandID, callbackSecret); got != http.StatusOK {
		t.Fatalf("callback with a good signature = %d, want 200", got)
	}
	done := s.await(e.ID, time.Minute)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("request %s, want completed: %s", done.Status, describe(done))
	}
	if p := systemByName(t, done, "callback"); p.Status != lethe.SystemErased || p.Records != 2 {
		t.Errorf("callback system %s with %d records, want erased with 2, the callback's answer", p.Status, p.Records)
	}
	if got := post(commandID, callbackSecret); got != http.StatusOK {
		t.Errorf("repeated callback = %d, want 200", got)
	}
	if got := post(fmt.Sprintf("%s-unknown", commandID), callbackSecret); got != http.StatusNotFound {
		t.Errorf("callback for an unknown command = %d, want 404", got)
	}
	if posts, polls := v.posts.Load(), v.polls.Load(); posts != 1 || polls != 0 {
		t.Errorf("the vendor got %d POSTs and %d polls, want 1 and none", posts, polls)
	}
}
