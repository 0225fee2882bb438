// Package api is Lethe's HTTP API: it validates what clients send, turns an
// erasure request into keyed digests for the ledger and a workflow input for
// Temporal, and answers in the JSON shapes of the public contract. Errors from
// every layer arrive as *lethe.Error and are turned into HTTP statuses in one
// place (errors.go), so no other package knows about status codes.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/workflows"
)

// Store is what the API needs from the registry and the request ledger.
// *registry.Store implements it; tests use a fake.
type Store interface {
	PutSystem(ctx context.Context, sys lethe.System) (stored lethe.System, created bool, err error)
	GetSystem(ctx context.Context, name string) (lethe.System, error)
	ListSystems(ctx context.Context) ([]lethe.System, error)
	RetireSystem(ctx context.Context, name string) error
	// CreateErasure records a new request, calling start before it commits
	// so that a request is never in the ledger without its workflow. With an
	// idempotency key already used for the same body it returns the existing
	// request and created false, without calling start.
	CreateErasure(ctx context.Context, in registry.NewErasure, start func(ctx context.Context) error) (lethe.Erasure, bool, error)
	GetErasure(ctx context.Context, id string) (lethe.Erasure, error)
	ListErasures(ctx context.Context, f registry.ErasureFilter) ([]lethe.Erasure, string, error)
	// ListSuppressions pages through the digests of erased subjects, for
	// services restoring a backup; see registry.Store.ListSuppressions for
	// which requests count and why a cursor never skips an entry.
	ListSuppressions(ctx context.Context, f registry.SuppressionFilter) (registry.SuppressionPage, error)
	Ping(ctx context.Context) error
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
	// Ready, when set, adds readiness checks (Kafka, Temporal) to the
	// database ping behind GET /readyz.
	Ready func(ctx context.Context) error
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
	case c.DefaultDeadline < 0:
		return errors.New("api config: default deadline must not be negative")
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
	ready    func(ctx context.Context) error
	mux      *http.ServeMux
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
		ready:    cfg.Ready,
		mux:      http.NewServeMux(),
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
	for _, rt := range s.routes() {
		s.mux.HandleFunc(rt.pattern, rt.handler)
	}
	return s, nil
}

type route struct {
	pattern string
	handler http.HandlerFunc
}

// routes is the one table of what the API serves; Routes and the OpenAPI
// test read it too, so the document cannot drift from the mux.
func (s *Server) routes() []route {
	return []route{
		{"PUT /v1/systems/{name}", s.putSystem},
		{"GET /v1/systems/{name}", s.getSystem},
		{"DELETE /v1/systems/{name}", s.deleteSystem},
		{"GET /v1/systems", s.listSystems},
		{"POST /v1/erasures", s.createErasure},
		{"GET /v1/erasures/{id}", s.getErasure},
		{"GET /v1/erasures", s.listErasures},
		{"POST /v1/erasures/{id}/cancel", s.cancelErasure},
		{"GET /v1/suppressions", s.listSuppressions},
		{"GET /v1/openapi.json", s.openAPI},
		{"GET /healthz", s.healthz},
		{"GET /readyz", s.readyz},
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

// Handler returns the API's http.Handler: the routes, JSON answers for
// unknown routes and wrong methods, and one log line per request.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}
