// Package registry keeps Lethe's state in PostgreSQL: the registry of systems
// that hold personal data, and the ledger of erasure requests with each
// targeted system's progress and an append-only audit. Temporal forgets a
// closed workflow after its retention period; the ledger is what proves, long
// afterwards, that a subject was erased.
//
// Nothing here stores an identifier value: subjects are recorded as keyed
// digests only.
package registry

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/lethe-dev/lethe"
)

// Pool limits for Open. Each API request and activity holds a connection for
// one short transaction, so a modest pool serves many callers, and a bound
// keeps several Lethe processes within PostgreSQL's max_connections.
const (
	maxOpenConns    = 20
	maxIdleConns    = 10
	connMaxLifetime = 30 * time.Minute
	connMaxIdleTime = 5 * time.Minute
)

// Store is the registry and ledger. It is safe for concurrent use; every
// method that changes more than one row does so in one transaction.
type Store struct {
	db     *sql.DB
	closed atomic.Bool

	// Now is the clock used for the times the store assigns itself
	// (created_at, updated_at, retired_at). Nil means time.Now; tests set it.
	Now func() time.Time
}

// Open connects to the PostgreSQL database at url (a lib/pq URL or DSN) and
// checks that it answers. An unreachable server gives an error of kind
// lethe.KindUnavailable.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", withoutURL(err))
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxIdleConns)
	db.SetConnMaxLifetime(connMaxLifetime)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	s := New(db)
	if err := s.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return s, nil
}

// New wraps a pool the caller opened, for tests and for processes that share
// one pool between the store and other users.
func New(db *sql.DB) *Store { return &Store{db: db} }

// DB returns the underlying pool, for migrations and health checks that need
// it directly.
func (s *Store) DB() *sql.DB { return s.db }

// Close releases the pool. Calls made afterwards fail with an error of kind
// lethe.KindUnavailable, which is what an API draining during shutdown
// should answer.
func (s *Store) Close() error {
	s.closed.Store(true)
	return s.db.Close()
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return s.fail("ping database", err)
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// querier is what *sql.DB and *sql.Tx have in common, so that reads can run
// inside or outside a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// fail adds op as context to a database error, classifying connection
// failures as lethe.KindUnavailable so the API answers 503 rather than 500.
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, &unavailableError{cause: err})
	}
	return fmt.Errorf("%s: %w", op, classify(err))
}

// classify marks connection failures as unavailable, for errors that do not
// come through a Store.
func classify(err error) error {
	if unavailable(err) {
		return &unavailableError{cause: err}
	}
	return err
}

// withoutURL drops the URL that a *url.Error prints, because it may hold a
// password.
func withoutURL(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// unavailable reports whether err means the database could not be reached or
// dropped the connection, as opposed to refusing a statement.
func unavailable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	if pe := pq.As(err); pe != nil {
		if pe.Code.Class() == pqerror.ClassConnectionException {
			return true
		}
		switch pe.Code {
		case pqerror.AdminShutdown, pqerror.CrashShutdown, pqerror.CannotConnectNow,
			pqerror.TooManyConnections:
			return true
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// unavailableError is a lethe.Error of kind KindUnavailable that still
// carries the driver's error, so the API can answer 503 from the kind while
// logs keep the cause.
type unavailableError struct {
	cause error
}

func (e *unavailableError) coded() *lethe.Error {
	return &lethe.Error{Kind: lethe.KindUnavailable, Code: "database_unavailable", Message: "the database is unavailable"}
}

func (e *unavailableError) Error() string {
	return e.coded().Error() + ": " + e.cause.Error()
}

// Unwrap exposes both the coded error, for errors.As(&*lethe.Error), and the
// cause, for errors.Is(err, driver.ErrBadConn) and the like.
func (e *unavailableError) Unwrap() []error { return []error{e.coded(), e.cause} }

func systemNotFound(name string) error {
	return lethe.Errorf(lethe.KindNotFound, "system_not_found", "no active system named %q", name)
}

// erasureNotFound does not echo the id: a malformed one is arbitrary caller
// text, and the caller knows which id it asked for.
func erasureNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no such erasure request")
}
