// Package roles wires Lethe's long-running parts (the HTTP API, the Temporal
// worker and the confirmation relay) from the connections they share. It
// exists so that every process that runs them, `lethe api|worker|relay|dev`
// and `lethe bench`, runs the same code with the same settings: a benchmark
// that wired Lethe its own way would measure something nobody deploys.
package roles

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/reconcile"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// Deps are the connections the roles are built on, opened by the caller and
// closed by it once the roles have returned.
type Deps struct {
	Store    *registry.Store
	Temporal client.Client
	// Namespace is the Temporal namespace Temporal is a client of; it is
	// only logged.
	Namespace string
	Brokers   []string
	// KafkaSecurity secures every connection to the brokers; the zero
	// value is plaintext.
	KafkaSecurity kafkasec.Security
	// Partitions is the partition count of the topics the roles create.
	Partitions int
	Logger     *slog.Logger
	// Digester keys the digests of identifiers: the API records requests
	// and holds by them, the worker matches holds by them.
	Digester *digest.Digester
	// Settings are the operator's choices; the zero value is the defaults.
	Settings Settings
	// Signer signs certificates of erasure, for the API and the pruner;
	// optional for the API (it then serves only stored certificates).
	Signer *certificate.Signer
	// RetiredKeys are former signing keys the API still lists in GET
	// /v1/keys; optional.
	RetiredKeys []ed25519.PublicKey
	// Access is who may call the API; see api.Config's fields of the same
	// names.
	Access Access
	// Engine, when set, is what the API starts workflows with instead of
	// Temporal directly; the history recorder starts older revisions
	// through it.
	Engine api.Engine
	// Metrics is the process's registry, which every role records on; nil
	// records nothing. The caller serves it (Metrics.Handler) and, for the
	// Temporal SDK's metrics, sets Metrics.Temporal() as its client's
	// MetricsHandler.
	Metrics *metrics.Metrics
}

// Access says who may call the API: its verifier (or AuthOff, on purpose),
// each principal's rate, and the Host names it answers.
type Access struct {
	Auth         auth.Verifier
	AuthOff      bool
	Limiter      api.RateLimiter
	AllowedHosts []string
}

// Settings are the operator's choices the roles apply.
type Settings struct {
	// Policy is carried by every workflow the API starts.
	Policy workflows.Policy
	// Deadline, TargetBefore and Policies set requests' windows (see
	// api.Config); zero values take the defaults.
	Deadline     time.Duration
	TargetBefore time.Duration
	Policies     map[string]time.Duration
	// Escalations receives the worker's escalations (the webhook); nil
	// only logs and counts them.
	Escalations activities.Notifier
	// SystemKey derives the secrets of systems' signing credentials
	// (LETHE_SYSTEM_KEY): the API issues credentials with it, the worker
	// signs commands and the relay checks confirmations. Nil issues none.
	SystemKey *credential.Master
	// CredentialOverlap is how long older credentials stay valid after a
	// new one; zero means credential.DefaultOverlap.
	CredentialOverlap time.Duration
	// RequireSignatures makes the relay refuse unsigned confirmations of
	// systems without credentials too.
	RequireSignatures bool
	// Reconcile sets the worker's reconciler.
	Reconcile Reconcile
	// Failover says how fast the other replicas take over the work of one
	// that is lost; the zero value is the defaults.
	Failover Failover
}

// Reconcile sets the worker's reconciler (package reconcile): how often it
// runs and how long a request must go unchanged before it looks. Zero
// values take reconcile's defaults; Off turns it off.
type Reconcile struct {
	Interval time.Duration
	Grace    time.Duration
	Off      bool
}

// Failover are the settings that bound what the loss of a worker or relay
// replica costs the requests in flight, and how a replica hands its work
// over when it is stopped.
type Failover struct {
	// KafkaGroup are the relay's consumer group timeouts
	// (LETHE_KAFKA_SESSION_TIMEOUT and its neighbours).
	KafkaGroup kafkasec.GroupTimeouts
	// WorkflowTaskTimeout is given to every workflow the API starts
	// (LETHE_WORKFLOW_TASK_TIMEOUT); zero means DefaultWorkflowTaskTimeout.
	WorkflowTaskTimeout time.Duration
	// StickyTimeout is how long a workflow task waits for the worker that
	// has the workflow cached before any worker may take it
	// (LETHE_STICKY_TIMEOUT); zero means DefaultStickyTimeout.
	StickyTimeout time.Duration
	// StopTimeout is how long a stopping worker, which no longer polls,
	// lets its tasks in flight finish (LETHE_WORKER_STOP_TIMEOUT); zero
	// means DefaultWorkerStopTimeout.
	StopTimeout time.Duration
}

