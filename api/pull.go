package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
)

// Bounds and defaults of GET /v1/systems/{name}/commands.
const (
	// DefaultPullWait and MaxPullWait bound how long a lease call waits
	// for a command when none is due: long enough to spare the connector
	// tight loops, short enough for proxies' idle timeouts.
	DefaultPullWait = 30 * time.Second
	MaxPullWait     = 60 * time.Second
	// DefaultPullLimit and MaxPullLimit bound how many commands one call
	// leases.
	DefaultPullLimit = 100
	MaxPullLimit     = 500
	// DefaultPullLease is how long a leased command stays with its
	// connector before it is offered again (same command_id, higher
	// attempt); MinPullLease and MaxPullLease bound the lease= parameter.
	DefaultPullLease = 5 * time.Minute
	MinPullLease     = 10 * time.Second
	MaxPullLease     = time.Hour
	// MaxPullConfirmations bounds the confirmations of one POST.
	MaxPullConfirmations = 500
)

// pullPoll is how often a waiting lease call looks at the queue again. A
// short poll of one indexed query is simple and safe with any number of
// API replicas, each leasing with SKIP LOCKED.
const pullPoll = 250 * time.Millisecond

// connectorScope stands, in the route table, for the scope
// "connector:<name>" of the system the path names; see pullAllowed.
const connectorScope = auth.Scope(auth.ConnectorScopePrefix + "{name}")

// PullStore is what the pull-mode routes need from the registry, beyond
// Store; *registry.Store implements it. A Store without it answers those
// routes 503 pull_unavailable.
type PullStore interface {
	LeasePull(ctx context.Context, system string, limit int, now time.Time, lease time.Duration,
		fill func(ctx context.Context, due []registry.PullCommand) ([]string, error)) ([]registry.PullCommand, error)
	FinishPull(ctx context.Context, keys []registry.PullKey) (map[registry.PullKey]bool, error)
	// SystemCredentials, ErasureRecorded and AppendAudit serve the
	// signature checks and audits the relay makes (relay.Credentials).
	relay.Credentials
	AppendAudit(ctx context.Context, events []lethe.AuditEvent) error
}

// PullEngine is what the pull-mode routes need from the workflow engine:
// the body of an open command (workflows.QueryCommand) and the signals
// that carry confirmations. The Temporal engine implements it.
type PullEngine interface {
	// OpenCommand returns the open command commandID of the workflow of
	// requestID (a request's or a chunk's); ok is false when the workflow
	// has no such command open, or no longer exists.
	OpenCommand(ctx context.Context, requestID, commandID string) (cmd wire.Command, ok bool, err error)
	relay.Signaler
}

// commandList is the body of GET /v1/systems/{name}/commands.
type commandList struct {
	Items []wire.Command `json:"items"`
}

// pullReceipt is the body of POST /v1/systems/{name}/confirmations.
type pullReceipt struct {
	// Received counts the confirmations handed to their workflows, which
	// count each one issued to the system and ignore repeats.
	Received int `json:"received"`
}

// pullAllowed reports whether p may act for the system named in r's
// path: with its connector scope, or with systems:admin, which may anyway
// point the system's commands wherever it likes.
func pullAllowed(p auth.Principal, r *http.Request) bool {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/systems/")
	name, _, _ := strings.Cut(rest, "/")
	return p.Has(auth.Scope(auth.ConnectorScopePrefix+name)) || p.Has(auth.SystemsAdmin)
}

// pullSystem checks the path's system: registered, and in pull mode.
func (s *Server) pullSystem(r *http.Request) (string, error) {
	if s.pullStore == nil || s.pullEngine == nil {
		return "", lethe.Errorf(lethe.KindUnavailable, "pull_unavailable", "this API does not serve pull mode")
	}
	name := r.PathValue("name")
	if !lethe.ValidSystemName(name) {
		return "", invalidName()
	}
	sys, err := s.store.GetSystem(r.Context(), name)
	if err != nil {
		return "", err
	}
	if sys.Mode != lethe.ModePull {
		return "", lethe.Errorf(lethe.KindConflict, "not_pull_mode",
			"system %s receives its commands on Kafka; register it with \"mode\": \"pull\"", name)
	}
	return name, nil
}

