package connectortest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// The HTTP pull transport of the checks: a stand-in of Lethe's two
// pull-mode routes, which the connector under test polls as its API. Each
// command a check sends is one lease answer of one item, served once, in
// order, signed as the check asks; confirmations are what the connector
// posts. Nothing is re-offered by itself: a repeat is sent explicitly, with
// the same command_id and a higher attempt, as Lethe offers it once a lease
// runs out.

// PullConfig is what CheckPull needs to check a pull-mode connector, of any
// language, that polls the stand-in it serves. `lethe conformance --pull`
// fills it from its flags.
type PullConfig struct {
	// System is the system the connector runs as.
	System string
	// Listen is the address the stand-in serves on, such as
	// 127.0.0.1:8089; the connector takes http://<Listen> as its API URL.
	Listen string
	// Token is the bearer token the connector must present; any non-empty
	// string. Without it, or with another, the routes answer 401.
	Token string
	// IdentifierType, Seed, KeyID, Secret and Timeout are WireConfig's.
	// With a credential, every lease answer is signed with it (except the
	// forged ones of signed_messages) and every POST must be.
	IdentifierType string
	Seed           func(ctx context.Context, s Subject) error
	KeyID, Secret  string
	Timeout        time.Duration
	// Serving, when set, hears the stand-in's URL once it listens: the
	// connector under test may be started then.
	Serving func(url string)
}

// PullChecks are the checks CheckPull runs, in its order: WireChecks, each
// worded for pull mode where the transport shows through. In pull mode
// malformed_command serves a lease item that is JSON but no valid command
// (it lacks identifiers): the connector must neither handle nor confirm it,
// and must answer the next lease's command. There is no dead-letter topic
// over HTTP.
var PullChecks = WireChecks

// pollWait is how long CheckPull waits for the connector's first poll
// before it runs the checks.
const pollWait = setupTimeout

// CheckPull serves the stand-in on cfg.Listen, waits for the connector's
// first poll, runs PullChecks and returns one Result per check in that
// order. A configuration or listening problem, or a connector that never
// polls, is one Result named CheckConfig or CheckSetup.
func CheckPull(ctx context.Context, cfg PullConfig) []Result {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	wc := WireConfig{System: cfg.System, Brokers: []string{"unused"}, IdentifierType: cfg.IdentifierType,
		Seed: cfg.Seed, KeyID: cfg.KeyID, Secret: cfg.Secret, Timeout: cfg.Timeout}
	if err := wc.validate(); err != nil {
		return []Result{{Check: CheckConfig, Problem: err.Error()}}
	}
	if cfg.Token == "" {
		return []Result{{Check: CheckConfig, Problem: "no token given: the connector must present one, any non-empty string"}}
	}
	st, err := startStandIn(cfg)
	if err != nil {
		return []Result{{Check: CheckSetup, Problem: err.Error()}}
	}
	defer st.shutdown()
	if cfg.Serving != nil {
		cfg.Serving(st.url)
	}
	wctx, cancel := context.WithTimeout(ctx, pollWait)
	defer cancel()
	select {
	case <-st.polled:
	case <-wctx.Done():
		return []Result{{Check: CheckSetup, Problem: fmt.Sprintf("no connector polled %s/v1/systems/%s/commands with the token within %s: start it with that as its API URL (LETHE_API_URL) and the token (LETHE_TOKEN)",
			st.url, cfg.System, pollWait)}}
	}
	checks := blackBoxChecks(PullChecks, checkMalformedItem)
	b := &blackBox{cfg: wc}
	k := &checker{t: &pullBox{blackBox: b, sess: st}, timeout: cfg.Timeout}
	return k.runAll(ctx, checks)
}

// pullBox is the target of CheckPull: a black box reached through the
// stand-in rather than Kafka.
type pullBox struct {
	*blackBox
	sess *standIn
}

var (
	_ target  = (*pullBox)(nil)
	_ session = (*standIn)(nil)
)

func (p *pullBox) open(_ context.Context, signed bool) (session, error) {
	if signed && p.sess.secret == nil {
		return nil, errors.New("this check needs the connector's signing credential, and none was given: pass --key-id and --secret (or LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET), the credential the connector runs with; a connector without one acts on forged lease answers")
	}
	return p.sess, nil
}

