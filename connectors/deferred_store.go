package connectors

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The memory store keeps deferred commands in a map beside its pending
// states; like those they are never evicted.

type memoryDeferred struct {
	d          Deferred
	leaseUntil time.Time
}

var _ deferStore = (*memoryDedup)(nil)

func (d *memoryDedup) getDeferred(_ context.Context, commandID string) (Deferred, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.deferred[commandID]
	return e.d, ok, nil
}

func (d *memoryDedup) putDeferred(_ context.Context, def Deferred) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deferred[def.CommandID] = memoryDeferred{d: def}
	return nil
}

func (d *memoryDedup) claimDue(_ context.Context, now time.Time, lease time.Duration, limit int) ([]Deferred, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Deferred
	for id, e := range d.deferred {
		if len(out) >= limit {
			break
		}
		if e.d.Due.After(now) || e.leaseUntil.After(now) {
			continue
		}
		e.leaseUntil = now.Add(lease)
		d.deferred[id] = e
		out = append(out, e.d)
	}
	return out, nil
}

func (d *memoryDedup) claimDeferred(_ context.Context, commandID string, now time.Time, lease time.Duration) (Deferred, bool, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.deferred[commandID]
	if !ok {
		return Deferred{}, false, false, nil
	}
	if e.leaseUntil.After(now) {
		return Deferred{}, true, false, nil
	}
	e.leaseUntil = now.Add(lease)
	d.deferred[commandID] = e
	return e.d, true, true, nil
}

func (d *memoryDedup) deleteDeferred(_ context.Context, commandID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.deferred, commandID)
	return nil
}

// The PostgreSQL store keeps deferred commands in the dedup table's name
// with _deferred: the command as JSON, when it is due, and until when a
// replica has claimed it. Claims use FOR UPDATE SKIP LOCKED, so replicas
// looking for due commands at once take different ones.

func (s *postgresDedup) createDeferred(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.deferredSQL+` (
		command_id  text PRIMARY KEY,
		deferred    jsonb NOT NULL,
		due_at      timestamptz NOT NULL,
		lease_until timestamptz,
		recorded_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+s.deferredIndex+` ON `+s.deferredSQL+` (due_at)`)
	return err
}

var _ deferStore = (*postgresDedup)(nil)

func (s *postgresDedup) getDeferred(ctx context.Context, commandID string) (Deferred, bool, error) {
	var raw []byte
	err := s.db.QueryRowContext(ctx, `SELECT deferred FROM `+s.deferredSQL+` WHERE command_id = $1`, commandID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return Deferred{}, false, nil
	}
	if err != nil {
		return Deferred{}, false, fmt.Errorf("postgres dedup: get deferred: %w", err)
	}
	d, err := decodeDeferred(raw)
	return d, err == nil, err
}

func (s *postgresDedup) putDeferred(ctx context.Context, d Deferred) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("postgres dedup: encode deferred command: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO `+s.deferredSQL+` (command_id, deferred, due_at) VALUES ($1, $2::jsonb, $3)
		ON CONFLICT (command_id) DO UPDATE SET deferred = EXCLUDED.deferred, due_at = EXCLUDED.due_at,
			lease_until = NULL, recorded_at = now()`, d.CommandID, string(b), d.Due); err != nil {
		return fmt.Errorf("postgres dedup: put deferred: %w", err)
	}
	return nil
}

func (s *postgresDedup) claimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Deferred, error) {
	rows, err := s.db.QueryContext(ctx, `UPDATE `+s.deferredSQL+` SET lease_until = $2
		WHERE command_id IN (SELECT command_id FROM `+s.deferredSQL+`
			WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
			ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING deferred`, now, now.Add(lease), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres dedup: claim deferred: %w", err)
	}
	defer rows.Close()
	var out []Deferred
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("postgres dedup: claim deferred: %w", err)
		}
		d, err := decodeDeferred(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres dedup: claim deferred: %w", err)
	}
	return out, nil
}

func (s *postgresDedup) claimDeferred(ctx context.Context, commandID string, now time.Time, lease time.Duration) (Deferred, bool, bool, error) {
	var raw []byte
	err := s.db.QueryRowContext(ctx, `UPDATE `+s.deferredSQL+` SET lease_until = $3
		WHERE command_id = $1 AND (lease_until IS NULL OR lease_until <= $2) RETURNING deferred`,
		commandID, now, now.Add(lease)).Scan(&raw)
	if err == nil {
		d, err := decodeDeferred(raw)
		return d, err == nil, err == nil, err
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Deferred{}, false, false, fmt.Errorf("postgres dedup: claim deferred: %w", err)
	}
	_, found, err := s.getDeferred(ctx, commandID)
	return Deferred{}, found, false, err
}

func (s *postgresDedup) deleteDeferred(ctx context.Context, commandID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+s.deferredSQL+` WHERE command_id = $1`, commandID); err != nil {
		return fmt.Errorf("postgres dedup: delete deferred: %w", err)
	}
	return nil
}

func decodeDeferred(raw []byte) (Deferred, error) {
	var d Deferred
	if err := json.Unmarshal(raw, &d); err != nil {
		return Deferred{}, fmt.Errorf("postgres dedup: decode deferred command: %w", err)
	}
	return d, nil
}