// Defaults of Failover. A worker killed mid-task costs its requests the
// workflow task timeout (Temporal's default is 10s) and the workflows it
// had cached the sticky timeout (the SDK's default is 5s). Shorter task
// timeouts are safe for the erasure workflow: its long steps are local
// activities, for which the SDK extends the task, and its histories are
// short to replay. The stop timeout fits within Kubernetes' default grace
// period of 30s.
const (
	DefaultWorkflowTaskTimeout = 5 * time.Second
	DefaultStickyTimeout       = 3 * time.Second
	DefaultWorkerStopTimeout   = 10 * time.Second
)

// WithDefaults fills in the zero fields of f.
func (f Failover) WithDefaults() Failover {
	f.KafkaGroup = f.KafkaGroup.WithDefaults()
	if f.WorkflowTaskTimeout == 0 {
		f.WorkflowTaskTimeout = DefaultWorkflowTaskTimeout
	}
	if f.StickyTimeout == 0 {
		f.StickyTimeout = DefaultStickyTimeout
	}
	if f.StopTimeout == 0 {
		f.StopTimeout = DefaultWorkerStopTimeout
	}
	return f
}

// maxWorkflowTaskTimeout is the longest workflow task timeout Temporal
// accepts.
const maxWorkflowTaskTimeout = 2 * time.Minute

// Validate reports the first problem of f.
func (f Failover) Validate() error {
	if err := f.KafkaGroup.Validate(); err != nil {
		return err
	}
	switch {
	case f.WorkflowTaskTimeout < 0, f.StickyTimeout < 0, f.StopTimeout < 0:
		return errors.New("worker timeouts must not be negative")
	case f.WorkflowTaskTimeout > maxWorkflowTaskTimeout:
		return fmt.Errorf("workflow task timeout %s is over Temporal's limit of %s", f.WorkflowTaskTimeout, maxWorkflowTaskTimeout)
	}
	return nil
}

// Validate reports the first missing dependency.
func (d Deps) Validate() error {
	switch {
	case d.Store == nil:
		return errors.New("roles: no store")
	case d.Temporal == nil:
		return errors.New("roles: no temporal client")
	case len(d.Brokers) == 0:
		return errors.New("roles: no kafka brokers")
	case d.Partitions < 1:
		return errors.New("roles: partitions must be at least 1")
	case d.Logger == nil:
		return errors.New("roles: no logger")
	}
	return nil
}

// needDigester validates d for a role that digests identifiers.
func (d Deps) needDigester() error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Digester == nil {
		return errors.New("roles: no digester")
	}
	return nil
}

// Topics creates Kafka topics with a fixed partition count; it is the API's
// api.TopicEnsurer.
type Topics struct {
	Brokers    []string
	Security   kafkasec.Security
	Partitions int
}

// EnsureTopics creates the topics that do not exist yet.
func (t Topics) EnsureTopics(ctx context.Context, names ...string) error {
	return kafkax.Cluster{Brokers: t.Brokers, Security: t.Security}.EnsureTopics(ctx, t.Partitions, names...)
}

// kafka is the cluster as d reaches it.
func (d Deps) kafka() kafkax.Cluster {
	return kafkax.Cluster{Brokers: d.Brokers, Security: d.KafkaSecurity}
}

// APIHandler builds the HTTP API over d with d's settings.
func APIHandler(d Deps) (http.Handler, error) {
	if err := d.needDigester(); err != nil {
		return nil, err
	}
	engine := d.Engine
	if engine == nil {
		engine = api.NewTemporalEngine(d.Temporal, d.Settings.Policy,
			api.WorkflowTaskTimeout(d.Settings.Failover.WithDefaults().WorkflowTaskTimeout))
	}
	cfg := api.Config{
		Store:           d.Store,
		Engine:          engine,
		Topics:          Topics{Brokers: d.Brokers, Security: d.KafkaSecurity, Partitions: d.Partitions},
		Digester:        d.Digester,
		Logger:          d.Logger,
		Ready:           TemporalReady(d.Temporal),
		DefaultDeadline: d.Settings.Deadline,
		TargetBefore:    d.Settings.TargetBefore,
		Policies:        d.Settings.Policies,
		Signer:          d.Signer,
		RetiredKeys:     d.RetiredKeys,
		Auth:            d.Access.Auth,
		AuthOff:         d.Access.AuthOff,
		Limiter:         d.Access.Limiter,
		AllowedHosts:    d.Access.AllowedHosts,

		SystemKey:         d.Settings.SystemKey,
		CredentialOverlap: d.Settings.CredentialOverlap,
		RequireSignatures: d.Settings.RequireSignatures,
	}
	if d.Metrics != nil {
		cfg.Requests = d.Metrics
		if err := d.Metrics.CollectLedger(d.Store, d.Logger); err != nil {
			return nil, fmt.Errorf("ledger metrics: %w", err)
		}
	}
	srv, err := api.New(cfg)
	if err != nil {
		return nil, err
	}
	return srv.Handler(), nil
}

