package registry

import (
	"context"
	"time"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// PullCommand is one open command of a pull-mode system as its queue
// (pull_commands) keeps it: where it belongs and when, never what it
// carries. The body, with its identifiers, is read from the command's
// workflow when the command is leased.
type PullCommand struct {
	CommandID string
	RequestID string
	System    string
	// Attempt is the attempt the connector is offered: the workflow's when
	// first leased after a dispatch, one more at every re-offer.
	Attempt     int
	IssuedAt    time.Time
	ConfirmBy   time.Time
	LeasedUntil time.Time
}

// PullModes names, of systems, those registered in pull mode (retired or
// not: a command already planned still goes where its system said).
func (s *Store) PullModes(ctx context.Context, systems []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(systems) == 0 {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT name FROM systems WHERE name = ANY($1::text[]) AND mode = $2`, pq.Array(systems), lethe.ModePull)
	if err != nil {
		return nil, s.fail("read system modes", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, s.fail("read system modes", err)
		}
		out[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("read system modes", err)
	}
	return out, nil
}

// EnqueuePull queues commands of pull-mode systems, as a Kafka system's
// would be produced. A command already queued at the same or a later
// workflow attempt is left as it is, so that a retried activity changes
// nothing; a higher attempt (the workflow dispatched again) makes it due at
// once, offered at an attempt above any offered before.
func (s *Store) EnqueuePull(ctx context.Context, cmds []PullCommand) error {
	if len(cmds) == 0 {
		return nil
	}
	var ids, requests, systems []string
	var attempts []int64
	var issued, confirmBy []time.Time
	for _, c := range cmds {
		ids = append(ids, c.CommandID)
		requests = append(requests, c.RequestID)
		systems = append(systems, c.System)
		attempts = append(attempts, int64(c.Attempt))
		issued = append(issued, c.IssuedAt)
		confirmBy = append(confirmBy, c.ConfirmBy)
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO pull_commands (command_id, request_id, system, wf_attempt, attempt, issued_at, confirm_by, created_at)
		SELECT u.id, u.request_id, u.system, u.attempt, u.attempt, u.issued_at, u.confirm_by, $7
		FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::timestamptz[])
			AS u (id, request_id, system, attempt, issued_at, confirm_by)
		ON CONFLICT (command_id) DO UPDATE SET
			wf_attempt = EXCLUDED.wf_attempt,
			attempt = CASE WHEN pull_commands.leased_until IS NULL
				THEN GREATEST(pull_commands.attempt, EXCLUDED.attempt)
				ELSE GREATEST(pull_commands.attempt + 1, EXCLUDED.attempt) END,
			issued_at = EXCLUDED.issued_at,
			confirm_by = EXCLUDED.confirm_by,
			leased_until = NULL
		WHERE EXCLUDED.wf_attempt > pull_commands.wf_attempt`,
		pq.Array(ids), pq.Array(requests), pq.Array(systems), pq.Array(attempts),
		pq.Array(issued), pq.Array(confirmBy), s.now())
	if err != nil {
		return s.fail("queue pull commands", err)
	}
	return nil
}

// LeasePull leases up to limit of system's due commands, oldest first, until
// now+lease. Rows leased by a concurrent caller (another API replica) are
// skipped, never offered twice. fill gets the rows while they are locked and
// names those whose workflow no longer has them open: they leave the queue.
// The others are leased, and returned, only when fill succeeds; otherwise
// nothing changes.
func (s *Store) LeasePull(ctx context.Context, system string, limit int, now time.Time, lease time.Duration,
	fill func(ctx context.Context, due []PullCommand) (gone []string, err error)) ([]PullCommand, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.fail("lease pull commands", err)
	}
	defer tx.Rollback()
	until := now.Add(lease)
	rows, err := tx.QueryContext(ctx, `
		SELECT command_id, request_id, system,
			CASE WHEN leased_until IS NULL THEN attempt ELSE attempt + 1 END, issued_at, confirm_by
		FROM pull_commands
		WHERE system = $1 AND (leased_until IS NULL OR leased_until <= $2)
		ORDER BY issued_at, command_id
		LIMIT $3
		FOR UPDATE SKIP LOCKED`, system, now, limit)
	if err != nil {
		return nil, s.fail("lease pull commands", err)
	}
	var due []PullCommand
	for rows.Next() {
		c := PullCommand{LeasedUntil: until.UTC()}
		if err := rows.Scan(&c.CommandID, &c.RequestID, &c.System, &c.Attempt, &c.IssuedAt, &c.ConfirmBy); err != nil {
			rows.Close()
			return nil, s.fail("lease pull commands", err)
		}
		c.IssuedAt, c.ConfirmBy = c.IssuedAt.UTC(), c.ConfirmBy.UTC()
		due = append(due, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("lease pull commands", err)
	}
	rows.Close()
	if len(due) == 0 {
		return nil, nil
	}
	gone, err := fill(ctx, due)
	if err != nil {
		return nil, err
	}
	dropped := map[string]bool{}
	for _, id := range gone {
		dropped[id] = true
	}
	var leased []PullCommand
	var ids []string
	for _, c := range due {
		if !dropped[c.CommandID] {
			leased = append(leased, c)
			ids = append(ids, c.CommandID)
		}
	}
	if len(gone) > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pull_commands WHERE command_id = ANY($1::text[])`,
			pq.Array(gone)); err != nil {
			return nil, s.fail("lease pull commands", err)
		}
	}
	if len(ids) > 0 {
		if _, err := tx.ExecContext(ctx, `
			UPDATE pull_commands SET
				attempt = CASE WHEN leased_until IS NULL THEN attempt ELSE attempt + 1 END,
				leased_until = $2
			WHERE command_id = ANY($1::text[])`, pq.Array(ids), until); err != nil {
			return nil, s.fail("lease pull commands", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, s.fail("lease pull commands", err)
	}
	return leased, nil
}

// PullKey names a queued command by what a confirmation says of it.
type PullKey struct {
	CommandID string
	RequestID string
	System    string
}

// FinishPull takes confirmed commands out of their system's queue and
// reports which of keys were queued under exactly that request and
// system: a command_id queued for another system or request is not
// touched.
func (s *Store) FinishPull(ctx context.Context, keys []PullKey) (map[PullKey]bool, error) {
	found := map[PullKey]bool{}
	if len(keys) == 0 {
		return found, nil
	}
	var ids, requests, systems []string
	for _, k := range keys {
		ids = append(ids, k.CommandID)
		requests = append(requests, k.RequestID)
		systems = append(systems, k.System)
	}
	rows, err := s.db.QueryContext(ctx, `
		DELETE FROM pull_commands p
		USING unnest($1::text[], $2::text[], $3::text[]) AS u (id, request_id, system)
		WHERE p.command_id = u.id AND p.request_id = u.request_id AND p.system = u.system
		RETURNING p.command_id, p.request_id, p.system`, pq.Array(ids), pq.Array(requests), pq.Array(systems))
	if err != nil {
		return nil, s.fail("finish pull commands", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k PullKey
		if err := rows.Scan(&k.CommandID, &k.RequestID, &k.System); err != nil {
			return nil, s.fail("finish pull commands", err)
		}
		found[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("finish pull commands", err)
	}
	return found, nil
}

// PullCounts is a pull-mode system's queue at one moment: commands due for
// a lease (never leased since their dispatch, or their lease ran out) and
// commands leased to a connector.
type PullCounts struct {
	Queued int64
	Leased int64
}

// CountPullCommands counts the pull queue by system, for
// lethe_pull_commands; a system with nothing queued is absent.
func (s *Store) CountPullCommands(ctx context.Context) (map[string]PullCounts, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT system,
			count(*) FILTER (WHERE leased_until IS NULL OR leased_until <= $1),
			count(*) FILTER (WHERE leased_until > $1)
		FROM pull_commands GROUP BY system`, s.now())
	if err != nil {
		return nil, s.fail("count pull commands", err)
	}
	defer rows.Close()
	out := map[string]PullCounts{}
	for rows.Next() {
		var name string
		var c PullCounts
		if err := rows.Scan(&name, &c.Queued, &c.Leased); err != nil {
			return nil, s.fail("count pull commands", err)
		}
		out[name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("count pull commands", err)
	}
	return out, nil
}
