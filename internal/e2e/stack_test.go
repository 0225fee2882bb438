package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/apicall"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/oidctest"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/internal/testtemporal"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// stack is a whole Lethe in one test process: API, worker and relay wired as
// `lethe dev` wires them, over a fresh PostgreSQL database, a Temporal test
// server and a Kafka-protocol broker.
type stack struct {
	t         testing.TB
	ctx       context.Context
	URL       string
	DB        *sql.DB
	DBURL     string
	Store     *registry.Store
	Brokers   []string
	Temporal  client.Client
	Namespace string
	Digester  *digest.Digester
	Logs      *testenv.LogBuffer
	Responses *testenv.LogBuffer
	Log       *slog.Logger
	// Token is a Lethe token with every scope, which do and doRaw send
	// unless the call gives its own Authorization header.
	Token string
	// Issuer is the OIDC issuer whose JWTs the API accepts.
	Issuer *oidctest.Issuer
	// Secure says the broker requires SASL/SCRAM and enforces the
	// least-privilege ACLs of docs/security.md: Lethe logs in as "lethe",
	// each connector as its system's own principal.
	Secure bool
	// KafkaAdmin is the connections of a principal that may do anything,
	// for tests that read or write the broker directly; the zero value
	// (plaintext) when the stack is not secure.
	KafkaAdmin kafkasec.Security
	// Signed says the stack requires every confirmation to be signed:
	// putSystem issues each system a credential through the API and
	// runConnector hands it to the connector (see stackOptions.Signed).
	Signed bool
	// Metrics is the stack's registry, which its API, worker, relay and
	// their Temporal client record on, as one `lethe dev` process does.
	Metrics *metrics.Metrics

	credMu sync.Mutex
	creds  map[string]systemCredential
	wg     sync.WaitGroup
	// deps are what the roles run on, for startWorker.
	deps roles.Deps
}

// secureEnv, set to 1, runs every end-to-end test on a secure stack, as
// stackOptions.Secure does for one: `LETHE_E2E_SECURE=1 go test ./internal/e2e/`.
const secureEnv = "LETHE_E2E_SECURE"

// kafkaAdminPassword and the principals' passwords ("<user>-secret") of
// the secure stack.
const kafkaAdminPassword = "admin-secret"

func kafkaPassword(user string) string { return user + "-secret" }

// stackOptions vary what newStack builds.
type stackOptions struct {
	// Temporal, when set, is used instead of a temporaltest server.
	Temporal  client.Client
	Namespace string
	Policy    workflows.Policy
	// Codec, when set, encrypts every payload the API, worker and relay
	// give Temporal, as LETHE_CODEC_KEYS does; stack.Temporal stays a
	// client without the keys, reading what Temporal stores.
	Codec *codec.Keyring
	// SystemKey, when set, lets the API issue signing credentials, the
	// worker sign commands and the relay check confirmations, as
	// LETHE_SYSTEM_KEY does.
	SystemKey *credential.Master
	// Secure runs the stack on a broker that requires SASL/SCRAM and
	// enforces ACLs (see stack.Secure); LETHE_E2E_SECURE=1 sets it for
	// every stack.
	Secure bool
	// Plaintext keeps the broker plaintext even under LETHE_E2E_SECURE=1,
	// for the tests that drive a tool unable to log in to kfake.
	Plaintext bool
	// Signed runs the stack with signatures required: a random system key
	// (unless SystemKey is given), the relay's RequireSignatures, and a
	// credential for every system the stack's helpers register;
	// LETHE_E2E_SIGNED=1 sets it for every stack.
	Signed bool
	// Unsigned keeps signatures optional even under LETHE_E2E_SIGNED=1,
	// for the tests of what an unsigned system may do; the signed path
	// has tests of its own.
	Unsigned bool
	// Engine, when set, wraps the engine the API starts and signals
	// workflows through, for tests that change what it sends.
	Engine func(api.Engine) api.Engine
	// Signer, when set, signs certificates of erasure, as
	// LETHE_SIGNING_KEY does.
	Signer *certificate.Signer
	// ManualWorker leaves the worker out of the stack, for a test that
	// starts and stops it with stack.startWorker: a request's events then
	// wait in its history until a worker polls again.
	ManualWorker bool
}

