package webhook_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq" // the driver a service would pick for its dedup store
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// slowVendor accepts every command with 202 and a status URL, and answers
// its polls with still working until poll doneAt, which answers erased with
// 3 records (doneAt 0: never). The status URL is where (relative to the
// vendor unless absolute), in Location or, with inBody, in the body.
type slowVendor struct {
	srv           *httptest.Server
	posts, polls  atomic.Int32
	doneAt        int32
	where         string
	inBody        bool
	polled        chan int32   // each poll's number, when not nil
	badSignatures atomic.Int32 // of the POSTs
	bare          bool         // polls answer still working without a status URL
}

func newSlowVendor(t *testing.T, doneAt int32, where string) *slowVendor {
	t.Helper()
	v := &slowVendor{doneAt: doneAt, where: where}
	ver := &webhook.Verifier{Secret: testSecret}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ver.Verify(r); r.Method == http.MethodPost && err != nil {
			v.badSignatures.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost:
			v.posts.Add(1)
			v.accept(w)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/status/"):
			n := v.polls.Add(1)
			if v.polled != nil {
				v.polled <- n
			}
			switch {
			case n == v.doneAt:
				io.WriteString(w, `{"outcome":"erased","records":3}`)
			case v.bare:
				w.WriteHeader(http.StatusAccepted)
			default:
				v.accept(w)
			}
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *slowVendor) accept(w http.ResponseWriter) {
	if v.inBody {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status_url":"`+v.where+`","eta":"next week"}`)
		return
	}
	w.Header().Set("Location", v.where)
	w.WriteHeader(http.StatusAccepted)
}

func pollConfig(url string) webhook.Config {
	cfg := testConfig(url, io.Discard)
	cfg.Poll = webhook.PollConfig{Enabled: true, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	return cfg
}

func TestAcceptedIsPolledUntilDone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	v := newSlowVendor(t, 3, "/status/job-1")
	v.bare = true // a bare 202 keeps polling the same URL
	cfg := pollConfig(v.srv.URL + "/lethe/erase")
	store := connectors.NewMemoryDedup(0).(connectors.PendingStore)
	cfg.Store = store
	req := newRequest()

	got, err := newConnector(t, cfg).Erase(ctx, req)
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if want := (connectors.Result{Outcome: wire.OutcomeErased, Records: 3}); !equalResult(got, want) {
		t.Errorf("Erase = %+v, want %+v: the answer of the third poll", got, want)
	}
	if p, g := v.posts.Load(), v.polls.Load(); p != 1 || g != 3 {
		t.Errorf("the vendor saw %d POSTs and %d polls, want 1 and 3", p, g)
	}
	if n := v.badSignatures.Load(); n != 0 {
		t.Errorf("%d deliveries to the vendor were not signed right", n)
	}
	if _, found, _ := store.GetPending(ctx, req.CommandID); found {
		t.Errorf("the poll is still recorded after its final answer")
	}
}

func TestStatusURLOnAnotherHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		io.WriteString(w, `{"outcome":"erased","records":3}`)
	}))
	defer other.Close()
	v := newSlowVendor(t, 0, other.URL+"/status/job-1")
	v.inBody = true

	refused, err := newConnector(t, pollConfig(v.srv.URL)).Erase(ctx, newRequest())
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if refused.Outcome != wire.OutcomeFailed || refused.Retryable || !strings.Contains(refused.Detail, "another host") {
		t.Errorf("Erase = %+v, want failed, not retryable, naming another host", refused)
	}
	if strings.Contains(refused.Detail, other.URL) {
		t.Errorf("the detail %q quotes the status url", refused.Detail)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the other host was polled %d times without being allowed", n)
	}

	cfg := pollConfig(v.srv.URL)
	u, _ := url.Parse(other.URL)
	cfg.Poll.AllowHosts = []string{u.Host}
	allowed, err := newConnector(t, cfg).Erase(ctx, newRequest())
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if allowed.Outcome != wire.OutcomeErased || elsewhere.Load() != 1 {
		t.Errorf("with the host allowed: Erase = %+v after %d polls there, want erased after 1", allowed, elsewhere.Load())
	}
}

func TestAcceptedWithABadStatusURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, where := range []string{"", "ftp://vendor.example/status", "javascript:alert(1)"} {
		v := newSlowVendor(t, 0, where)
		got, err := newConnector(t, pollConfig(v.srv.URL)).Erase(ctx, newRequest())
		if err != nil {
			t.Fatalf("%q: Erase: %v", where, err)
		}
		if got.Outcome != wire.OutcomeFailed || got.Retryable || !strings.Contains(got.Detail, "HTTP 202") {
			t.Errorf("%q: Erase = %+v, want failed, not retryable, about the 202", where, got)
		}
	}
}

func TestPollingEndsAtConfirmBy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	v := newSlowVendor(t, 0, "/status/job-1")
	v.inBody = true
	cfg := pollConfig(v.srv.URL)
	store := connectors.NewMemoryDedup(0).(connectors.PendingStore)
	cfg.Store = store
	req := newRequest()
	req.ConfirmBy = time.Now().Add(300 * time.Millisecond)

	start := time.Now()
	got, err := newConnector(t, cfg).Erase(ctx, req)
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if got.Outcome != wire.OutcomeFailed || !got.Retryable || !strings.Contains(got.Detail, "confirm_by") {
		t.Errorf("Erase = %+v, want failed and retryable, naming confirm_by", got)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("Erase gave up after %s, want about when confirm_by passed", d)
	}
	if v.polls.Load() < 2 {
		t.Errorf("the status url was polled %d times, want it polled until confirm_by", v.polls.Load())
	}
	if _, found, _ := store.GetPending(ctx, req.CommandID); found {
		t.Errorf("the poll is still recorded after confirm_by; the next dispatch would not call the endpoint")
	}
}

