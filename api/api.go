// Package api is Lethe's HTTP API: it validates what clients send, turns an
// erasure request into keyed digests for the ledger and a workflow input for
// Temporal, and answers in the JSON shapes of the public contract. Errors from
// every layer arrive as *lethe.Error and are turned into HTTP statuses in one
// place (errors.go), so no other package knows about status codes.
package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/workflows"
)

// Store is what the API needs from the registry and the request ledger.
// *registry.Store implements it; tests use a fake.
type Store interface {
	PutSystem(ctx context.Context, sys lethe.System, w registry.SystemWrite) (stored lethe.System, created bool, err error)
	GetSystem(ctx context.Context, name string) (lethe.System, error)
	// SystemStats reads an active system's recent health from the ledger.
	SystemStats(ctx context.Context, name string) (lethe.SystemStats, error)
	ListSystems(ctx context.Context) ([]lethe.System, error)
	RetireSystem(ctx context.Context, name, actor string) error
	// PlanErasure previews what a request for a subject with these
	// identifier types (and, when given, these digests, for the legal
	// holds) would dispatch; it writes nothing.
	PlanErasure(ctx context.Context, types []string, subject []lethe.SubjectDigest, at time.Time) (lethe.ErasurePlan, error)
	// CreateErasure records a new request, calling start before it commits
	// so that a request is never in the ledger without its workflow. With an
	// idempotency key already used for the same body it returns the existing
	// request and created false, without calling start.
	CreateErasure(ctx context.Context, in registry.NewErasure, start func(ctx context.Context) error) (lethe.Erasure, bool, error)
	GetErasure(ctx context.Context, id string) (lethe.Erasure, error)
	ListErasures(ctx context.Context, f registry.ErasureFilter) ([]lethe.Erasure, string, error)
	// ExtendErasure moves an open request's deadline once, calling notify
	// before it commits so the workflow learns the dates the ledger keeps.
	ExtendErasure(ctx context.Context, id string, by time.Duration, reason, actor string,
		notify func(ctx context.Context, ext registry.Extension) error) (lethe.Erasure, error)
	// PutHold places or replaces a legal hold; LiftHold ends one and names
	// the open requests it kept systems of.
	PutHold(ctx context.Context, h registry.NewHold) (lethe.Hold, bool, error)
	LiftHold(ctx context.Context, id, actor string) (lethe.Hold, []string, error)
	// RetryErasure reopens a request's failed systems (those named, or
	// all), calling notify with them before it commits; see
	// registry.Store.RetryErasure.
	RetryErasure(ctx context.Context, id, actor string, systems []string,
		notify func(ctx context.Context, systems []string) error) (lethe.Erasure, error)
	// FailedErasures and BulkRetryOnce serve POST /v1/erasures/retry; see
	// the registry.Store methods.
	FailedErasures(ctx context.Context, f registry.RetryFilter) ([]string, bool, error)
	BulkRetryOnce(ctx context.Context, key, hash, actor string,
		run func(ctx context.Context) (json.RawMessage, error)) (json.RawMessage, bool, error)
	// AuditCancelRequest records who asked to cancel a request.
	AuditCancelRequest(ctx context.Context, id, actor string) error
	GetHold(ctx context.Context, id string) (lethe.Hold, error)
	ListHolds(ctx context.Context, activeOnly bool) ([]lethe.Hold, error)
	// ListSuppressions pages through the digests of erased subjects, for
	// services restoring a backup; see registry.Store.ListSuppressions for
	// which requests count and why a cursor never skips an entry.
	ListSuppressions(ctx context.Context, f registry.SuppressionFilter) (registry.SuppressionPage, error)
	Ping(ctx context.Context) error
	// IssueCredential gives an active system a new signing credential,
	// cutting its older ones back to expire after overlap, and returns the
	// new key id (see registry.Store.IssueCredential).
	IssueCredential(ctx context.Context, system, actor string, overlap time.Duration) (string, error)
	// Certificates of erasure are read, built and stored through the
	// methods of certificate.Store.
	certificate.Store

	// CreateBatch records a new bulk erasure, calling start before it
	// commits, as CreateErasure does a request: a batch is never in the
	// ledger without its workflow. With an idempotency key already used
	// for the same submission it returns the existing batch and created
	// false, without calling start; with another submission, a
	// KindConflict "idempotency_conflict".
	CreateBatch(ctx context.Context, in registry.NewBatch, start func(ctx context.Context) error) (lethe.Batch, bool, error)
	// GetBatch reads a batch's progress; an unknown id is a KindNotFound
	// "batch_not_found".
	GetBatch(ctx context.Context, id string) (lethe.Batch, error)
	// ListBatches and ListBatchSubjects page newest batches first and a
	// batch's subjects in item order; nextCursor is empty on the last page.
	ListBatches(ctx context.Context, f registry.BatchFilter) ([]lethe.Batch, string, error)
	ListBatchSubjects(ctx context.Context, f registry.BatchSubjectFilter) ([]lethe.BatchSubject, string, error)
	// RetryBatch reopens a batch's failed subjects (for the systems named,
	// or all), calling notify before it commits so that the workflow hears
	// of every retry the ledger records; nothing failed is a KindConflict
	// "nothing_to_retry".
	RetryBatch(ctx context.Context, id, actor string, systems []string,
		notify func(ctx context.Context) error) (lethe.Batch, error)
	// AuditBatchCancel records who asked to cancel a batch; a finished one
	// is a KindConflict "already_finished".
	AuditBatchCancel(ctx context.Context, id, actor string) error
	// BatchLeaves reads the certificate leaf of every subject of a batch,
	// in item order, which is the order of its Merkle tree.
	BatchLeaves(ctx context.Context, id string) ([]certificate.Leaf, error)
	// BatchSubjectByDigest finds the item of the batch's subject that has
	// an identifier with this keyed digest; none is a KindNotFound
	// "subject_not_found".
	BatchSubjectByDigest(ctx context.Context, id, digest string) (item int, err error)
	// BatchCertificateFacts reads what a batch certificate states; a batch
	// still open is a KindConflict "not_finished".
	BatchCertificateFacts(ctx context.Context, id string) (certificate.BatchFacts, error)
	// GetBatchCertificate returns the batch certificate stored, found false
	// when none is; PutBatchCertificate stores one unless one is already.
	GetBatchCertificate(ctx context.Context, id string) ([]byte, bool, error)
	PutBatchCertificate(ctx context.Context, id string, signed []byte) error
}

