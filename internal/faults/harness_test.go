package faults_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/apicall"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// testBudget bounds every wait of one fault test, so that a test whose
// requests never finish fails with what it was waiting for instead of
// hanging the suite.
const testBudget = 60 * time.Second

// stack is one Lethe over fresh dependencies: a PostgreSQL database of its
// own, a kfake broker, an embedded Temporal server, and the API in process.
// The worker and the relay run in process or, where a test must kill them,
// as child processes of the lethe binary.
type stack struct {
	t   *testing.T
	ctx context.Context

	DB      *sql.DB
	DBURL   string
	Store   *registry.Store
	Brokers []string
	Kafka   *kfake.Cluster

	Temporal  *temporalServer
	Client    client.Client
	Namespace string

	URL string
	// Token is a Lethe token with every scope that call sends.
	Token string
	Relay *relay.Relay
	// SignalCalls counts the signals the in-process relay tried to send.
	SignalCalls atomic.Int64
	Logs        *testenv.LogBuffer
	Log         *slog.Logger

	services []*service
	wg       sync.WaitGroup
}

// stackOptions choose what newStack runs in process.
type stackOptions struct {
	// Temporal is the server to use; nil starts an ephemeral one.
	Temporal *temporalServer
	// Worker runs the erasure worker in this process.
	Worker bool
	// Relay runs the confirmation relay in this process.
	Relay bool
	// Engine, when set, wraps the API's workflow engine, for tests that
	// inject a fault at a precise point of a request's creation.
	Engine func(api.Engine) api.Engine
	// Policy is the workflow policy the API starts requests with.
	Policy workflows.Policy
	// Ledger, when set, wraps the in-process worker's ledger, for tests
	// that fail its writes.
	Ledger func(activities.LedgerWriter) activities.LedgerWriter
	// Topics, when set, wraps the in-process worker's topic creator, for
	// tests that refuse to create topics.
	Topics func(activities.TopicEnsurer) activities.TopicEnsurer
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, ctx: ctx, Logs: &testenv.LogBuffer{}}
	s.Log = slog.New(slog.NewJSONHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Lethe's parts share a pool opened as `lethe` opens it; the test reads
	// through a pool of its own, named so that faults can spare it.
	_, s.DBURL = testenv.Postgres(t)
	s.DB = observerPool(t, s.DBURL)
	store, err := registry.Open(ctx, s.DBURL)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	s.Store = store
	s.Brokers, s.Kafka = testenv.Kafka(t, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic))
	s.Temporal = opts.Temporal
	if s.Temporal == nil {
		s.Temporal = startTemporal(t, devstack.TemporalConfig{Address: "127.0.0.1:0", Ephemeral: true})
	}
	s.Namespace = s.Temporal.Namespace()
	s.Client = s.dial(t)
	dg, err := digest.New(subjectKey)
	if err != nil {
		t.Fatal(err)
	}

	if opts.Worker {
		var ledger activities.LedgerWriter = s.Store
		if opts.Ledger != nil {
			ledger = opts.Ledger(ledger)
		}
		var topics activities.TopicEnsurer = roles.Topics{Brokers: s.Brokers, Partitions: testenv.KafkaPartitions}
		if opts.Topics != nil {
			topics = opts.Topics(topics)
		}
		s.startWorker(ledger, topics)
	}
	if opts.Relay {
		r, err := relay.New(relay.Config{Brokers: s.Brokers, Logger: s.Log}, &countingSignaler{c: s.Client, calls: &s.SignalCalls}, s.Store)
		if err != nil {
			t.Fatalf("relay: %v", err)
		}
		s.Relay = r
		s.goRun("relay", r.Run)
	}
	var engine api.Engine = api.NewTemporalEngine(s.Client, opts.Policy)
	if opts.Engine != nil {
		engine = opts.Engine(engine)
	}
	s.Token = testenv.Token(t, s.Store, "faults-admin", auth.AllScopes...)
	srv, err := api.New(api.Config{
		Store:    s.Store,
		Engine:   engine,
		Topics:   roles.Topics{Brokers: s.Brokers, Partitions: testenv.KafkaPartitions},
		Digester: dg,
		Logger:   s.Log,
		Auth:     &auth.Chain{Tokens: auth.NewTokenVerifier(s.Store)},
	})
	if err != nil {
		t.Fatalf("api: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	s.URL = hs.URL
	// Cleanups run last-in first-out: the parts stop before the server,
	// the broker and the database they use.
	t.Cleanup(func() {
		cancel()
		hs.Close()
		s.wg.Wait()
		if t.Failed() {
			t.Logf("the stack's logs:\n%s", tail(s.Logs.String(), 2000000))
		}
	})
	return s
}

// observerApp is the application_name of the test's own connections.
const observerApp = "lethe-faults-observer"

// observerPool opens the test's own pool on the database at dbURL.
func observerPool(t *testing.T, dbURL string) *sql.DB {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", observerApp)
	u.RawQuery = q.Encode()
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// cutConnections terminates every backend of the test's database but the
// test's own, waiting for each to end, and returns how many it ended.
func (s *stack) cutConnections(ctx context.Context) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
		FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> $1`,
		observerApp).Scan(&n)
	return n, err
}

// dial opens a client of the stack's Temporal server, closed with the test.
func (s *stack) dial(t *testing.T) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  s.Temporal.Address(),
		Namespace: s.Namespace,
		Logger:    sdklog.NewStructuredLogger(s.Log),
	})
	if err != nil {
		t.Fatalf("dial temporal: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// startWorker runs the erasure worker in this process, wired as `lethe
// worker` wires it, over ledger and topics.
func (s *stack) startWorker(ledger activities.LedgerWriter, topics activities.TopicEnsurer) {
	writer := kafkax.NewWriter(s.Brokers)
	w := worker.New(s.Client, workflows.TaskQueue, worker.Options{})
	workflows.Register(w, &activities.Activities{Registry: s.Store, Ledger: ledger, Publisher: writer,
		Topics: topics})
	if err := w.Start(); err != nil {
		s.t.Fatalf("start worker: %v", err)
	}
	s.t.Cleanup(func() {
		w.Stop()
		writer.Close()
	})
}

// countingSignaler signals through c and counts the attempts.
type countingSignaler struct {
	c     client.Client
	calls *atomic.Int64
}

func (cs *countingSignaler) SignalWorkflow(ctx context.Context, workflowID, runID, name string, arg any) error {
	cs.calls.Add(1)
	return cs.c.SignalWorkflow(ctx, workflowID, runID, name, arg)
}

// goRun runs a long-lived part until the stack stops; an early error fails
// the test.
func (s *stack) goRun(name string, run func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(s.ctx); err != nil && !errors.Is(err, context.Canceled) && s.ctx.Err() == nil {
			s.t.Errorf("%s stopped: %v", name, err)
		}
	}()
}

// deadline is a context for the waits of one test, ending after testBudget.
func (s *stack) deadline() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, testBudget)
}