// answer is one lease answer waiting for a poll.
type answer struct {
	body       []byte
	keyID, sig string
	signed     bool
	commandIDs []string
}

// standIn serves the pull routes of one system and is the one session of a
// CheckPull run, shared by its checks.
type standIn struct {
	cfg    PullConfig
	url    string
	srv    *http.Server
	secret []byte // nil: answers unsigned, posts unchecked
	forger []byte

	polled    chan struct{}
	pollOnce  sync.Once
	mu        sync.Mutex
	queue     []answer
	queued    chan struct{} // closed and replaced when an answer is queued
	confs     map[string][]wire.Confirmation
	badSigned map[string]bool // confirmations posted with a signature that does not verify
	arrived   chan struct{}   // closed and replaced at each post
}

func startStandIn(cfg PullConfig) (*standIn, error) {
	_, forger, err := newCredential()
	if err != nil {
		return nil, err
	}
	s := &standIn{cfg: cfg, forger: forger, polled: make(chan struct{}), queued: make(chan struct{}),
		confs: make(map[string][]wire.Confirmation), badSigned: make(map[string]bool), arrived: make(chan struct{})}
	if cfg.Secret != "" {
		s.secret, _ = hex.DecodeString(cfg.Secret) // checked by validate
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/systems/{name}/commands", s.lease)
	mux.HandleFunc("POST /v1/systems/{name}/confirmations", s.confirm)
	s.srv = &http.Server{Handler: s.authorize(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// shutdown stops serving, at the run's end.
func (s *standIn) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		_ = s.srv.Close() // a long poll still open
	}
}

// httpError answers Lethe's error shape.
func httpError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	_, _ = w.Write(b)
}

// authorize answers 401 without the run's token and 404 for another system.
func (s *standIn) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.cfg.Token {
			httpError(w, http.StatusUnauthorized, "unauthenticated", "a bearer token is required: the one lethe conformance --pull was given")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// lease serves the next queued answer, waiting up to the poll's wait
// (default 30s, at most 60s) for one, else an empty list.
func (s *standIn) lease(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != s.cfg.System {
		httpError(w, http.StatusNotFound, "not_found", "no such system")
		return
	}
	wait := 30 * time.Second
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			httpError(w, http.StatusBadRequest, "invalid_wait", "wait must be a duration from 0s to 60s")
			return
		}
		wait = d
	}
	s.pollOnce.Do(func() { close(s.polled) })
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		var a answer
		got := len(s.queue) > 0
		if got {
			a, s.queue = s.queue[0], s.queue[1:]
		}
		queued := s.queued
		s.mu.Unlock()
		if !got && wait > 0 {
			select {
			case <-queued:
				continue
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		if !got {
			a = s.sign([]byte(`{"items":[]}`), signAsLethe)
		}
		if a.signed {
			w.Header().Set(wire.HeaderKeyID, a.keyID)
			w.Header().Set(wire.HeaderSignature, a.sig)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(a.body)
		return
	}
}

// sign makes a lease answer of body, signed as how says.
func (s *standIn) sign(body []byte, how signing) answer {
	a := answer{body: body}
	switch {
	case how == signAsLethe && s.secret != nil:
		a.keyID, a.sig, a.signed = s.cfg.KeyID, wire.Sign(s.secret, body), true
	case how == signForged:
		a.keyID, a.sig, a.signed = s.cfg.KeyID, wire.Sign(s.forger, body), true
	}
	return a
}

// confirm keeps the posted confirmations: one or an array, naming the
// system. A post whose signature does not verify is refused 403 as Lethe
// refuses it, and remembered so that await can say why.
func (s *standIn) confirm(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != s.cfg.System {
		httpError(w, http.StatusNotFound, "not_found", "no such system")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return
	}
	var confs []wire.Confirmation
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		err = json.Unmarshal(trimmed, &raws)
		for _, raw := range raws {
			if err != nil {
				break
			}
			var c wire.Confirmation
			c, err = wire.DecodeConfirmation(raw)
			confs = append(confs, c)
		}
	} else {
		var c wire.Confirmation
		c, err = wire.DecodeConfirmation(trimmed)
		confs = append(confs, c)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed_confirmation", err.Error())
		return
	}
	for _, c := range confs {
		if c.System != s.cfg.System {
			httpError(w, http.StatusBadRequest, "system_mismatch", "a confirmation names another system")
			return
		}
	}
	bad := s.secret != nil && (r.Header.Get(wire.HeaderKeyID) != s.cfg.KeyID || !wire.Verify(s.secret, body, r.Header.Get(wire.HeaderSignature)))
	s.mu.Lock()
	for _, c := range confs {
		if bad {
			s.badSigned[c.CommandID] = true
		} else {
			s.confs[c.CommandID] = append(s.confs[c.CommandID], c)
		}
	}
	close(s.arrived)
	s.arrived = make(chan struct{})
	s.mu.Unlock()
	if bad {
		httpError(w, http.StatusForbidden, "bad_signature", "the confirmations must carry "+wire.HeaderKeyID+" and "+wire.HeaderSignature+" over the request body")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = fmt.Fprintf(w, `{"received":%d}`, len(confs))
}

func (s *standIn) enqueue(a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, a)
	close(s.queued)
	s.queued = make(chan struct{})
}

// send offers cmd as a lease answer of its own, signed as how says.
func (s *standIn) send(_ context.Context, cmd wire.Command, how signing) error {
	body, err := json.Marshal(map[string][]wire.Command{"items": {cmd}})
	if err != nil {
		return fmt.Errorf("encode a command: %w", err)
	}
	s.enqueue(s.sign(body, how))
	return nil
}

// sendRaw offers value, which must be JSON, as the one item of a lease
// answer signed as Lethe would sign it; key is unused over HTTP.
func (s *standIn) sendRaw(_ context.Context, _ string, value []byte) error {
	if !json.Valid(value) {
		return errors.New("a lease item must be JSON")
	}
	s.enqueue(s.sign([]byte(`{"items":[`+string(value)+`]}`), signAsLethe))
	return nil
}

func (s *standIn) await(ctx context.Context, commandID string, n int) (wire.Confirmation, error) {
	for {
		s.mu.Lock()
		got, bad, arrived := s.confs[commandID], s.badSigned[commandID], s.arrived
		s.mu.Unlock()
		if len(got) >= n {
			return got[n-1], nil
		}
		if bad {
			return wire.Confirmation{}, &signatureError{fmt.Sprintf("the confirmation of a correctly signed lease answer was posted without %s %q and a signature over the request body that verifies; Lethe refuses it (403 bad_signature). %s",
				wire.HeaderKeyID, s.cfg.KeyID, fixSigned)}
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return wire.Confirmation{}, fmt.Errorf("no confirmation within %s of a command offered at %s/v1/systems/%s/commands: the connector must poll it, answer every command with a POST to /v1/systems/%s/confirmations and get 202",
				s.cfg.Timeout, s.url, s.cfg.System, s.cfg.System)
		}
	}
}

func (s *standIn) confirmed(commandID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.confs[commandID])
}