// Engine starts and cancels the durable execution of erasure requests. The
// Temporal implementation is NewTemporalEngine; tests use a fake.
type Engine interface {
	// StartErasure starts the request's workflow; starting it again while it
	// runs is not an error.
	StartErasure(ctx context.Context, in workflows.ErasureInput) error
	// CancelErasure asks the request's workflow to stop and returns once it
	// has closed as canceled. A workflow that closed otherwise, or is no
	// longer known, answers a KindConflict "already_finished" error.
	CancelErasure(ctx context.Context, requestID string) error
	// ExtendErasure tells the request's workflow its new deadline and
	// target; a workflow no longer running answers "already_finished".
	ExtendErasure(ctx context.Context, requestID string, ext registry.Extension) error
	// RetryErasure gives the failed systems the order names (all when it
	// names none) a fresh attempt budget, starting the request's workflow
	// again if it had closed. A workflow Temporal no longer knows answers
	// "workflow_gone"; a running one too old to take retries,
	// "retry_unsupported".
	RetryErasure(ctx context.Context, requestID string, order workflows.RetrySignal) error
	// HoldsLifted tells the request's workflow that a hold keeping some of
	// its systems was lifted; a workflow no longer running is no error.
	HoldsLifted(ctx context.Context, requestID string) error
	// ErasureProgress asks the request's running workflow where it
	// stands: its status and systems, without identifier values.
	ErasureProgress(ctx context.Context, requestID string) (lethe.Erasure, error)

	// StartBatch starts a batch's workflow, then hands it the chunks of
	// subjects in order, one signal each. Starting it again while it runs
	// is not an error, and a chunk handed twice is the same chunk.
	StartBatch(ctx context.Context, in workflows.BatchInput, chunks []workflows.BatchChunk) error
	// CancelBatch asks the batch's workflow to stop and returns once it has
	// closed as canceled; otherwise, as CancelErasure, "already_finished".
	CancelBatch(ctx context.Context, batchID string) error
	// RetryBatch hands the retry order to the batch's running workflow; a
	// workflow no longer running answers a KindConflict "workflow_gone".
	RetryBatch(ctx context.Context, batchID string, order workflows.RetrySignal) error
}

