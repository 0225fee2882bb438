// Package reconcile heals requests that the ledger holds open while no
// workflow carries them. The API starts a request's workflow before it
// commits the ledger row, and every workflow writes its end to the ledger,
// so this is rare; but a workflow an operator terminated, one that timed
// out, a Temporal namespace restored from an older backup, or a crash in an
// older release can leave a request pending or running forever, with no
// one dispatching its commands and no alert but the deadline's. The
// reconciler runs in the worker: it walks the open requests, asks Temporal
// about each, starts again the ones whose workflow closed (from the state
// the workflow's history ends with; see package resume) and marks failed,
// with the reason, the ones Temporal no longer knows, whose identifiers went
// with their history. Every action is audited and counted.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// Actor names the reconciler in the audit.
const Actor = "lethe:reconciler"

// Defaults of Config's zero fields.
const (
	// DefaultInterval is the wait between rounds.
	DefaultInterval = 5 * time.Minute
	// DefaultGrace leaves alone a request the ledger changed more
	// recently: its workflow may be starting, or its write in flight.
	DefaultGrace = 10 * time.Minute
	// DefaultBatch is how many open requests one round checks; the next
	// round goes on after the last, so all are checked in turn.
	DefaultBatch = 1000
	// DefaultMaxRestarts is how often a request is started again before
	// the reconciler gives up and marks it failed: a workflow that keeps
	// closing has a cause a restart does not mend.
	DefaultMaxRestarts = 3
)

// Ledger is what the reconciler reads and writes in the ledger;
// *registry.Store implements it.
type Ledger interface {
	OpenErasures(ctx context.Context, before time.Time, after string, limit int) ([]registry.OpenRequest, error)
	FailOrphan(ctx context.Context, id, reason, actor string) (bool, error)
	Reconciled(ctx context.Context, id string) (int, error)
	AppendAudit(ctx context.Context, events []lethe.AuditEvent) error
}

// Workflows is what the reconciler asks of Temporal; NewWorkflows gives the
// real one.
type Workflows interface {
	// Status is the status of the request's latest run; known is false
	// when Temporal does not know the workflow.
	Status(ctx context.Context, requestID string) (status enumspb.WorkflowExecutionStatus, known bool, err error)
	// Restart starts the closed workflow again from where it ended; started
	// is false when another caller had started it already.
	Restart(ctx context.Context, requestID string) (started bool, err error)
}

// Counter counts the reconciler's actions (lethe_reconciler_actions_total);
// *metrics.Metrics implements it.
type Counter interface {
	Reconciled(action string)
}

// The actions, as counted and audited.
const (
	ActionRestarted = "restarted"
	ActionFailed    = "failed"
)

// Config is what a Reconciler is built from.
type Config struct {
	Ledger    Ledger
	Workflows Workflows
	Logger    *slog.Logger
	// Counter, when set, counts every action.
	Counter Counter
	// Interval, Grace, Batch and MaxRestarts: zero means the default.
	Interval    time.Duration
	Grace       time.Duration
	Batch       int
	MaxRestarts int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Reconciler checks the open requests in rounds. Several workers may run
// one each: every action is conditional (a failed mark applies only to a
// request still open, a start only to a workflow not running), so two
// replicas never act twice on one request.
type Reconciler struct {
	cfg    Config
	cursor string
}

// New returns a reconciler with cfg's defaults filled in.
func New(cfg Config) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = DefaultMaxRestarts
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{cfg: cfg}
}

// Report says what a round did.
type Report struct {
	Checked, Restarted, Failed, Errors int
}

// Run runs a round at once and then every Interval until ctx ends. A round
// that fails is logged and the next one tries again.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		rep, err := r.Round(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			r.cfg.Logger.Warn("reconciler round failed", "error", err.Error())
		case rep.Restarted+rep.Failed+rep.Errors > 0:
			r.cfg.Logger.Info("reconciler round", "checked", rep.Checked, "restarted", rep.Restarted,
				"failed", rep.Failed, "errors", rep.Errors)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Round checks the next batch of open requests that the ledger has not
// changed for Grace, after the last one the round before checked; past the
// last open request it starts again from the first.
func (r *Reconciler) Round(ctx context.Context) (Report, error) {
	var rep Report
	open, err := r.cfg.Ledger.OpenErasures(ctx, r.cfg.Now().Add(-r.cfg.Grace), r.cursor, r.cfg.Batch)
	if err != nil {
		return rep, err
	}
	if len(open) < r.cfg.Batch {
		r.cursor = ""
	} else {
		r.cursor = open[len(open)-1].ID
	}
	for _, req := range open {
		rep.Checked++
		action, err := r.check(ctx, req)
		switch {
		case err != nil && ctx.Err() != nil:
			return rep, ctx.Err()
		case err != nil:
			rep.Errors++
			r.cfg.Logger.Warn("reconciler could not check a request", "request_id", req.ID, "error", err.Error())
		case action == ActionRestarted:
			rep.Restarted++
		case action == ActionFailed:
			rep.Failed++
		}
	}
	return rep, nil
}

// check acts on one open request and returns what it did, if anything.
func (r *Reconciler) check(ctx context.Context, req registry.OpenRequest) (string, error) {
	status, known, err := r.cfg.Workflows.Status(ctx, req.ID)
	if err != nil {
		return "", fmt.Errorf("describe workflow: %w", err)
	}
	switch {
	case !known:
		return r.fail(ctx, req, fmt.Sprintf("the ledger had it %s, but Temporal does not know its workflow "+
			"(never started, or past the namespace's retention): the subject's identifiers are gone with it; "+
			"submit the request again", req.Status))
	case status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		status == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "", nil
	}
	closed := strings.ToLower(strings.TrimPrefix(status.String(), "WORKFLOW_EXECUTION_STATUS_"))
	n, err := r.cfg.Ledger.Reconciled(ctx, req.ID)
	if err != nil {
		return "", err
	}
	if n >= r.cfg.MaxRestarts {
		return r.fail(ctx, req, fmt.Sprintf("its workflow closed (%s) while the ledger had it %s, "+
			"after the reconciler had acted on it %d times; the worker log has the cause", closed, req.Status, n))
	}
	started, err := r.cfg.Workflows.Restart(ctx, req.ID)
	if err != nil || !started {
		return "", err
	}
	if err := r.cfg.Ledger.AppendAudit(ctx, []lethe.AuditEvent{{RequestID: req.ID, Kind: lethe.AuditReconciled,
		Actor: Actor, Detail: fmt.Sprintf("restarted: its workflow had closed (%s) while the ledger had it %s", closed, req.Status)}}); err != nil {
		r.cfg.Logger.Warn("reconciler restart not audited", "request_id", req.ID, "error", err.Error())
	}
	r.count(ActionRestarted)
	r.cfg.Logger.Warn("reconciler restarted a request whose workflow had closed", "request_id", req.ID, "workflow_status", closed)
	return ActionRestarted, nil
}

func (r *Reconciler) fail(ctx context.Context, req registry.OpenRequest, reason string) (string, error) {
	ok, err := r.cfg.Ledger.FailOrphan(ctx, req.ID, reason, Actor)
	if err != nil || !ok {
		return "", err
	}
	r.count(ActionFailed)
	r.cfg.Logger.Warn("reconciler failed an orphaned request", "request_id", req.ID, "reason", reason)
	return ActionFailed, nil
}

func (r *Reconciler) count(action string) {
	if r.cfg.Counter != nil {
		r.cfg.Counter.Reconciled(action)
	}
}