func newStack(t testing.TB, opts stackOptions) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, ctx: ctx, Logs: &testenv.LogBuffer{}, Responses: &testenv.LogBuffer{}}
	s.Log = slog.New(slog.NewJSONHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.DB, s.DBURL = testenv.Postgres(t)
	s.Store = registry.New(s.DB)
	s.Secure = opts.Secure || (os.Getenv(secureEnv) == "1" && !opts.Plaintext)
	s.Signed = opts.Signed || (os.Getenv(signedEnv) == "1" && !opts.Unsigned)
	if s.Signed && opts.SystemKey == nil {
		opts.SystemKey = randomSystemKey(t)
	}
	var letheKafka kafkasec.Security
	if s.Secure {
		users := []testenv.KafkaUser{{Name: "lethe", Password: kafkaPassword("lethe"), ACLs: roles.LetheKafkaACLs("lethe")}}
		s.Brokers, _ = testenv.SecureKafka(t, kafkaAdminPassword, users, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic))
		s.KafkaAdmin = testenv.KafkaLogin(t, testenv.KafkaAdmin, kafkaAdminPassword)
		letheKafka = testenv.KafkaLogin(t, "lethe", kafkaPassword("lethe"))
	} else {
		s.Brokers, _ = testenv.Kafka(t, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic))
	}
	if opts.Temporal != nil {
		s.Temporal, s.Namespace = opts.Temporal, opts.Namespace
	} else {
		s.Temporal, s.Namespace = testtemporal.Start(t)
	}
	key := bytes.Repeat([]byte{7}, digest.MinKeyBytes)
	dg, err := digest.New(key)
	if err != nil {
		t.Fatal(err)
	}
	s.Digester = dg

	// The roles get a client of their own on the same connection so that
	// their logs (workflow, activities, SDK) land in the captured buffer too.
	var dc converter.DataConverter
	if opts.Codec != nil {
		dc = codec.DataConverter(opts.Codec)
	}
	s.Metrics = metrics.New()
	wc, err := client.NewClientFromExisting(s.Temporal, client.Options{Namespace: s.Namespace,
		Logger: sdklog.NewStructuredLogger(s.Log), DataConverter: dc, MetricsHandler: s.Metrics.Temporal()})
	if err != nil {
		t.Fatalf("worker client: %v", err)
	}
	// Callers authenticate as in production: Lethe tokens from the
	// registry and JWTs from an OIDC issuer of the stack's own.
	s.Issuer = oidctest.NewIssuer(t)
	// Key rotation is tested mid-request-flow: the key set may be
	// refetched at once rather than once every 10 s.
	oidcV, err := auth.NewOIDCVerifier(auth.OIDCConfig{Issuer: s.Issuer.URL, Audience: oidctest.DefaultAudience,
		KeyRefresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Token = testenv.Token(t, s.Store, "e2e-admin", auth.AllScopes...)

	// The roles run as `lethe api|worker|relay` run them, on the worker's
	// client: with a codec, everything they start and signal is encrypted.
	deps := roles.Deps{
		Store: s.Store, Temporal: wc, Namespace: s.Namespace,
		Brokers: s.Brokers, KafkaSecurity: letheKafka, Partitions: 1,
		Logger: s.Log, Digester: dg,
		Settings: roles.Settings{Policy: opts.Policy, SystemKey: opts.SystemKey, RequireSignatures: s.Signed},
		Signer:   opts.Signer,
		Access:   roles.Access{Auth: &auth.Chain{Tokens: auth.NewTokenVerifier(s.Store), OIDC: oidcV}},
		Metrics:  s.Metrics,
	}
	if opts.Engine != nil {
		deps.Engine = opts.Engine(api.NewTemporalEngine(wc, opts.Policy))
	}
	s.deps = deps
	if !opts.ManualWorker {
		s.goRun("worker", func(ctx context.Context) error { return roles.RunWorker(ctx, deps) })
	}
	s.goRun("relay", func(ctx context.Context) error { return roles.RunRelay(ctx, deps) })
	h, err := roles.APIHandler(deps)
	if err != nil {
		t.Fatalf("api: %v", err)
	}
	hs := httptest.NewServer(h)
	s.URL = hs.URL

	t.Cleanup(func() {
		hs.Close()
		cancel()
		s.wg.Wait()
		wc.Close()
	})
	return s
}

// goRun runs a long-lived part until the stack stops; an early error fails the test.
func (s *stack) goRun(name string, run func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(s.ctx); err != nil && !errors.Is(err, context.Canceled) && s.ctx.Err() == nil {
			s.t.Errorf("%s stopped: %v", name, err)
		}
	}()
}