// TopicEnsurer creates Kafka topics that do not exist yet, so that a system's
// command topic is there before its first command and before the PUT that
// registered it has answered.
type TopicEnsurer interface {
	EnsureTopics(ctx context.Context, topics ...string) error
}

// Config is what a Server is built from.
type Config struct {
	Store    Store
	Engine   Engine
	Topics   TopicEnsurer
	Digester *digest.Digester
	// Logger receives one line per request and the causes of internal
	// errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DefaultDeadline is the window a new request gets; zero means
	// lethe.DefaultDeadline.
	DefaultDeadline time.Duration
	// Policies are named windows a request may choose with "policy" (for
	// example ccpa: 45 days); nil means DefaultPolicies.
	Policies map[string]time.Duration
	// TargetBefore puts a request's internal target this long before its
	// deadline; zero means lethe.DefaultTargetBefore. A window shorter
	// than twice it gets its target half-way.
	TargetBefore time.Duration
	// Ready, when set, adds readiness checks (Kafka, Temporal) to the
	// database ping behind GET /readyz.
	Ready func(ctx context.Context) error
	// Signer signs certificates of erasure (LETHE_SIGNING_KEY). Without it
	// the API still serves certificates already stored, and answers 503
	// signing_key_missing for the others.
	Signer *certificate.Signer
	// RetiredKeys are former signing keys (LETHE_SIGNING_KEYS_RETIRED),
	// listed by GET /v1/keys so that certificates they signed still verify.
	RetiredKeys []ed25519.PublicKey
	// Auth verifies the bearer credential of every route but the open ones
	// (health, readiness, the OpenAPI document and the signing keys).
	// Validate refuses a config without it unless AuthOff says so.
	Auth auth.Verifier
	// AuthOff serves every route to anyone, recording the actor as
	// Anonymous (LETHE_AUTH=off). It exists for a private test rig only:
	// it must be asked for, never a default.
	AuthOff bool
	// Limiter bounds each principal's request rate; nil leaves it unbounded.
	Limiter RateLimiter
	// AllowedHosts, when set, are the only Host header names answered (in
	// lower case, without port); others get 421. A loopback API sets
	// LoopbackHosts so that a web page cannot drive it by DNS rebinding.
	AllowedHosts []string
	// SystemKey derives the secrets of systems' signing credentials
	// (LETHE_SYSTEM_KEY). Without it POST /v1/systems/{name}/credentials
	// answers 503 system_key_missing.
	SystemKey *credential.Master
	// CredentialOverlap is how long a system's older credentials stay
	// valid once a new one is issued; zero means credential.DefaultOverlap.
	CredentialOverlap time.Duration
	// Requests, when set, observes every answer for /metrics.
	Requests RequestObserver
	// RequireSignatures refuses unsigned pull-mode confirmations of every
	// system, as the relay does on Kafka (LETHE_REQUIRE_SIGNATURES).
	RequireSignatures bool
}

// RequestObserver records how long the API took to answer, by route
// pattern ("GET /v1/erasures/{id}", "unmatched" when none matched) and
// status code; never by path, which holds ids. internal/metrics.Metrics
// implements it.
type RequestObserver interface {
	ObserveRequest(route string, code int, d time.Duration)
}