// pullParams reads wait, limit and lease.
func pullParams(r *http.Request) (wait time.Duration, limit int, lease time.Duration, err error) {
	q := r.URL.Query()
	wait, limit, lease = DefaultPullWait, DefaultPullLimit, DefaultPullLease
	duration := func(key string, lo, hi time.Duration, out *time.Duration) error {
		vs, ok := q[key]
		if !ok {
			return nil
		}
		d, perr := time.ParseDuration(strings.Join(vs, ","))
		if perr != nil || len(vs) != 1 || d < lo || d > hi {
			return invalid("invalid_"+key, "%s must be one Go duration from %s to %s, such as \"30s\"", key, lo, hi)
		}
		*out = d
		return nil
	}
	if err = duration("wait", 0, MaxPullWait, &wait); err != nil {
		return
	}
	if err = duration("lease", MinPullLease, MaxPullLease, &lease); err != nil {
		return
	}
	if vs, ok := q["limit"]; ok {
		n, perr := strconv.Atoi(strings.Join(vs, ","))
		if perr != nil || len(vs) != 1 || n < 1 || n > MaxPullLimit || strings.TrimLeft(vs[0], "0123456789") != "" {
			return 0, 0, 0, invalid("invalid_limit", "limit must be an integer from 1 to %d", MaxPullLimit)
		}
		limit = n
	}
	return
}

