package roles

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/registry"
)

// Bounds of the pruner's period: it runs every tenth of the retention, but
// at least every maxPruneInterval, so that requests do not outstay their
// retention by much, and at most every minPruneInterval.
const (
	minPruneInterval = time.Second
	maxPruneInterval = 10 * time.Minute
)

// PruneInterval is how often RunPruner looks for requests older than
// retention.
func PruneInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, minPruneInterval), maxPruneInterval)
}

// Pruner applies LETHE_RETENTION: it prunes finished requests completed
// longer than Retention ago, certifying each first (registry.Store.Prune).
// Every API replica may run one; the registry makes them share the work.
type Pruner struct {
	Store     *registry.Store
	Signer    *certificate.Signer
	Retention time.Duration
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate reports the first missing setting. A request is pruned only
// once its certificate is issued, so a pruner without a signing key would
// prune nothing.
func (p *Pruner) Validate() error {
	switch {
	case p.Store == nil:
		return errors.New("pruner: no store")
	case p.Signer == nil:
		return errors.New("pruner: no signing key")
	case p.Retention <= 0:
		return errors.New("pruner: retention must be positive")
	case p.Logger == nil:
		return errors.New("pruner: no logger")
	}
	return nil
}

// RunOnce prunes every request due now and returns how many it pruned.
func (p *Pruner) RunOnce(ctx context.Context) (int, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	issuer := &certificate.Issuer{Store: p.Store, Signer: p.Signer, Now: p.Now}
	return p.Store.Prune(ctx, now().Add(-p.Retention), func(ctx context.Context, id string) error {
		_, err := issuer.Certificate(ctx, id)
		return err
	})
}

// Run prunes at once and then every PruneInterval until ctx ends, and
// returns ctx's error. A failed round is logged and tried again next time.
func (p *Pruner) Run(ctx context.Context) error {
	if err := p.Validate(); err != nil {
		return err
	}
	every := PruneInterval(p.Retention)
	p.Logger.Info("retention pruner running", "retention", p.Retention.String(), "every", every.String())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := p.RunOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			p.Logger.Warn("retention pruning failed", "pruned", n, "err", err)
		case n > 0:
			p.Logger.Info("retention pruned requests", "pruned", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