// Validate reports the first missing dependency or bad setting.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("api config: store is required")
	case c.Engine == nil:
		return errors.New("api config: engine is required")
	case c.Topics == nil:
		return errors.New("api config: topic ensurer is required")
	case c.Digester == nil:
		return errors.New("api config: digester is required")
	case c.Auth == nil && !c.AuthOff:
		return errors.New("api config: an authentication verifier is required (or AuthOff, on purpose)")
	case c.Auth != nil && c.AuthOff:
		return errors.New("api config: AuthOff and a verifier contradict each other")
	case c.DefaultDeadline < 0:
		return errors.New("api config: default deadline must not be negative")
	case c.TargetBefore < 0:
		return errors.New("api config: target margin must not be negative")
	case c.CredentialOverlap < 0:
		return errors.New("api config: credential overlap must not be negative")
	}
	for name, d := range c.Policies {
		if !policyNameRe.MatchString(name) || d <= 0 {
			return fmt.Errorf("api config: policy %q needs a name matching %s and a positive window", name, policyNameRe)
		}
	}
	return nil
}

// Server holds the API's dependencies and serves its routes.
type Server struct {
	store    Store
	engine   Engine
	topics   TopicEnsurer
	digester *digest.Digester
	log      *slog.Logger
	now      func() time.Time
	deadline time.Duration
	policies map[string]time.Duration
	margin   time.Duration
	ready    func(ctx context.Context) error
	issuer   *certificate.Issuer
	keys     certificate.KeySet
	auth     auth.Verifier
	authOff  bool
	limiter  RateLimiter
	hosts    []string
	mux      *http.ServeMux
	// table maps each mux pattern to its route, so that the guard knows
	// the scope of the route a request matched.
	table map[string]route

	systemKey *credential.Master
	overlap   time.Duration
	requests  RequestObserver

	// pullStore and pullEngine serve pull mode when the Store and the
	// Engine implement them; requireSigs is Config.RequireSignatures.
	pullStore   PullStore
	pullEngine  PullEngine
	requireSigs bool
}

// New builds a Server from cfg, filling in the optional settings.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		store:    cfg.Store,
		engine:   cfg.Engine,
		topics:   cfg.Topics,
		digester: cfg.Digester,
		log:      cfg.Logger,
		now:      cfg.Now,
		deadline: cfg.DefaultDeadline,
		policies: cfg.Policies,
		margin:   cfg.TargetBefore,
		ready:    cfg.Ready,
		auth:     cfg.Auth,
		authOff:  cfg.AuthOff,
		limiter:  cfg.Limiter,
		mux:      http.NewServeMux(),
		table:    map[string]route{},

		systemKey: cfg.SystemKey,
		overlap:   cfg.CredentialOverlap,
		requests:  cfg.Requests,

		requireSigs: cfg.RequireSignatures,
	}
	s.pullStore, _ = cfg.Store.(PullStore)
	s.pullEngine, _ = cfg.Engine.(PullEngine)
	for _, h := range cfg.AllowedHosts {
		s.hosts = append(s.hosts, strings.ToLower(h))
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.deadline == 0 {
		s.deadline = lethe.DefaultDeadline
	}
	if s.policies == nil {
		s.policies = DefaultPolicies
	}
	if s.margin == 0 {
		s.margin = lethe.DefaultTargetBefore
	}
	if s.overlap == 0 {
		s.overlap = credential.DefaultOverlap
	}
	s.issuer = &certificate.Issuer{Store: cfg.Store, Signer: cfg.Signer, Now: s.now}
	s.keys = certificate.Keys(cfg.Signer, cfg.RetiredKeys)
	for _, rt := range s.routes() {
		if rt.scope == "" && !rt.open {
			return nil, fmt.Errorf("api: route %s has no scope and is not open", rt.pattern)
		}
		s.mux.HandleFunc(rt.pattern, rt.handler)
		s.table[rt.pattern] = rt
	}
	return s, nil
}

// route is one entry of the API: its mux pattern, the scope a caller needs,
// and its handler. A route is open (served without a credential) only when
// it says so; one without a scope that is not open is refused by New, so a
// forgotten scope can never open a door.
type route struct {
	pattern string
	scope   auth.Scope
	open    bool
	handler http.HandlerFunc
}

func (s *Server) openRoute(pattern string, h http.HandlerFunc) route {
	return route{pattern: pattern, open: true, handler: h}
}

