package connectors

import (
	"bytes"
	"container/list"
	"context"
	"sync"

	"github.com/lethe-dev/lethe/wire"
)

// DedupStore remembers the confirmations Run has sent, by command id, so that
// a command delivered again (Kafka delivers at least once, and Lethe
// re-dispatches when a confirmation is slow) is answered with the same
// confirmation instead of running the handler twice. Run records a
// confirmation after the handler returns and before publishing it, so a
// consumer that dies in between leaves its command to be answered from the
// store. A service with several replicas, or that wants this to survive
// restarts, uses a store on its database (NewPostgresDedup, or its own);
// the handler must stay idempotent regardless, since a store may forget.
// A store is used from several goroutines at once.
type DedupStore interface {
	// Get returns the confirmation recorded for commandID, if any.
	Get(ctx context.Context, commandID string) (wire.Confirmation, bool, error)
	// Put records c under c.CommandID. A store of one process may replace
	// an earlier confirmation; a store shared by replicas should keep the
	// first, which another replica may have published already.
	Put(ctx context.Context, c wire.Confirmation) error
}

// PendingStore is a DedupStore that also keeps, by command id, the state of
// work a handler has started and finishes later: a vendor that accepted an
// erasure and is polled for days, say. A handler that records its state
// there before it waits finds it again when the command is delivered again,
// after a restart or on another replica, and resumes instead of starting
// the work twice. The state is the handler's own JSON document; like a
// confirmation's detail it must never hold identifier values. Both stores
// of the SDK (NewMemoryDedup, NewPostgresDedup) implement it.
type PendingStore interface {
	DedupStore
	// GetPending returns the state recorded for commandID, if any.
	GetPending(ctx context.Context, commandID string) (state []byte, found bool, err error)
	// PutPending records state for commandID, replacing an earlier one.
	PutPending(ctx context.Context, commandID string, state []byte) error
	// DeletePending forgets the state of commandID; forgetting what is
	// not recorded is no error.
	DeletePending(ctx context.Context, commandID string) error
}

// firstKeeper is a DedupStore shared by replicas that keeps the first
// confirmation of a command and can say which one that is in the same round
// trip; Run then publishes the kept one, so that all replicas answer a
// command alike.
type firstKeeper interface {
	putFirst(ctx context.Context, c wire.Confirmation) (kept wire.Confirmation, err error)
}

// manyStore is a DedupStore that looks up, and records keeping the first,
// many confirmations in one round trip each: Run uses it for the items of a
// batch command, which would otherwise cost a round trip per item.
type manyStore interface {
	// getMany returns the recorded confirmations of commandIDs, by command
	// id; those without one are absent.
	getMany(ctx context.Context, commandIDs []string) (map[string]wire.Confirmation, error)
	// putFirstMany records confs and returns, by command id, the
	// confirmation kept for each: its own, or one recorded earlier.
	putFirstMany(ctx context.Context, confs []wire.Confirmation) (map[string]wire.Confirmation, error)
}

// DefaultDedupSize is how many command ids the default in-memory store keeps.
const DefaultDedupSize = 10_000

// NewMemoryDedup returns a DedupStore that keeps the last size confirmations
// in memory, dropping the least recently used. It forgets everything on
// restart, which is enough to absorb the duplicates a rebalance or a
// re-dispatch produces. A size below 1 means DefaultDedupSize.
func NewMemoryDedup(size int) DedupStore {
	if size < 1 {
		size = DefaultDedupSize
	}
	return &memoryDedup{size: size, order: list.New(), byID: make(map[string]*list.Element), pending: make(map[string][]byte), deferred: make(map[string]memoryDeferred)}
}

type memoryDedup struct {
	mu    sync.Mutex
	size  int
	order *list.List // of wire.Confirmation, most recently used first
	byID  map[string]*list.Element
	// pending is never evicted: it holds only work in progress, which its
	// handler deletes when done.
	pending map[string][]byte
	// deferred holds the commands whose handler finishes later (see
	// Resumer); never evicted either.
	deferred map[string]memoryDeferred
}

var _ PendingStore = (*memoryDedup)(nil)

func (d *memoryDedup) GetPending(_ context.Context, commandID string) ([]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	state, ok := d.pending[commandID]
	return bytes.Clone(state), ok, nil
}

func (d *memoryDedup) PutPending(_ context.Context, commandID string, state []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[commandID] = bytes.Clone(state)
	return nil
}

func (d *memoryDedup) DeletePending(_ context.Context, commandID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, commandID)
	return nil
}

func (d *memoryDedup) Get(_ context.Context, commandID string) (wire.Confirmation, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byID[commandID]
	if !ok {
		return wire.Confirmation{}, false, nil
	}
	d.order.MoveToFront(e)
	return e.Value.(wire.Confirmation), true, nil
}

func (d *memoryDedup) Put(_ context.Context, c wire.Confirmation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byID[c.CommandID]; ok {
		e.Value = c
		d.order.MoveToFront(e)
		return nil
	}
	d.byID[c.CommandID] = d.order.PushFront(c)
	for d.order.Len() > d.size {
		oldest := d.order.Back()
		d.order.Remove(oldest)
		delete(d.byID, oldest.Value.(wire.Confirmation).CommandID)
	}
	return nil
}