// startWorker starts a worker of the stack, as `lethe worker` runs, and
// returns a function that stops it and waits until it no longer polls.
// The stack's end stops it too.
func (s *stack) startWorker() (stop func()) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		if err := roles.RunWorker(ctx, s.deps); err != nil && !errors.Is(err, context.Canceled) {
			s.t.Errorf("worker stopped: %v", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// runConnector serves a system's commands with h through the SDK. On a
// secure stack the connector logs in as a principal of its own, created
// with the system's ACLs as an operator would; it verifies commands and
// signs confirmations with the system's credential when it has one.
func (s *stack) runConnector(system string, h connectors.Handler) {
	s.t.Helper()
	cfg := s.connectorConfig(system)
	s.goRun("connector "+system, func(ctx context.Context) error { return connectors.Run(ctx, cfg, h) })
}

// startConnector runs a connector as runConnector does, on cfg (from
// connectorConfig, adjusted by the test), until the returned stop is
// called, which waits until it has stopped: a test restarts a connector
// with it. The stack's end stops it too.
func (s *stack) startConnector(cfg connectors.Config, h connectors.Handler) (stop func()) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		if err := connectors.Run(ctx, cfg, h); err != nil {
			s.t.Errorf("connector %s stopped: %v", cfg.System, err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// connectorConfig is the SDK configuration runConnector gives a system's
// connector.
func (s *stack) connectorConfig(system string) connectors.Config {
	s.t.Helper()
	cfg := connectors.Config{Brokers: s.Brokers, System: system, Logger: s.Log.With("connector", system)}
	if s.Secure {
		if err := testenv.AddKafkaUser(s.ctx, s.Brokers, s.KafkaAdmin, system, kafkaPassword(system),
			roles.ServiceKafkaACLs(system, system)); err != nil {
			s.t.Fatal(err)
		}
		m, err := connectors.SASL(testenv.KafkaMechanism, system, kafkaPassword(system))
		if err != nil {
			s.t.Fatal(err)
		}
		cfg.SASL = m
	}
	if c, ok := s.credential(system); ok {
		cfg.KeyID, cfg.Secret = c.KeyID, c.Secret
	}
	return cfg
}

// grantLethe lets Lethe's principal create and write the topics named
// with prefix, as docs/security.md asks of an operator whose systems
// choose topics of their own; it does nothing on a plaintext stack.
func (s *stack) grantLethe(prefix string) {
	s.t.Helper()
	if !s.Secure {
		return
	}
	var acls []kafkasec.ACL
	for _, op := range []string{"Create", "Write"} {
		acls = append(acls, kafkasec.ACL{Principal: "User:lethe", Resource: kafkasec.ResourceTopic, Name: prefix, Prefixed: true, Operation: op})
	}
	if err := testenv.GrantKafka(s.ctx, s.Brokers, s.KafkaAdmin, acls); err != nil {
		s.t.Fatal(err)
	}
}

// response is one HTTP answer, read whole.
type response = apicall.Response

// do sends one request with a JSON body (nil for none) to the API.
func (s *stack) do(method, path string, body any, header ...string) response {
	s.t.Helper()
	if body == nil {
		return s.doRaw(method, path, "", "", header...)
	}
	j, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.doRaw(method, path, string(j), "application/json", header...)
}

// doRaw sends one request as given and records the answer for the canary scan.
func (s *stack) doRaw(method, path, body, contentType string, header ...string) response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	header = append([]string{"Authorization", "Bearer " + s.Token}, header...)
	r, err := apicall.Do(s.ctx, s.URL, method, path, rd, contentType, header...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	s.Responses.Write(append(r.Body, '\n'))
	return r
}

// putSystem registers a system and fails the test unless it is accepted;
// on a signed stack it then issues the system a credential.
func (s *stack) putSystem(sys lethe.System) {
	s.t.Helper()
	body := map[string]any{"identifiers": sys.Identifiers, "owner": sys.Owner, "description": sys.Description}
	if len(sys.Produces) > 0 {
		body["produces"] = sys.Produces
	}
	if sys.ConfirmWithin != 0 {
		body["confirm_within"] = sys.ConfirmWithin.String()
	}
	if sys.Batch {
		body["batch"] = true
	}
	if len(sys.After) > 0 {
		body["after"] = sys.After
	}
	r := s.do(http.MethodPut, "/v1/systems/"+sys.Name, body)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		s.t.Fatalf("PUT /v1/systems/%s = %d %s", sys.Name, r.Status, r.Body)
	}
	if s.Signed {
		s.issueCredential(sys.Name)
	}
}

// submit posts an erasure and returns the accepted request.
func (s *stack) submit(subject map[string]string, header ...string) lethe.Erasure {
	s.t.Helper()
	r := s.do(http.MethodPost, "/v1/erasures", map[string]any{"subject": subject, "reason": "gdpr_art17", "requested_by": "e2e"}, header...)
	if r.Status != http.StatusAccepted && r.Status != http.StatusOK {
		s.t.Fatalf("POST /v1/erasures = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(s.t, &e)
	return e
}

// await polls a request until it reaches a final status.
func (s *stack) await(id string, within time.Duration) lethe.Erasure {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := s.do(http.MethodGet, "/v1/erasures/"+id, nil)
		if r.Status != http.StatusOK {
			s.t.Fatalf("GET /v1/erasures/%s = %d %s", id, r.Status, r.Body)
		}
		var e lethe.Erasure
		r.Decode(s.t, &e)
		if e.Status.Final() {
			return e
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("request %s still %s after %s: %s", id, e.Status, within, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// systemByName finds one system's progress in a request.
func systemByName(t testing.TB, e lethe.Erasure, name string) lethe.SystemProgress {
	t.Helper()
	for _, p := range e.Systems {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("request %s has no system %q: %+v", e.ID, name, e.Systems)
	return lethe.SystemProgress{}
}

func describe(e lethe.Erasure) string {
	var b strings.Builder
	for _, p := range e.Systems {
		fmt.Fprintf(&b, "%s=%s(%d) ", p.Name, p.Status, p.Records)
	}
	return b.String()
}

// silentLogger discards everything: for parts whose logs no test reads.
// newKeyring is a fresh payload keyring, as LETHE_CODEC_KEYS gives one,
// for the stacks that encrypt what they give Temporal.
func newKeyring(t testing.TB) *codec.Keyring {
	t.Helper()
	spec, err := codec.GenerateKeys("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := codec.ParseKeys(spec)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func silentLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// assertNoValue fails t when any of the identifier values (or markers in
// them) is in a PostgreSQL table of the stack, its logs, or an answer of
// its API.
func (s *stack) assertNoValue(t *testing.T, values ...string) {
	t.Helper()
	for _, table := range allTables(t, s) {
		var dump string
		q := fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %s t`, table)
		if err := s.DB.QueryRowContext(s.ctx, q).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if strings.Contains(dump, v) {
				t.Errorf("table %s holds an identifier value", table)
			}
		}
	}
	for _, v := range values {
		if strings.Contains(s.Logs.String(), v) {
			t.Error("the logs hold an identifier value")
		}
		if strings.Contains(s.Responses.String(), v) {
			t.Error("an API answer holds an identifier value")
		}
	}
}
