package e2e_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/internal/apicall"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// putPullSystem registers a pull-mode system erasing by idType.
func (s *stack) putPullSystem(name, idType string) {
	s.t.Helper()
	r := s.do(http.MethodPut, "/v1/systems/"+name, map[string]any{"identifiers": []string{idType}, "mode": "pull"})
	var sys lethe.System
	if r.Status != http.StatusCreated {
		s.t.Fatalf("PUT /v1/systems/%s = %d %s", name, r.Status, r.Body)
	}
	r.Decode(s.t, &sys)
	if sys.Mode != lethe.ModePull {
		s.t.Fatalf("PUT /v1/systems/%s stored mode %q, want pull", name, sys.Mode)
	}
}

// pull calls a pull-mode route with token (apicall.NoHeader for none) and
// the extra headers given.
func (s *stack) pull(method, path, token, body string, header ...string) response {
	s.t.Helper()
	auth := apicall.NoHeader
	if token != apicall.NoHeader {
		auth = "Bearer " + token
	}
	contentType := ""
	if body != "" {
		contentType = "application/json"
	}
	return s.doRaw(method, path, body, contentType, append([]string{"Authorization", auth}, header...)...)
}

// leased decodes a lease answer.
func leased(t *testing.T, r response) []wire.Command {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("GET commands = %d %s", r.Status, r.Body)
	}
	var list struct {
		Items []wire.Command `json:"items"`
	}
	r.Decode(t, &list)
	return list.Items
}

// confirmation answers cmd as erased, encoded as a connector sends it.
func confirmation(cmd wire.Command) string {
	b, _ := json.Marshal(wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: cmd.CommandID,
		RequestID: cmd.RequestID, System: cmd.System, Outcome: wire.OutcomeErased, Records: 1,
		ConfirmedAt: time.Now().UTC()})
	return string(b)
}

// TestPullModeCompletesOverHTTP runs a request to a pull-mode system
// through the HTTP endpoints only: the command is leased (with its
// identifiers, read from the workflow), re-offered with the same
// command_id and a higher attempt once its lease has run out, and the
// confirmation posted completes the request. Tokens of no or another
// system are refused, and the value never reaches PostgreSQL.
func TestPullModeCompletesOverHTTP(t *testing.T) {
	// Unsigned, so that the confirmations below test the rules other than
	// the signature; TestPullModeSigned tests that one.
	s := newStack(t, stackOptions{Unsigned: true})
	s.putPullSystem("pullsys", "user_id")
	s.putPullSystem("othersys", "email")
	conn := testenv.Token(t, s.Store, "pullsys-connector", auth.Scope("connector:pullsys"))
	other := testenv.Token(t, s.Store, "othersys-connector", auth.Scope("connector:othersys"))
	const value = "u-pull-canary-7f3a"

	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/systems/pullsys/commands?wait=0s"},
		{http.MethodPost, "/v1/systems/pullsys/confirmations"},
	} {
		if r := s.pull(c.method, c.path, apicall.NoHeader, "{}"); r.Status != http.StatusUnauthorized || r.ErrorCode() != "unauthenticated" {
			t.Errorf("%s %s without a token = %d %s, want 401 unauthenticated", c.method, c.path, r.Status, r.Body)
		}
		if r := s.pull(c.method, c.path, other, "{}"); r.Status != http.StatusForbidden || r.ErrorCode() != "insufficient_scope" {
			t.Errorf("%s %s with another system's token = %d %s, want 403 insufficient_scope", c.method, c.path, r.Status, r.Body)
		}
	}

	e := s.submit(map[string]string{"user_id": value})
	first := leased(t, s.pull(http.MethodGet, "/v1/systems/pullsys/commands?wait=25s&lease=10s", conn, ""))
	if len(first) != 1 {
		t.Fatalf("first lease: %d commands, want 1", len(first))
	}
	cmd := first[0]
	if cmd.RequestID != e.ID || cmd.System != "pullsys" || len(cmd.Identifiers) != 1 ||
		cmd.Identifiers[0] != (wire.Identifier{Type: "user_id", Value: value}) || cmd.Validate() != nil {
		t.Fatalf("leased command %+v (valid: %v), want request %s's user_id", cmd, cmd.Validate(), e.ID)
	}
	// Leased: nobody else gets it until the lease runs out.
	if got := leased(t, s.pull(http.MethodGet, "/v1/systems/pullsys/commands?wait=0s", conn, "")); len(got) != 0 {
		t.Fatalf("a leased command was offered again at once: %+v", got)
	}
	again := leased(t, s.pull(http.MethodGet, "/v1/systems/pullsys/commands?wait=25s&lease=10s", conn, ""))
	if len(again) != 1 || again[0].CommandID != cmd.CommandID || again[0].Attempt <= cmd.Attempt {
		t.Fatalf("after the lease: %+v, want command %s again at an attempt above %d", again, cmd.CommandID, cmd.Attempt)
	}

	// Confirmations of another system are refused before anything counts.
	wrong := strings.Replace(confirmation(cmd), `"system":"pullsys"`, `"system":"othersys"`, 1)
	if r := s.pull(http.MethodPost, "/v1/systems/pullsys/confirmations", conn, wrong); r.Status != http.StatusBadRequest || r.ErrorCode() != "system_mismatch" {
		t.Errorf("confirmation naming another system = %d %s, want 400 system_mismatch", r.Status, r.Body)
	}
	// A command_id never issued to the system is rejected and audited,
	// and counts for nothing.
	forged := again[0]
	forged.CommandID = "0b5c0000-0000-4000-8000-000000000000"
	if r := s.pull(http.MethodPost, "/v1/systems/pullsys/confirmations", conn, confirmation(forged)); r.Status != http.StatusAccepted {
		t.Fatalf("POST a forged confirmation = %d %s", r.Status, r.Body)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var rejected int
		if err := s.DB.QueryRowContext(s.ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND kind = $2`,
			e.ID, lethe.AuditConfirmationRejected).Scan(&rejected); err != nil {
			t.Fatal(err)
		}
		if rejected > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forged confirmation was not audited as %s", lethe.AuditConfirmationRejected)
		}
	}
	var running lethe.Erasure
	s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil).Decode(t, &running)
	if systemByName(t, running, "pullsys").Status != lethe.SystemDispatched {
		t.Fatalf("after a forged confirmation: %s", describe(running))
	}

	body := "[" + confirmation(again[0]) + "," + confirmation(again[0]) + "]" // a repeat is harmless
	if r := s.pull(http.MethodPost, "/v1/systems/pullsys/confirmations", conn, body); r.Status != http.StatusAccepted {
		t.Fatalf("POST confirmations = %d %s", r.Status, r.Body)
	}
	done := s.await(e.ID, 30*time.Second)
	if done.Status != lethe.RequestCompleted || systemByName(t, done, "pullsys").Status != lethe.SystemErased {
		t.Fatalf("request after the confirmation: %s", describe(done))
	}
	if got := leased(t, s.pull(http.MethodGet, "/v1/systems/pullsys/commands?wait=0s", conn, "")); len(got) != 0 {
		t.Errorf("a confirmed command is still offered: %+v", got)
	}

	for _, table := range allTables(t, s) {
		var dump string
		q := fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %s t`, table)
		if err := s.DB.QueryRowContext(s.ctx, q).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(dump, value) {
			t.Errorf("table %s holds the identifier value", table)
		}
	}
}

