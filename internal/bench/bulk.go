package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lethe-dev/lethe"
)

// bulkWarmUp is the size of the unmeasured batch that precedes the
// measured one: it waits, as the per-request measurement's warm-up does,
// for the connectors to join their groups and for the batch code path's
// first use, which the measured batch would otherwise count.
const bulkWarmUp = 10

// bulk measures one bulk erasure of cfg.Bulk synthetic subjects at fan-out
// k: the k systems registered as taking batch commands, each with a
// connector that confirms every item at once, one batch submitted as
// NDJSON written while it is sent, and the time from its submission to
// its final status. The batch must end completed, every subject erased by
// every system, or there is no figure.
func (b *bencher) bulk(ctx context.Context, k int) (*BulkFigures, []string, error) {
	n := b.cfg.Bulk
	b.p.printf("bulk: %d subjects, K=%d", n, k)
	// The per-request measurement that follows, at the same K, notes
	// what prepareSystems finds.
	names, _, err := b.prepareSystems(ctx, k)
	if err != nil {
		return nil, nil, err
	}
	g := newGroup(ctx, b.fail)
	defer g.stop()
	var handled atomic.Int64
	b.startConnectors(g, names, &handled)

	b.p.printf("  bulk: warming up …")
	if _, _, err := b.runBatch(ctx, "bulk: warm-up batch", bulkWarmUp, names); err != nil {
		return nil, nil, fmt.Errorf("warm-up: %w", err)
	}
	f := &BulkFigures{Subjects: n, K: k, LoadBefore: LoadAverage()}
	start := time.Now()
	accepted, elapsed, err := b.runBatch(ctx, fmt.Sprintf("bulk: %d subjects", n), n, names)
	if err != nil {
		return nil, nil, err
	}
	f.LoadAfter = LoadAverage()
	f.Seconds, f.AcceptSeconds = elapsed.Seconds(), accepted.Sub(start).Seconds()
	f.SubjectsPerSecond = Rate(n, elapsed)
	var notes []string
	if rss, err := PeakRSS(); err != nil {
		notes = append(notes, "bulk: peak RSS unknown: "+err.Error())
	} else {
		f.PeakRSSMiB = float64(rss) / (1 << 20)
	}
	return f, notes, nil
}

// runBatch submits a batch of n new synthetic subjects, waits until it is
// final and checks that it completed on every system of names. It returns
// when the API accepted the batch and how long it took from submission to
// its final status.
func (b *bencher) runBatch(ctx context.Context, what string, n int, names []string) (time.Time, time.Duration, error) {
	key := b.nextID("batch")
	start := time.Now()
	batch, err := b.api.submitBatch(ctx, key, func(w io.Writer) error { return writeSubjects(w, key, n) })
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%s: submit: %w", what, err)
	}
	accepted := time.Now()
	if batch.Total != n || batch.Duplicates != 0 {
		return time.Time{}, 0, fmt.Errorf("%s: the API counted %d subjects and %d duplicates, want %d distinct subjects", what, batch.Total, batch.Duplicates, n)
	}
	final, err := b.awaitBatch(ctx, what, batch)
	if err != nil {
		return time.Time{}, 0, err
	}
	elapsed := time.Since(start)
	if err := verifyBatch(final, n, names); err != nil {
		return time.Time{}, 0, fmt.Errorf("%s: %w", what, err)
	}
	return accepted, elapsed, nil
}

// writeSubjects writes n synthetic subjects as NDJSON, one per line, each
// with an email address and a user id that are unique to key and name no
// one (the .invalid domain never resolves).
func writeSubjects(w io.Writer, key string, n int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := range n {
		if _, err := fmt.Fprintf(bw, `{"subject":{"email":"%s-%d@bench.invalid","%s":"%s-%d"}}`+"\n", key, i, IdentifierType, key, i); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// awaitBatch polls the batch until its status is final, often at first
// and then at a hundredth of the time waited so far (at most once a
// second), so that the polls add about 1% to the measured time while a
// batch of 100,000 subjects is not asked for its counts thousands of times.
func (b *bencher) awaitBatch(ctx context.Context, what string, batch lethe.Batch) (lethe.Batch, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.BulkTimeout)
	defer cancel()
	var done atomic.Int64
	stop := b.p.track(what, batch.Total, &done)
	defer stop()
	start := time.Now()
	for {
		done.Store(int64(batch.Counts.Done()))
		if batch.Status.Final() {
			return batch, nil
		}
		select {
		case <-ctx.Done():
			return batch, fmt.Errorf("%s: batch %s still %s, %d of %d subjects done: %w", what, batch.ID, batch.Status, batch.Counts.Done(), batch.Total, ctx.Err())
		case <-time.After(min(time.Second, max(pollInterval, time.Since(start)/100))):
		}
		got, err := b.api.batch(ctx, batch.ID)
		if err != nil {
			return batch, fmt.Errorf("%s: %w", what, err)
		}
		batch = got
	}
}

// verifyBatch checks a final batch as verify checks a request: completed,
// every subject, and every system of names erased every subject.
func verifyBatch(batch lethe.Batch, n int, names []string) error {
	if batch.Status != lethe.RequestCompleted || batch.Counts.Completed != n {
		return fmt.Errorf("batch %s ended %s with %d of %d subjects completed (%d failed, %d canceled), want all completed",
			batch.ID, batch.Status, batch.Counts.Completed, n, batch.Counts.Failed, batch.Counts.Canceled)
	}
	for _, name := range names {
		i := slices.IndexFunc(batch.Systems, func(s lethe.BatchSystemCounts) bool { return s.Name == name })
		if i < 0 {
			return fmt.Errorf("batch %s never reached %s", batch.ID, name)
		}
		if got := batch.Systems[i].Erased; got != n {
			return fmt.Errorf("batch %s: %s erased %d of %d subjects", batch.ID, name, got, n)
		}
	}
	return nil
}
