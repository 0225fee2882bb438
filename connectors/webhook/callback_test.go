package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/wire"
)

var callbackSecret = []byte(strings.Repeat("k", webhook.MinSecretBytes))

func callbackConfig(t *testing.T, url string, secret []byte) webhook.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callback-secret")
	if err := os.WriteFile(path, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(url, io.Discard)
	cfg.Callback = &webhook.CallbackConfig{Listen: "127.0.0.1:0", SecretFile: path}
	return cfg
}

func TestCallbackSecretFile(t *testing.T) {
	if _, err := webhook.New(callbackConfig(t, "https://crm.example/erase", []byte("short")), testSecret, nil); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("New with a short callback secret = %v, want an error naming the minimum", err)
	}
	cfg := callbackConfig(t, "https://crm.example/erase", callbackSecret)
	cfg.Callback.SecretFile = filepath.Join(t.TempDir(), "absent")
	if _, err := webhook.New(cfg, testSecret, nil); err == nil || !strings.Contains(err.Error(), "callback.secret_file") {
		t.Errorf("New with a missing callback secret file = %v, want an error naming callback.secret_file", err)
	}
}

// finisher records the results the callback server finishes, as
// connectors.Run's FinishFunc would confirm them.
type finisher struct {
	mu       sync.Mutex
	finished map[string]connectors.Result
	waiting  map[string]bool
}

func (f *finisher) finish(_ context.Context, commandID string, res connectors.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, done := f.finished[commandID]; done {
		return nil
	}
	if !f.waiting[commandID] {
		return connectors.ErrNotDeferred
	}
	f.finished[commandID] = res
	return nil
}

// TestCallbackHandler: only a callback signed with the callback secret
// reaches the connector, mapped as a poll's final answer; a bad signature
// is 401, an invalid answer 400, an unknown command 404, a repeat 200.
func TestCallbackHandler(t *testing.T) {
	conn := newConnector(t, callbackConfig(t, "https://crm.example/erase", callbackSecret))
	srv := httptest.NewServer(conn.CallbackHandler())
	defer srv.Close()
	post := func(id, body string, secret []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/callbacks/"+id, strings.NewReader(body))
		if secret != nil {
			req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, time.Now(), []byte(body)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error.Code
	}
	good := `{"outcome":"retained","detail":"tax law, 10 years"}`
	if status, code := post("cmd-1", good, callbackSecret); status != http.StatusServiceUnavailable || code != webhook.CodeNotReady {
		t.Errorf("before Run attached: %d %s, want 503 not_ready", status, code)
	}
	f := &finisher{finished: map[string]connectors.Result{}, waiting: map[string]bool{"cmd-1": true}}
	conn.AttachFinish(f.finish)

	cases := []struct {
		name, id, body string
		secret         []byte
		status         int
		code           string
	}{
		{"unsigned", "cmd-1", good, nil, http.StatusUnauthorized, webhook.CodeMissingSignature},
		{"the endpoint's secret", "cmd-1", good, testSecret, http.StatusUnauthorized, webhook.CodeInvalidSignature},
		{"invalid answer", "cmd-1", `{"outcome":"retained"}`, callbackSecret, http.StatusBadRequest, webhook.CodeInvalidAnswer},
		{"unknown command", "cmd-2", good, callbackSecret, http.StatusNotFound, webhook.CodeUnknownCommand},
		{"good", "cmd-1", good, callbackSecret, http.StatusOK, ""},
		{"repeat", "cmd-1", good, callbackSecret, http.StatusOK, ""},
	}
	for _, tc := range cases {
		status, code := post(tc.id, tc.body, tc.secret)
		if status != tc.status || code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, code, tc.status, tc.code)
		}
		f.mu.Lock()
		_, done := f.finished["cmd-1"]
		f.mu.Unlock()
		if wantDone := tc.status == http.StatusOK; done != wantDone {
			t.Errorf("%s: finished %v, want %v", tc.name, done, wantDone)
		}
	}
	if got := f.finished["cmd-1"]; got.Outcome != wire.OutcomeRetained || got.Detail != "tax law, 10 years" {
		t.Errorf("finished with %+v, want the callback's retained answer", got)
	}
}