// TestPollSurvivesARestart stops the connector between two polls and starts
// it again on the same PostgreSQL store: the command, committed once the
// vendor accepted it, is resumed from the store, and the vendor is asked
// to erase once.
func TestPollSurvivesARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, wire.ConfirmationsTopic, wire.DefaultTopic("crm"))
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dedup, err := connectors.NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatalf("NewPostgresDedup: %v", err)
	}
	store := dedup.(connectors.PendingStore)
	v := newSlowVendor(t, 3, "/status/job-1")
	v.polled = make(chan int32, 10)

	run := func() (stop func()) {
		cfg := pollConfig(v.srv.URL + "/lethe/erase")
		cfg.Poll = webhook.PollConfig{Enabled: true, Initial: 300 * time.Millisecond, Max: 600 * time.Millisecond}
		cfg.Store = store
		conn := newConnector(t, cfg)
		runCtx, stopRun := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- connectors.Run(runCtx, connectors.Config{
				Brokers: brokers, System: "crm", Dedup: store, Logger: slog.New(slog.DiscardHandler),
				Retry: connectors.RetryPolicy{MaxAttempts: 1}, ShutdownGrace: -1, DeferredCheck: 50 * time.Millisecond,
			}, conn)
		}()
		return func() {
			stopRun()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		}
	}

	now := time.Now().UTC().Truncate(time.Second)
	cmd := wire.Command{
		Schema: wire.SchemaCommand, CommandID: uuid.NewString(), RequestID: uuid.NewString(), System: "crm", Attempt: 1,
		Identifiers: []wire.Identifier{{Type: "email", Value: personal}}, IssuedAt: now, ConfirmBy: now.Add(72 * time.Hour),
	}
	w := connectors.NewWriter(brokers)
	defer w.Close()
	m, err := connectors.EncodeCommand(wire.DefaultTopic("crm"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessages(ctx, m); err != nil {
		t.Fatalf("produce: %v", err)
	}

	stop := run()
	select {
	case <-v.polled:
	case <-ctx.Done():
		t.Fatal("the status url was never polled")
	}
	stop()
	if n := deferredRows(ctx, t, db, cmd.CommandID); n != 1 {
		t.Fatalf("after the stop the poll is recorded %d times, want once", n)
	}
	if off := committedOffset(cluster, "lethe-connector-crm", wire.DefaultTopic("crm")); off != 1 {
		t.Errorf("committed offset %d while the vendor works, want 1: the accepted command must not hold its partition", off)
	}

	stop = run()
	defer stop()
	confs := readConfirmations(ctx, t, brokers, 1)
	if c := confs[0]; c.CommandID != cmd.CommandID || c.Outcome != wire.OutcomeErased || c.Records != 3 {
		t.Errorf("confirmation %+v, want the command erased with 3 records", c)
	}
	if p, g := v.posts.Load(), v.polls.Load(); p != 1 || g != 3 {
		t.Errorf("the vendor saw %d POSTs and %d polls, want 1 and 3", p, g)
	}
	if n := deferredRows(ctx, t, db, cmd.CommandID); n != 0 {
		t.Errorf("the poll is still recorded after its final answer")
	}
}

// deferredRows counts the rows of commandID in the default store's table of
// deferred commands.
func deferredRows(ctx context.Context, t *testing.T, db *sql.DB, commandID string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+connectors.DefaultDedupTable+`_deferred WHERE command_id = $1`, commandID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// committedOffset is the sum of the offsets group committed on topic.
func committedOffset(cluster *kfake.Cluster, group, topic string) int64 {
	info := cluster.GroupInfo(group)
	if info == nil {
		return 0
	}
	var n int64
	for _, c := range info.Commits[topic] {
		n += c.Offset
	}
	return n
}

func TestStillWorkingMovesThePoll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var paths []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/erase":
			w.Header().Set("Location", "status/a") // relative to /erase
			w.WriteHeader(http.StatusAccepted)
		case "/status/a":
			w.Header().Set("Location", "/status/b")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusAccepted)
		case "/status/b":
			io.WriteString(w, `{"outcome":"not_found"}`)
		}
	}))
	defer srv.Close()

	start := time.Now()
	got, err := newConnector(t, pollConfig(srv.URL+"/erase")).Erase(ctx, newRequest())
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if got.Outcome != wire.OutcomeNotFound {
		t.Errorf("Erase = %+v, want not_found, the answer at the moved status url", got)
	}
	want := []string{"POST /erase", "GET /status/a", "GET /status/b"}
	if strings.Join(paths, ", ") != strings.Join(want, ", ") {
		t.Errorf("requests %v, want %v", paths, want)
	}
	// Retry-After 1s is above poll.max (20ms): the cap wins.
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("the polls took %s; a Retry-After must not wait past poll.max", d)
	}
}

// TestAcceptedIsRefusedUnlessPollingIsOn: by default a 202 is an answer the
// protocol does not define, confirmed failed once, and no status URL is
// requested.
func TestAcceptedIsRefusedUnlessPollingIsOn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	v := newSlowVendor(t, 3, "/status/job-1")
	cfg := pollConfig(v.srv.URL + "/lethe/erase")
	cfg.Poll.Enabled = false
	got, err := newConnector(t, cfg).Erase(ctx, newRequest())
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if got.Outcome != wire.OutcomeFailed || got.Retryable || !strings.Contains(got.Detail, "poll.enabled") {
		t.Errorf("Erase = %+v, want failed, not retryable, naming poll.enabled", got)
	}
	if p, g := v.posts.Load(), v.polls.Load(); p != 1 || g != 0 {
		t.Errorf("the vendor saw %d POSTs and %d polls, want 1 and none", p, g)
	}
}
