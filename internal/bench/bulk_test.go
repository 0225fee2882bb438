package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

// TestRunBatchAgainstTheDocumentedRoutes drives the bulk measurement's
// one batch against a server that plays POST /v1/erasure-batches and GET
// /v1/erasure-batches/{id} as documented: the subjects arrive as NDJSON
// in a chunked body, under an Idempotency-Key that a submission refused
// with 503 is sent again with, the same subjects written anew; the batch
// is polled until final and checked.
func TestRunBatchAgainstTheDocumentedRoutes(t *testing.T) {
	const n = 2500
	names := []string{"bench-00", "bench-01"}
	var (
		mu    sync.Mutex
		posts []string // "key lines transfer content-type reason"
		polls int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/erasure-batches":
			sc := bufio.NewScanner(r.Body)
			lines := map[string]bool{}
			for sc.Scan() {
				lines[sc.Text()] = true
			}
			mu.Lock()
			posts = append(posts, strings.Join([]string{r.Header.Get("Idempotency-Key"), strconv.Itoa(len(lines)),
				strings.Join(r.TransferEncoding, ","), r.Header.Get("Content-Type"), r.URL.Query().Get("reason")}, " "))
			first := len(posts) == 1
			mu.Unlock()
			if first {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(lethe.Batch{ID: "b-1", Status: lethe.RequestPending, Total: len(lines)})
		case r.Method == http.MethodGet && r.URL.Path == "/v1/erasure-batches/b-1":
			mu.Lock()
			polls++
			p := polls
			mu.Unlock()
			b := lethe.Batch{ID: "b-1", Status: lethe.RequestRunning, Total: n, Counts: lethe.BatchCounts{Completed: n / 2, Running: n / 2}}
			if p >= 2 {
				b.Status, b.Counts = lethe.RequestCompleted, lethe.BatchCounts{Completed: n}
				b.Systems = []lethe.BatchSystemCounts{{Name: "bench-00", Erased: n}, {Name: "bench-01", Erased: n}}
			}
			json.NewEncoder(w).Encode(b)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	b := &bencher{cfg: Config{BulkTimeout: time.Minute}, api: newAPIClient(srv.URL, "tok", 1), p: &progress{}, runID: "r1"}
	defer b.api.close()
	accepted, elapsed, err := b.runBatch(context.Background(), "bulk", n, names)
	if err != nil {
		t.Fatal(err)
	}
	if accepted.IsZero() || elapsed <= 0 {
		t.Errorf("accepted at %v, elapsed %v", accepted, elapsed)
	}
	want := "lethe-bench-batch-r1-1 2500 chunked application/x-ndjson gdpr_art17"
	if len(posts) != 2 || posts[0] != want || posts[1] != want {
		t.Errorf("submissions %q, want twice %q: refused once with 503, sent again alike", posts, want)
	}
	if polls != 2 {
		t.Errorf("%d polls, want 2: until the batch was final", polls)
	}
}
