package registry

import (
	"context"
	"database/sql"
	"time"

	"github.com/lethe-dev/lethe"
)

// SystemStats reads an active system's recent health from the ledger (see
// lethe.SystemStats). A system that is not active is a not_found error.
// Requests already pruned (LETHE_RETENTION) no longer count.
func (s *Store) SystemStats(ctx context.Context, name string) (lethe.SystemStats, error) {
	if _, err := s.GetSystem(ctx, name); err != nil {
		return lethe.SystemStats{}, err
	}
	now := s.now()
	st := lethe.SystemStats{System: name, Window: lethe.Duration(lethe.StatsWindow)}
	var p50, p95 sql.NullFloat64
	var last sql.NullTime
	// A command's confirmation time runs from its first dispatch, the
	// request's earliest dispatched event for the system, to its
	// confirmed_at.
	err := s.db.QueryRowContext(ctx, `
		WITH mine AS (
			SELECT es.request_id, es.status, es.confirmed_at, es.updated_at, r.status AS request_status
			FROM erasure_systems es JOIN erasure_requests r ON r.id = es.request_id
			WHERE es.system = $1
		), confirmed AS (
			SELECT extract(epoch FROM m.confirmed_at - min(a.at)) AS seconds
			FROM mine m JOIN audit_events a
				ON a.request_id = m.request_id AND a.system = $1 AND a.kind = $4
			WHERE m.confirmed_at >= $3
			GROUP BY m.request_id, m.confirmed_at
		)
		SELECT
			(SELECT count(*) FROM mine WHERE status IN ('pending', 'dispatched') AND request_status IN ('pending', 'running')),
			(SELECT count(*) FROM mine WHERE status = 'failed' AND updated_at >= $2),
			(SELECT count(*) FROM confirmed),
			(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM confirmed),
			(SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) FROM confirmed),
			(SELECT max(confirmed_at) FROM mine)`,
		name, now.Add(-24*time.Hour), now.Add(-lethe.StatsWindow), string(lethe.AuditDispatched),
	).Scan(&st.OpenCommands, &st.FailedLast24h, &st.Confirmations, &p50, &p95, &last)
	if err != nil {
		return lethe.SystemStats{}, s.fail("system stats", err)
	}
	if p50.Valid {
		st.ConfirmationP50Seconds, st.ConfirmationP95Seconds = &p50.Float64, &p95.Float64
	}
	if last.Valid {
		t := last.Time.UTC()
		st.LastConfirmationAt = &t
	}
	return st, nil
}