// routes is the one table of what the API serves; Routes and the OpenAPI
// test read it too, so the document cannot drift from the mux.
func (s *Server) routes() []route {
	return []route{
		{"PUT /v1/systems/{name}", auth.SystemsWrite, false, s.putSystem},
		{"GET /v1/systems/{name}", auth.SystemsRead, false, s.getSystem},
		{"GET /v1/systems/{name}/stats", auth.SystemsRead, false, s.systemStats},
		{"DELETE /v1/systems/{name}", auth.SystemsWrite, false, s.deleteSystem},
		{"GET /v1/systems", auth.SystemsRead, false, s.listSystems},
		{"POST /v1/systems/{name}/credentials", auth.SystemsWrite, false, s.issueCredential},
		{"GET /v1/systems/{name}/commands", connectorScope, false, s.leaseCommands},
		{"POST /v1/systems/{name}/confirmations", connectorScope, false, s.postConfirmations},
		{"POST /v1/erasures", auth.ErasuresWrite, false, s.createErasure},
		{"GET /v1/erasures/{id}", auth.ErasuresRead, false, s.getErasure},
		{"GET /v1/erasures", auth.ErasuresRead, false, s.listErasures},
		{"POST /v1/erasures/{id}/cancel", auth.ErasuresAdmin, false, s.cancelErasure},
		{"POST /v1/erasures/{id}/extend", auth.ErasuresAdmin, false, s.extendErasure},
		{"POST /v1/erasures/{id}/retry", auth.ErasuresAdmin, false, s.retryErasure},
		{"POST /v1/erasures/retry", auth.ErasuresAdmin, false, s.bulkRetry},
		{"POST /v1/erasures/plan", auth.ErasuresRead, false, s.planErasure},
		{"PUT /v1/holds/{id}", auth.HoldsWrite, false, s.putHold},
		{"GET /v1/holds/{id}", auth.HoldsRead, false, s.getHold},
		{"DELETE /v1/holds/{id}", auth.HoldsWrite, false, s.liftHold},
		{"GET /v1/holds", auth.HoldsRead, false, s.listHolds},
		{"GET /v1/erasures/{id}/certificate", auth.CertificatesRead, false, s.getCertificate},
		{"GET /v1/suppressions", auth.SuppressionsRead, false, s.listSuppressions},
		{"POST /v1/erasure-batches", auth.ErasuresWrite, false, s.createBatch},
		{"GET /v1/erasure-batches", auth.ErasuresRead, false, s.listBatches},
		{"GET /v1/erasure-batches/{id}", auth.ErasuresRead, false, s.getBatch},
		{"GET /v1/erasure-batches/{id}/subjects", auth.ErasuresRead, false, s.listBatchSubjects},
		{"POST /v1/erasure-batches/{id}/cancel", auth.ErasuresAdmin, false, s.cancelBatch},
		{"POST /v1/erasure-batches/{id}/retry", auth.ErasuresAdmin, false, s.retryBatch},
		{"GET /v1/erasure-batches/{id}/certificate", auth.CertificatesRead, false, s.getBatchCertificate},
		{"GET /v1/erasure-batches/{id}/subjects/{digest}/proof", auth.CertificatesRead, false, s.getBatchProof},
		s.openRoute("GET /v1/keys", s.listKeys),
		s.openRoute("GET /v1/openapi.json", s.openAPI),
		s.openRoute("GET /v1/schemas/{name}", s.getSchema),
		s.openRoute("GET /healthz", s.healthz),
		s.openRoute("GET /readyz", s.readyz),
	}
}

// Routes lists the "METHOD /path" patterns the Handler serves, so that tests
// and tools can check the OpenAPI document against what is really routed.
func (s *Server) Routes() []string {
	rs := s.routes()
	out := make([]string, len(rs))
	for i, rt := range rs {
		out[i] = rt.pattern
	}
	return out
}

// RouteScope returns the scope a route pattern needs, and open true for the
// routes served without a credential, so that tests and the OpenAPI check
// read the one table the guard enforces.
func (s *Server) RouteScope(pattern string) (scope auth.Scope, open bool) {
	rt := s.table[pattern]
	return rt.scope, rt.open
}

// Handler returns the API's http.Handler: the routes, JSON answers for
// unknown routes and wrong methods, and one log line per request.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}
