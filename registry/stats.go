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

// ErasureCounts are the ledger's totals that the API reports as metrics.
type ErasureCounts struct {
	// ByStatus counts every request in the ledger by its current status;
	// every status is present, at zero when no request has it.
	ByStatus map[lethe.RequestStatus]int64
	// Open counts the requests still pending or running.
	Open int64
	// Overdue counts the open requests past their deadline, whether or
	// not their workflow has marked them overdue yet.
	Overdue int64
	// BatchesOpen and BatchesOverdue count the bulk erasures still
	// pending or running, and those of them past their deadline.
	BatchesOpen    int64
	BatchesOverdue int64
}

// CountErasures reads the ledger's totals: the requests' in one
// statement, the open batches' in another.
func (s *Store) CountErasures(ctx context.Context) (ErasureCounts, error) {
	c := ErasureCounts{ByStatus: map[lethe.RequestStatus]int64{}}
	for _, st := range []lethe.RequestStatus{lethe.RequestPending, lethe.RequestRunning,
		lethe.RequestCompleted, lethe.RequestFailed, lethe.RequestCanceled} {
		c.ByStatus[st] = 0
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT status, count(*),
			count(*) FILTER (WHERE status IN ('pending', 'running') AND (overdue OR deadline < $1))
		FROM erasure_requests GROUP BY status`, s.now())
	if err != nil {
		return ErasureCounts{}, s.fail("count erasures", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			st         lethe.RequestStatus
			n, overdue int64
		)
		if err := rows.Scan(&st, &n, &overdue); err != nil {
			return ErasureCounts{}, s.fail("count erasures", err)
		}
		c.ByStatus[st] = n
		if !st.Final() {
			c.Open += n
		}
		c.Overdue += overdue
	}
	if err := rows.Err(); err != nil {
		return ErasureCounts{}, s.fail("count erasures", err)
	}
	if err := s.db.QueryRowContext(ctx, `
		SELECT count(*), count(*) FILTER (WHERE overdue OR deadline < $1)
		FROM erasure_batches WHERE status IN ('pending', 'running')`, s.now()).Scan(&c.BatchesOpen, &c.BatchesOverdue); err != nil {
		return ErasureCounts{}, s.fail("count batches", err)
	}
	return c, nil
}

// CountSilentCommands counts, by system, the commands of open requests that
// wait for an answer longer than the system's confirm_within: the systems
// that break their promise now, before the workflow gives up on them. A
// command's silence starts at its first dispatch after the system's last
// answer within the request (a retryable failure, or the final answer a
// retry reopened), so that a fresh attempt is not counted as silent from
// the start of the request. Every active system is present, at zero when
// it has no silent command; a retired system appears only while it has
// some.
func (s *Store) CountSilentCommands(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT sy.name, count(silent.request_id)
		FROM systems sy
		LEFT JOIN LATERAL (
			SELECT es.request_id
			FROM erasure_systems es
			JOIN erasure_requests r ON r.id = es.request_id AND r.status IN ('pending', 'running')
			CROSS JOIN LATERAL (
				SELECT max(a.at) AS at FROM audit_events a
				WHERE a.request_id = es.request_id AND a.system = es.system AND a.kind IN ($2, $3)
			) answered
			WHERE es.system = sy.name AND es.status = 'dispatched'
				AND (SELECT min(a.at) FROM audit_events a
					WHERE a.request_id = es.request_id AND a.system = es.system AND a.kind IN ($4, $5)
						AND a.at >= coalesce(answered.at, '-infinity'))
					< $1::timestamptz - sy.confirm_within_ms * interval '1 millisecond'
		) silent ON true
		GROUP BY sy.name, sy.retired_at
		HAVING sy.retired_at IS NULL OR count(silent.request_id) > 0`,
		s.now(), string(lethe.AuditConfirmed), string(lethe.AuditFailed),
		string(lethe.AuditDispatched), string(lethe.AuditRedispatched))
	if err != nil {
		return nil, s.fail("count silent commands", err)
	}
	defer rows.Close()
	silent := map[string]int64{}
	for rows.Next() {
		var (
			name string
			n    int64
		)
		if err := rows.Scan(&name, &n); err != nil {
			return nil, s.fail("count silent commands", err)
		}
		silent[name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("count silent commands", err)
	}
	return silent, nil
}