// subjectKey keys the stack's identifier digests, in process and in the
// child processes alike.
var subjectKey = bytes.Repeat([]byte{7}, digest.MinKeyBytes)

// env is the environment of a child lethe process attached to this stack,
// with Temporal reached at temporalAddr (the server, or a proxy before it).
func (s *stack) env(temporalAddr string) []string {
	return []string{
		"LETHE_DATABASE_URL=" + s.DBURL,
		"LETHE_KAFKA_BROKERS=" + strings.Join(s.Brokers, ","),
		"TEMPORAL_ADDRESS=" + temporalAddr,
		"TEMPORAL_NAMESPACE=" + s.Namespace,
		"LETHE_HEALTH_ADDR=127.0.0.1:0",
		"LETHE_LOG_FORMAT=json",
		"LETHE_LOG_LEVEL=info",
		fmt.Sprintf("LETHE_TOPIC_PARTITIONS=%d", testenv.KafkaPartitions),
		// The stack's own key, so that a child worker matches holds by the
		// digests the API recorded.
		"LETHE_SUBJECT_KEY=" + hex.EncodeToString(subjectKey),
	}
}

// temporalServer is the embedded Temporal server of `lethe dev`, which a
// test may stop and start again on the same data folder and port.
type temporalServer struct {
	t   *testing.T
	cfg devstack.TemporalConfig

	mu  sync.Mutex
	srv *devstack.Temporal
}

func startTemporal(t *testing.T, cfg devstack.TemporalConfig) *temporalServer {
	t.Helper()
	ts := &temporalServer{t: t, cfg: cfg}
	ts.Start()
	t.Cleanup(ts.Stop)
	return ts
}

// Start starts the server; after a Stop it resumes from the same folder,
// on the same address when the configuration named a port.
func (ts *temporalServer) Start() {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := devstack.StartTemporal(ctx, ts.cfg)
	if err != nil {
		ts.t.Fatalf("start temporal: %v", err)
	}
	ts.mu.Lock()
	ts.srv = srv
	ts.mu.Unlock()
}