func deferred(req connectors.Request, p string) connectors.Deferred {
	return connectors.Deferred{CommandID: req.CommandID, RequestID: req.RequestID, System: req.System,
		Attempt: req.Attempt, ConfirmBy: req.ConfirmBy, Due: time.Now(), State: []byte(p)}
}

// TestResumePollsOnceWithBackoff: Resume polls the status URL once; "still
// working" defers it again after the backoff, or after a Retry-After
// (capped by poll.max); a final answer ends it.
func TestResumePollsOnceWithBackoff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var polls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls++
		switch polls {
		case 1:
			w.WriteHeader(http.StatusAccepted)
		case 2:
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			io.WriteString(w, `{"outcome":"erased","records":3}`)
		}
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL+"/erase", io.Discard)
	cfg.Poll = webhook.PollConfig{Enabled: true, Initial: time.Second, Max: 10 * time.Second}
	conn := newConnector(t, cfg)
	req := newRequest()
	d := deferred(req, `{"status_url":"`+srv.URL+`/status/1"}`)

	start := time.Now()
	res, err := conn.Resume(ctx, d)
	state, due, later := res.Pending()
	if err != nil || !later || polls != 1 {
		t.Fatalf("first Resume = %+v %v after %d polls, want Later after 1", res, err, polls)
	}
	// Poll 2's backoff is 2s with equal jitter: between 1s and 2s.
	if wait := due.Sub(start); wait < time.Second || wait > 2*time.Second+time.Since(start) {
		t.Errorf("next poll in %s, want between 1s and 2s", wait)
	}
	d.State = state
	start = time.Now()
	res, err = conn.Resume(ctx, d)
	state, due, later = res.Pending()
	if err != nil || !later {
		t.Fatalf("second Resume = %+v %v, want Later", res, err)
	}
	if wait := due.Sub(start); wait < 10*time.Second || wait > 10*time.Second+time.Since(start) {
		t.Errorf("after Retry-After 30s the next poll is in %s, want poll.max, 10s", wait)
	}
	var p struct{ Attempt int }
	if json.Unmarshal(state, &p) != nil || p.Attempt != 2 {
		t.Errorf("state %s, want 2 polls made", state)
	}
	d.State = state
	res, err = conn.Resume(ctx, d)
	if _, _, later := res.Pending(); err != nil || later || res.Outcome != wire.OutcomeErased || res.Records != 3 {
		t.Errorf("third Resume = %+v %v, want erased with 3 records", res, err)
	}
}

// TestResumeAfterConfirmBy: once confirm_by has passed, Resume answers
// failed and retryable with the fixed detail, without polling.
func TestResumeAfterConfirmBy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var polls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { polls++ }))
	defer srv.Close()
	conn := newConnector(t, pollConfig(srv.URL+"/erase"))
	req := newRequest()
	req.ConfirmBy = time.Now().Add(-time.Second)
	for _, tc := range []struct{ state, detail string }{
		{`{"status_url":"` + srv.URL + `/status/1"}`, "status url gave no final answer before confirm_by"},
		{`{"status_url":""}`, "sent no callback before confirm_by"},
	} {
		res, err := conn.Resume(ctx, deferred(req, tc.state))
		if err != nil || res.Outcome != wire.OutcomeFailed || !res.Retryable || !strings.Contains(res.Detail, tc.detail) {
			t.Errorf("Resume(%s) = %+v %v, want failed, retryable, %q", tc.state, res, err, tc.detail)
		}
	}
	if polls != 0 {
		t.Errorf("polled %d times after confirm_by, want none", polls)
	}
	if _, err := conn.Resume(ctx, deferred(newRequest(), `not json`)); err == nil || errors.Unwrap(err) == nil {
		t.Errorf("Resume of an undecodable state = %v, want a permanent error", err)
	}
}