// deadLetter: pull mode has no dead-letter topic; no pull check asks.
func (s *standIn) deadLetter(context.Context, string) (deadLetter, error) {
	return deadLetter{}, errors.New("pull mode has no dead-letter topic")
}

func (s *standIn) calls(string) (int, bool) { return 0, false }

func (s *standIn) cause(string) string { return "" }

// close leaves the shared stand-in serving for the next check; CheckPull
// shuts it down at the run's end.
func (s *standIn) close() {}

// checkMalformedItem is malformed_command over HTTP: a lease item that is
// JSON but no valid command (no identifiers) must be neither handled nor
// confirmed, and the connector must go on to answer the next command.
func checkMalformedItem(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	_, bad, err := k.subject(false)
	if err != nil {
		return err
	}
	bad.Identifiers = nil
	raw, err := json.Marshal(bad)
	if err != nil {
		return err
	}
	if err := c.sendRaw(ctx, bad.CommandID, raw); err != nil {
		return err
	}
	_, next, err := k.subject(false)
	if err != nil {
		return err
	}
	if _, err := confirm(ctx, c, next, 1); err != nil {
		return fmt.Errorf("after a lease item that is not a valid command, the connector did not answer the next command: skip such an item (log it without its values) and keep polling: %w", err)
	}
	if n := c.confirmed(bad.CommandID); n != 0 {
		return fmt.Errorf("a lease item that is not a valid command (it has no identifiers) was confirmed %d time(s): decode and validate each item as %s and skip, unhandled and unconfirmed, one that is not valid",
			n, wire.SchemaCommand)
	}
	return nil
}