// Stop stops the server and waits for it.
func (ts *temporalServer) Stop() {
	ts.mu.Lock()
	srv := ts.srv
	ts.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Address is where clients dial the server.
func (ts *temporalServer) Address() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.srv.Address()
}

// Namespace is the server's namespace.
func (ts *temporalServer) Namespace() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.srv.Namespace()
}

// response is one HTTP answer, read whole.
type response = apicall.Response

// call sends one request to the API; a transport failure is an error rather
// than a failed test, for callers that expect the API to struggle.
func (s *stack) call(method, path string, body any, header ...string) (response, error) {
	rd, contentType, err := apicall.JSON(body)
	if err != nil {
		return response{}, err
	}
	header = append([]string{"Authorization", "Bearer " + s.Token}, header...)
	return apicall.Do(s.ctx, s.URL, method, path, rd, contentType, header...)
}

// do is call for requests that must reach the API.
func (s *stack) do(method, path string, body any, header ...string) response {
	s.t.Helper()
	r, err := s.call(method, path, body, header...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// putSystem registers a system that erases by user_id and email and, unless
// svc is held, runs svc as its connector.
func (s *stack) putSystem(svc *service) {
	s.t.Helper()
	r := s.do(http.MethodPut, "/v1/systems/"+svc.name, map[string]any{"identifiers": subjectTypes})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		s.t.Fatalf("PUT /v1/systems/%s = %d %s", svc.name, r.Status, r.Body)
	}
	s.services = append(s.services, svc)
	if !svc.held {
		s.runService(svc)
	}
}

// release starts a held system's connector: the commands that waited for it
// on Kafka are erased and confirmed.
func (s *stack) release(svc *service) {
	if !svc.held {
		s.t.Fatalf("system %s is not held", svc.name)
	}
	s.runService(svc)
}

// runService runs svc as a connector through the SDK until the stack stops.
func (s *stack) runService(svc *service) {
	cfg := connectors.Config{Brokers: s.Brokers, System: svc.name, Logger: s.Log.With("connector", svc.name)}
	s.goRun("connector "+svc.name, func(ctx context.Context) error { return connectors.Run(ctx, cfg, svc) })
}

// published counts the messages on a topic: a system's name for its
// commands, or a topic's own name.
func (s *stack) published(topic string) int64 {
	if !strings.Contains(topic, ".") {
		topic = wire.DefaultTopic(topic)
	}
	var n int64
	for _, p := range s.Kafka.PartitionInfos(topic) {
		n += p.HighWatermark - p.LogStartOffset
	}
	return n
}

// subjectTypes are the identifier types of every test subject and system.
var subjectTypes = []string{"email", "user_id"}

// subject is the n-th synthetic subject of a test.
func subject(test string, n int) map[string]string {
	return map[string]string{
		"user_id": fmt.Sprintf("u-%s-%d", test, n),
		"email":   fmt.Sprintf("%s-%d@example.org", test, n),
	}
}

// submit posts an erasure and fails the test unless it is accepted.
func (s *stack) submit(subj map[string]string) lethe.Erasure {
	s.t.Helper()
	r := s.do(http.MethodPost, "/v1/erasures", map[string]any{"subject": subj, "reason": "gdpr_art17"})
	if r.Status != http.StatusAccepted {
		s.t.Fatalf("POST /v1/erasures = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(s.t, &e)
	return e
}

// eventually polls cond until it holds or ctx ends, then fails the test
// saying what never happened.
func eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ledgerStatus reads a request's status straight from PostgreSQL.
func (s *stack) ledgerStatus(ctx context.Context, id string) lethe.RequestStatus {
	var st lethe.RequestStatus
	err := s.DB.QueryRowContext(ctx, `SELECT status FROM erasure_requests WHERE id = $1`, id).Scan(&st)
	if err != nil && !errors.Is(err, sql.ErrNoRows) && ctx.Err() == nil {
		s.t.Errorf("read status of %s: %v", id, err)
	}
	return st
}

// awaitFinal waits until every request is in a final status in the ledger.
func (s *stack) awaitFinal(ctx context.Context, ids ...string) {
	s.t.Helper()
	for _, id := range ids {
		eventually(s.t, ctx, "request "+id+" is final in the ledger", func() bool {
			return s.ledgerStatus(ctx, id).Final()
		})
	}
}

// countFinal counts the requests already final in the ledger.
func (s *stack) countFinal(ctx context.Context, ids []string) int {
	n := 0
	for _, id := range ids {
		if s.ledgerStatus(ctx, id).Final() {
			n++
		}
	}
	return n
}

// service is a fake system holding one record per identifier of every
// subject. Each call of its handler is a real erase, counted per request,
// system and identifier: a second erase of the same thing is the failure
// the suite exists to catch. A held service has no connector running until
// the test releases it, so its commands wait on Kafka unanswered.
type service struct {
	name string
	held bool

	mu       sync.Mutex
	erased   map[eraseKey]int
	commands map[string]string // request id → command id
}

type eraseKey struct{ request, system, idType, value string }

var _ connectors.Handler = (*service)(nil)

// newService is a system whose connector confirms every command at once;
// a held one runs only once released.
func newService(name string, held bool) *service {
	return &service{name: name, held: held, erased: map[eraseKey]int{}, commands: map[string]string{}}
}

func (svc *service) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if _, ok := svc.commands[req.RequestID]; !ok {
		svc.commands[req.RequestID] = req.CommandID
	}
	for _, id := range req.Identifiers {
		svc.erased[eraseKey{req.RequestID, req.System, id.Type, id.Value}]++
	}
	return connectors.Result{Outcome: wire.OutcomeErased, Records: int64(len(req.Identifiers))}, nil
}

// commandOf is the command id the service received for a request.
func (svc *service) commandOf(requestID string) string {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.commands[requestID]
}

// seen counts the requests whose command reached the service.
func (svc *service) seen() int {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return len(svc.commands)
}

// erasures returns how often the service erased each identifier of a
// request.
func (svc *service) erasures(requestID string) map[string]int {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	out := map[string]int{}
	for k, n := range svc.erased {
		if k.request == requestID {
			out[k.idType] += n
		}
	}
	return out
}

// expectation is how one request must have ended.
type expectation struct {
	id     string
	status lethe.RequestStatus
	// erased are the systems that must have erased both identifiers once
	// and confirmed once.
	erased []string
	// temporal says the request ran on the stack's Temporal server, whose
	// workflow must have closed once.
	temporal bool
}

// verify checks that every request reached its final state exactly once:
// the ledger's status, its subject digests and received event, one final
// audit event, each system erased, confirmed and counted once, the workflow
// closed once; and that across the whole test no service erased anything
// twice or for a request the ledger does not know.
func (s *stack) verify(ctx context.Context, want ...expectation) {
	s.t.Helper()
	for _, w := range want {
		s.verifyRequest(ctx, w)
	}
	s.verifyServices(ctx)
}

func (s *stack) verifyRequest(ctx context.Context, w expectation) {
	t := s.t
	t.Helper()
	e, err := s.Store.GetErasure(ctx, w.id)
	if err != nil {
		t.Errorf("request %s: %v", w.id, err)
		return
	}
	if e.Status != w.status || e.CompletedAt == nil {
		t.Errorf("request %s: status %s (completed_at %v), want %s", w.id, e.Status, e.CompletedAt, w.status)
	}
	digests, err := s.Store.SubjectDigests(ctx, w.id)
	if err != nil || len(digests) != len(subjectTypes) {
		t.Errorf("request %s: %d subject digests (%v), want %d", w.id, len(digests), err, len(subjectTypes))
	}
	events, err := s.Store.Audit(ctx, w.id)
	if err != nil {
		t.Errorf("request %s: audit: %v", w.id, err)
		return
	}
	count := func(kind lethe.AuditKind, system string) int {
		n := 0
		for _, ev := range events {
			if ev.Kind == kind && ev.System == system {
				n++
			}
		}
		return n
	}
	if n := count(lethe.AuditReceived, ""); n != 1 {
		t.Errorf("request %s: %d received events, want 1", w.id, n)
	}
	finals := count(lethe.AuditCompleted, "") + count(lethe.AuditFailed, "") + count(lethe.AuditCanceled, "")
	wantKind := map[lethe.RequestStatus]lethe.AuditKind{
		lethe.RequestCompleted: lethe.AuditCompleted, lethe.RequestFailed: lethe.AuditFailed, lethe.RequestCanceled: lethe.AuditCanceled,
	}[w.status]
	if finals != 1 || count(wantKind, "") != 1 {
		t.Errorf("request %s: %d final audit events (%d %s), want exactly one %s\n%s",
			w.id, finals, count(wantKind, ""), wantKind, wantKind, auditText(events))
	}
	for _, name := range w.erased {
		var p *lethe.SystemProgress
		for i := range e.Systems {
			if e.Systems[i].Name == name {
				p = &e.Systems[i]
			}
		}
		switch {
		case p == nil:
			t.Errorf("request %s: no ledger row for system %s", w.id, name)
		case p.Status != lethe.SystemErased || p.Attempts != 1 || p.Records != int64(len(subjectTypes)) || p.ConfirmedAt == nil:
			t.Errorf("request %s, system %s: %s, %d attempts, %d records; want erased, 1 attempt, %d records",
				w.id, name, p.Status, p.Attempts, p.Records, len(subjectTypes))
		}
		if n := count(lethe.AuditConfirmed, name); n != 1 {
			t.Errorf("request %s, system %s: %d confirmed events, want 1\n%s", w.id, name, n, auditText(events))
		}
		if n := count(lethe.AuditDispatched, name); n != 1 {
			t.Errorf("request %s, system %s: %d dispatched events, want 1\n%s", w.id, name, n, auditText(events))
		}
		for _, svc := range s.services {
			if svc.name != name {
				continue
			}
			got := svc.erasures(w.id)
			for _, typ := range subjectTypes {
				if got[typ] != 1 {
					t.Errorf("request %s: system %s erased its %s %d times, want once", w.id, name, typ, got[typ])
				}
			}
		}
	}
	if len(e.Systems) != len(w.erased) {
		t.Errorf("request %s: %d systems in the ledger, want %d", w.id, len(e.Systems), len(w.erased))
	}
	if w.temporal {
		s.verifyWorkflow(ctx, w.id)
	}
}

// verifyWorkflow checks that the request's workflow ran once and closed
// completed.
func (s *stack) verifyWorkflow(ctx context.Context, id string) {
	t := s.t
	t.Helper()
	wid := workflows.ErasureWorkflowID(id)
	// The ledger is final a moment before the workflow closes: the last
	// ledger write happens inside its last task.
	if err := s.Client.GetWorkflow(ctx, wid, "").Get(ctx, nil); err != nil {
		t.Errorf("workflow %s: %v", wid, err)
	}
	d, err := s.Client.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		t.Errorf("describe workflow %s: %v", wid, err)
		return
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("workflow %s is %s, want completed", wid, st)
	}
	// Visibility is written asynchronously: wait until it shows the run.
	var runs int
	for range 100 {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.Namespace, Query: fmt.Sprintf("WorkflowId = '%s'", wid)})
		if err != nil {
			t.Errorf("list workflow %s: %v", wid, err)
			return
		}
		runs = len(resp.GetExecutions())
		if runs > 0 && resp.GetExecutions()[0].GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if runs != 1 {
		t.Errorf("workflow %s has %d executions, want 1", wid, runs)
	}
}