// TestPullModeSigned checks signing both ways for a pull-mode system with
// a credential: the leased commands come signed over the answer's bytes,
// and a confirmation with a bad signature is refused and counts for
// nothing, while the same one signed completes the request.
func TestPullModeSigned(t *testing.T) {
	master, err := credential.New(bytes.Repeat([]byte{7}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{SystemKey: master})
	s.putPullSystem("signedpull", "user_id")
	cred := s.issueCredential("signedpull")
	secret, err := hex.DecodeString(cred.Secret)
	if err != nil {
		t.Fatal(err)
	}
	conn := testenv.Token(t, s.Store, "signedpull-connector", auth.Scope("connector:signedpull"))
	e := s.submit(map[string]string{"user_id": "u-signed-pull"})

	r := s.pull(http.MethodGet, "/v1/systems/signedpull/commands?wait=25s", conn, "")
	if r.Header.Get(wire.HeaderKeyID) != cred.KeyID || !wire.Verify(secret, r.Body, r.Header.Get(wire.HeaderSignature)) {
		t.Fatalf("lease answer signed by %q with %q: not a signature of its body under the system's key",
			r.Header.Get(wire.HeaderKeyID), r.Header.Get(wire.HeaderSignature))
	}
	cmds := leased(t, r)
	if len(cmds) != 1 {
		t.Fatalf("leased %d commands, want 1", len(cmds))
	}
	body := confirmation(cmds[0])

	bad := s.pull(http.MethodPost, "/v1/systems/signedpull/confirmations", conn, body,
		wire.HeaderKeyID, cred.KeyID, wire.HeaderSignature, wire.Sign([]byte("not the secret"), []byte(body)))
	if bad.Status != http.StatusForbidden || bad.ErrorCode() != "bad_signature" {
		t.Fatalf("badly signed confirmation = %d %s, want 403 bad_signature", bad.Status, bad.Body)
	}
	unsigned := s.pull(http.MethodPost, "/v1/systems/signedpull/confirmations", conn, body)
	if unsigned.Status != http.StatusForbidden || unsigned.ErrorCode() != "bad_signature" {
		t.Fatalf("unsigned confirmation = %d %s, want 403 bad_signature", unsigned.Status, unsigned.Body)
	}
	var refusals int
	if err := s.DB.QueryRowContext(s.ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND kind = $2`,
		e.ID, lethe.AuditBadSignature).Scan(&refusals); err != nil {
		t.Fatal(err)
	}
	if refusals != 2 {
		t.Errorf("%d bad_signature audit events, want 2", refusals)
	}
	// The refused confirmations changed nothing: still running, with the
	// command still leased to the connector.
	var now lethe.Erasure
	s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil).Decode(t, &now)
	if now.Status.Final() || systemByName(t, now, "signedpull").Status != lethe.SystemDispatched {
		t.Fatalf("after refused confirmations: %s", describe(now))
	}

	good := s.pull(http.MethodPost, "/v1/systems/signedpull/confirmations", conn, body,
		wire.HeaderKeyID, cred.KeyID, wire.HeaderSignature, wire.Sign(secret, []byte(body)))
	if good.Status != http.StatusAccepted {
		t.Fatalf("signed confirmation = %d %s", good.Status, good.Body)
	}
	if done := s.await(e.ID, 30*time.Second); done.Status != lethe.RequestCompleted {
		t.Fatalf("request after the signed confirmation: %s", describe(done))
	}
}

// TestPullModeBulkErasure runs a bulk erasure whose subjects a pull-mode
// system erases: each subject's single command comes from its chunk's
// workflow through the lease, and the confirmations posted complete the
// batch.
func TestPullModeBulkErasure(t *testing.T) {
	s := newStack(t, stackOptions{Unsigned: true})
	s.putPullSystem("bulkpull", "user_id")
	conn := testenv.Token(t, s.Store, "bulkpull-connector", auth.Scope("connector:bulkpull"))
	const n = 3
	var body strings.Builder
	for i := range n {
		fmt.Fprintf(&body, `{"subject": {"user_id": "u-bulk-pull-%d"}}`+"\n", i)
	}
	r := s.doRaw(http.MethodPost, "/v1/erasure-batches?reason=retention&requested_by=e2e", body.String(), "application/x-ndjson")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasure-batches = %d %s", r.Status, r.Body)
	}
	var b lethe.Batch
	r.Decode(t, &b)

	var cmds []wire.Command
	for deadline := time.Now().Add(60 * time.Second); len(cmds) < n; {
		cmds = append(cmds, leased(t, s.pull(http.MethodGet, "/v1/systems/bulkpull/commands?wait=10s", conn, ""))...)
		if time.Now().After(deadline) {
			t.Fatalf("leased %d commands in a minute, want %d", len(cmds), n)
		}
	}
	values := map[string]bool{}
	var confs []string
	for _, c := range cmds {
		if len(c.Identifiers) != 1 || c.System != "bulkpull" || c.Validate() != nil {
			t.Fatalf("leased %+v, want one user_id of the batch", c)
		}
		values[c.Identifiers[0].Value] = true
		confs = append(confs, confirmation(c))
	}
	if len(values) != n {
		t.Fatalf("leased commands name %d subjects, want %d", len(values), n)
	}
	if r := s.pull(http.MethodPost, "/v1/systems/bulkpull/confirmations", conn, "["+strings.Join(confs, ",")+"]"); r.Status != http.StatusAccepted {
		t.Fatalf("POST confirmations = %d %s", r.Status, r.Body)
	}
	if done := s.awaitBatch(b.ID, time.Minute); done.Status != lethe.RequestCompleted || done.Counts.Completed != n {
		t.Fatalf("batch = %s %+v, want completed", done.Status, done.Counts)
	}
}

// TestRunPullCompletesARequest runs the Go SDK's pull runner against the
// real stack's signed pull-mode system: it leases the command, verifies
// the answer's signature, calls the handler with the subject and posts the
// signed confirmation that completes the request. Its logs hold no
// identifier value.
func TestRunPullCompletesARequest(t *testing.T) {
	master, err := credential.New(bytes.Repeat([]byte{9}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{SystemKey: master})
	s.putPullSystem("sdkpull", "user_id")
	cred := s.issueCredential("sdkpull")
	conn := testenv.Token(t, s.Store, "sdkpull-connector", auth.Scope("connector:sdkpull"))
	const value = "u-sdk-pull-canary-41c2"

	var (
		mu   sync.Mutex
		seen []string
		logs bytes.Buffer
	)
	h := connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, req.Values("user_id")...)
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := connectors.PullConfig{URL: s.URL, System: "sdkpull", Token: conn, KeyID: cred.KeyID, Secret: cred.Secret,
		Wait: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	go func() { done <- connectors.RunPull(ctx, cfg, h) }()

	e := s.submit(map[string]string{"user_id": value})
	final := s.await(e.ID, 60*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunPull = %v", err)
	}
	if final.Status != lethe.RequestCompleted || systemByName(t, final, "sdkpull").Status != lethe.SystemErased {
		t.Fatalf("request: %s", describe(final))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != value {
		t.Errorf("the handler saw %d user ids, want the subject's once", len(seen))
	}
	if strings.Contains(logs.String(), value) {
		t.Error("RunPull's logs hold the identifier value")
	}
	if !strings.Contains(logs.String(), "connector started") {
		t.Error("RunPull's logs were not captured")
	}
}

// syncWriter serialises writes to w under mu.
type syncWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