// TemporalReady returns a readiness check that the Temporal frontend answers.
func TemporalReady(c client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("temporal: %w", err)
		}
		return nil
	}
}

// WorkerOptions are the options of the erasure worker with f's hand-off
// settings. `lethe bench` gives its baseline workflows the same ones, so
// that its ratios compare designs rather than tuning. The rest are the
// SDK's defaults: autoscaling pollers were measured with `lethe bench` and
// sped the baselines up more than Lethe, whose throughput on the embedded
// server is bound by the server's persistence, not by how fast the worker
// polls (docs/benchmarks.md).
func WorkerOptions(f Failover) worker.Options {
	f = f.WithDefaults()
	return worker.Options{
		StickyScheduleToStartTimeout: f.StickyTimeout,
		WorkerStopTimeout:            f.StopTimeout,
	}
}

// RunWorker hosts the erasure workflow and its activities until ctx ends,
// then stops the worker and returns ctx's error. Stopping hands the work
// over: the worker stops polling, tells Temporal that its cached workflows'
// next tasks may go to any worker, and lets the tasks it holds finish for
// up to the stop timeout.
func RunWorker(ctx context.Context, d Deps) error {
	if err := d.needDigester(); err != nil {
		return err
	}
	if err := d.Settings.Failover.Validate(); err != nil {
		return err
	}
	writer := d.kafka().Writer()
	defer writer.Close()
	w := worker.New(d.Temporal, workflows.TaskQueue, WorkerOptions(d.Settings.Failover))
	acts := &activities.Activities{Registry: d.Store, Ledger: d.Store, Publisher: writer,
		Digester: d.Digester, Escalations: d.Settings.Escalations,
		Credentials: d.Store, SystemKey: d.Settings.SystemKey, Batches: d.Store, Pull: d.Store,
		Topics: Topics{Brokers: d.Brokers, Security: d.KafkaSecurity, Partitions: d.Partitions}}
	if d.Metrics != nil {
		acts.Metrics, acts.Outcomes = d.Metrics, d.Metrics
	}
	workflows.Register(w, acts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	d.Logger.Info("worker polling", "task_queue", workflows.TaskQueue, "namespace", d.Namespace)
	if rc := d.Settings.Reconcile; !rc.Off {
		cfg := reconcile.Config{Ledger: d.Store, Workflows: reconcile.NewWorkflows(d.Temporal, d.Settings.Failover.WithDefaults().WorkflowTaskTimeout),
			Logger: d.Logger.With("component", "reconciler"), Interval: rc.Interval, Grace: rc.Grace}
		if d.Metrics != nil {
			cfg.Counter = d.Metrics
		}
		go reconcile.New(cfg).Run(ctx)
	}
	<-ctx.Done()
	w.Stop()
	return ctx.Err()
}

// RunRelay turns confirmations into workflow signals until ctx ends, creating
// the confirmation topics first when they are missing.
func RunRelay(ctx context.Context, d Deps) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if err := d.kafka().EnsureTopics(ctx, d.Partitions, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic)); err != nil {
		return fmt.Errorf("create confirmation topics: %w", err)
	}
	rc := relay.Config{Brokers: d.Brokers, Security: d.KafkaSecurity, Group: d.Settings.Failover.KafkaGroup,
		Logger: d.Logger, Credentials: d.Store,
		SystemKey: d.Settings.SystemKey, RequireSignatures: d.Settings.RequireSignatures}
	if d.Metrics != nil {
		rc.Metrics = d.Metrics
		d.Metrics.DeadLetterReasons(wire.ConfirmationsTopic, relay.DLQMalformed, relay.DLQBadSignature)
	}
	r, err := relay.New(rc, d.Temporal, d.Store)
	if err != nil {
		return err
	}
	d.Logger.Info("relay consuming", "topic", wire.ConfirmationsTopic)
	return r.Run(ctx)
}

// Listen opens a TCP listener, naming what it is for when the port is taken.
func Listen(addr, what string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s address %s: %w", what, addr, err)
	}
	return ln, nil
}

// shutdownGrace bounds how long Serve waits for requests in flight once its
// context ends.
const shutdownGrace = 10 * time.Second

// Serve serves h on ln until ctx ends, then shuts down gracefully and
// returns ctx's error; it returns at once if serving fails.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return ctx.Err()
	}
	return err
}