// leaseCommands serves GET /v1/systems/{name}/commands: it leases the
// system's due commands, waiting up to wait for one, and answers them as
// the contract puts them on Kafka. For a system with credentials the
// answer is signed: lethe-key-id and lethe-signature over the body bytes.
func (s *Server) leaseCommands(w http.ResponseWriter, r *http.Request) {
	name, err := s.pullSystem(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wait, limit, lease, err := pullParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The signing key is found before anything is leased, so that a
	// command is never leased into an answer that cannot be signed.
	keyID, err := s.pullKey(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	deadline := s.now().Add(wait)
	var items []wire.Command
	for {
		items, err = s.lease(r.Context(), name, limit, lease)
		if err != nil || len(items) > 0 || !s.now().Before(deadline) {
			break
		}
		t := time.NewTimer(min(pullPoll, deadline.Sub(s.now())))
		select {
		case <-r.Context().Done():
			t.Stop()
			return // the client left; nothing was leased
		case <-t.C:
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := json.Marshal(commandList{Items: append([]wire.Command{}, items...)})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body = append(body, '\n')
	if keyID != "" {
		w.Header().Set(wire.HeaderKeyID, keyID)
		w.Header().Set(wire.HeaderSignature, wire.Sign(s.systemKey.Secret(keyID), body))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// pullKey is the key a system's leased commands are signed with: its
// newest valid one, "" for a system never issued a credential. A system
// with credentials but none valid, or an API without LETHE_SYSTEM_KEY,
// gets no command rather than an unsigned one its connector would refuse.
func (s *Server) pullKey(ctx context.Context, system string) (string, error) {
	creds, err := s.pullStore.SystemCredentials(ctx, []string{system}, s.now())
	if err != nil {
		return "", err
	}
	keys, has := creds[system]
	switch {
	case !has:
		return "", nil
	case len(keys) == 0:
		return "", lethe.Errorf(lethe.KindUnavailable, "no_valid_credential",
			"system %s has credentials but none is valid now: issue a new one", system)
	case s.systemKey == nil:
		return "", lethe.Errorf(lethe.KindUnavailable, "system_key_missing",
			"system %s has credentials but the API has no LETHE_SYSTEM_KEY to sign with", system)
	}
	return keys[0], nil
}

// lease leases the system's due commands and reads each one's body from
// its workflow; a command its workflow no longer has open leaves the queue.
func (s *Server) lease(ctx context.Context, system string, limit int, lease time.Duration) ([]wire.Command, error) {
	var items []wire.Command
	_, err := s.pullStore.LeasePull(ctx, system, limit, s.now(), lease,
		func(ctx context.Context, due []registry.PullCommand) ([]string, error) {
			var gone []string
			for _, d := range due {
				cmd, ok, err := s.pullEngine.OpenCommand(ctx, d.RequestID, d.CommandID)
				if err != nil {
					return nil, err
				}
				if !ok || cmd.System != system {
					gone = append(gone, d.CommandID)
					continue
				}
				cmd.Attempt = max(cmd.Attempt, d.Attempt)
				items = append(items, cmd)
			}
			return gone, nil
		})
	if err != nil {
		return nil, err
	}
	return items, nil
}

// postConfirmations serves POST /v1/systems/{name}/confirmations: one
// confirmation or a JSON array of them, checked as the relay checks
// those on Kafka (relay.SignatureProblem), then signaled to their
// workflows (relay.SignalConfirmations), which count only those issued to
// the system for their request and audit the others as
// confirmation_rejected. Any malformed item refuses the whole body.
func (s *Server) postConfirmations(w http.ResponseWriter, r *http.Request) {
	name, err := s.pullSystem(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		s.writeError(w, r, bodyTooLarge(err))
		return
	}
	confs, err := decodeConfirmations(body, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.checkPullSignature(r, name, body, confs); err != nil {
		s.writeError(w, r, err)
		return
	}
	late, err := relay.SignalConfirmations(r.Context(), s.pullEngine, confs)
	if err != nil {
		s.writeError(w, r, temporalError("signal confirmations", err))
		return
	}
	if len(late) > 0 {
		if err := s.pullStore.AppendAudit(r.Context(), relay.LateEvents(late, s.now().UTC())); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	// The queue lets go of the commands once their workflows have them;
	// only rows of this very system and request are touched.
	keys := make([]registry.PullKey, len(confs))
	for i, c := range confs {
		keys[i] = registry.PullKey{CommandID: c.CommandID, RequestID: c.RequestID, System: c.System}
	}
	if _, err := s.pullStore.FinishPull(r.Context(), keys); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, pullReceipt{Received: len(confs)})
}

// decodeConfirmations reads a body of one confirmation or an array of
// them, each validated as the relay validates one from Kafka, and all of
// the system in the path. Errors name the item, never its content.
func decodeConfirmations(body []byte, system string) ([]wire.Confirmation, error) {
	trimmed := bytes.TrimSpace(body)
	var raws []json.RawMessage
	single := len(trimmed) == 0 || trimmed[0] != '['
	if single {
		raws = []json.RawMessage{trimmed}
	} else if err := json.Unmarshal(trimmed, &raws); err != nil {
		return nil, invalid("invalid_json", "the request body must be a confirmation or a JSON array of them")
	}
	switch {
	case len(raws) == 0:
		return nil, invalid("no_confirmations", "the array holds no confirmation")
	case len(raws) > MaxPullConfirmations:
		return nil, invalid("too_many_confirmations", "at most %d confirmations per request", MaxPullConfirmations)
	}
	confs := make([]wire.Confirmation, len(raws))
	for i, raw := range raws {
		what := "the confirmation"
		if !single {
			what = "confirmation " + strconv.Itoa(i)
		}
		c, err := wire.DecodeConfirmation(raw)
		if err != nil {
			return nil, invalid("malformed_confirmation", "%s is malformed: %v", what, err)
		}
		if c.System != system {
			return nil, invalid("system_mismatch", "%s names another system than the path", what)
		}
		confs[i] = c
	}
	return confs, nil
}

// checkPullSignature applies the relay's signature rules to the body of a
// POST, signed as a whole by the headers lethe-key-id and lethe-signature.
// A refusal is audited, as the relay audits bad_signature, under each
// request the ledger knows, and answered 403 bad_signature.
func (s *Server) checkPullSignature(r *http.Request, system string, body []byte, confs []wire.Confirmation) error {
	ctx := r.Context()
	creds, err := s.pullStore.SystemCredentials(ctx, []string{system}, s.now())
	if err != nil {
		return err
	}
	keyIDs, sigs := r.Header.Values(wire.HeaderKeyID), r.Header.Values(wire.HeaderSignature)
	signed := relay.Signed{System: system, Value: body, Present: len(keyIDs) == 1 && len(sigs) == 1}
	if signed.Present {
		signed.KeyID, signed.Signature = keyIDs[0], sigs[0]
	}
	problem := relay.SignatureProblem(signed, creds, s.systemKey, s.requireSigs)
	if problem == "" {
		return nil
	}
	now := s.now().UTC()
	var events []lethe.AuditEvent
	seen := map[string]bool{}
	for _, c := range confs {
		if seen[c.RequestID] {
			continue
		}
		seen[c.RequestID] = true
		id := c.RequestID
		known, err := s.pullStore.ErasureRecorded(ctx, id)
		if err != nil {
			return err
		}
		if !known {
			id = ""
		}
		events = append(events, lethe.AuditEvent{RequestID: id, System: system, Kind: lethe.AuditBadSignature,
			Detail: problem, At: now})
	}
	if err := s.pullStore.AppendAudit(ctx, events); err != nil {
		return err
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "confirmations refused for their signature",
		slog.String("system", system), slog.String("reason", problem))
	return lethe.Errorf(lethe.KindForbidden, "bad_signature",
		"the confirmations are not signed as system %s must sign them: %s", system, problem)
}