// verifyServices checks every erase the services did: none twice, none for
// a request the ledger does not hold.
func (s *stack) verifyServices(ctx context.Context) {
	t := s.t
	t.Helper()
	for _, svc := range s.services {
		svc.mu.Lock()
		keys := make([]eraseKey, 0, len(svc.erased))
		for k, n := range svc.erased {
			if n > 1 {
				t.Errorf("system %s erased the %s of request %s %d times", k.system, k.idType, k.request, n)
			}
			keys = append(keys, k)
		}
		svc.mu.Unlock()
		for _, k := range keys {
			var known bool
			if err := s.DB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM erasure_requests WHERE id = $1)`, k.request).Scan(&known); err != nil {
				t.Errorf("look up request %s: %v", k.request, err)
			} else if !known {
				t.Errorf("system %s erased the %s of request %s, which the ledger does not hold", k.system, k.idType, k.request)
			}
		}
	}
}

// auditText lists events for a failure message.
func auditText(events []lethe.AuditEvent) string {
	var b strings.Builder
	for _, ev := range events {
		fmt.Fprintf(&b, "  %s %s attempt=%d %q\n", ev.Kind, ev.System, ev.Attempt, ev.Detail)
	}
	return b.String()
}

// ids returns the ids of requests.
func ids(es []lethe.Erasure) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// expectCompleted is the expectation of requests that every named system
// erased, on the stack's Temporal server.
func expectCompleted(es []lethe.Erasure, systems ...string) []expectation {
	out := make([]expectation, len(es))
	for i, e := range es {
		out[i] = expectation{id: e.ID, status: lethe.RequestCompleted, erased: systems, temporal: true}
	}
	return out
}
