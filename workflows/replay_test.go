package workflows

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
)

// historiesDir holds real histories of ErasureWorkflow, recorded on the
// whole stack by internal/e2e's TestRecordHistories (see docs/operating.md),
// one per revision and path, named <revision>-<path>[.run<n>].json.
const historiesDir = "testdata/histories"

// TestReplayHistories replays every recorded history against today's
// ErasureWorkflow, registered as the worker registers it. A change that
// would make a running request of any revision take another path than the
// one its history recorded fails here, as Temporal would fail that request's
// next workflow task in production.
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no recorded histories in %s: record them as docs/operating.md says", historiesDir)
	}
	logger := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	covered := map[int]bool{}
	for _, file := range files {
		name := filepath.Base(file)
		covered[historyRevision(t, file)] = true
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			registerWorkflow(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(logger, file); err != nil {
				t.Errorf("replay %s: %v", name, err)
			}
		})
	}
	for rev := 0; rev <= CurrentRevision; rev++ {
		if !covered[rev] {
			t.Errorf("no recorded history of revision %d: record it as docs/operating.md says", rev)
		}
	}
}

// historyRevision reads the revision a recorded workflow was started with
// from its input, and checks that the file's name says the same.
func historyRevision(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	events := h.GetEvents()
	if len(events) == 0 || events[0].GetWorkflowExecutionStartedEventAttributes() == nil {
		t.Fatalf("%s does not begin with the workflow's start", file)
	}
	started := events[0].GetWorkflowExecutionStartedEventAttributes()
	var in ErasureInput
	if err := converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), &in); err != nil {
		t.Fatalf("%s: decode the input: %v", file, err)
	}
	prefix, _, _ := strings.Cut(filepath.Base(file), "-")
	if named, err := strconv.Atoi(prefix); err != nil || named != in.Revision {
		t.Fatalf("%s holds a workflow of revision %d; name it %d-<path>.json", file, in.Revision, in.Revision)
	}
	return in.Revision
}

// batchHistoriesDir holds recorded histories of BatchWorkflow (batch-*)
// and BatchChunkWorkflow (chunk-*), recorded by internal/e2e's
// TestRecordBatchHistories.
const batchHistoriesDir = historiesDir + "/batch"

// TestReplayBatchHistories replays the recorded histories of the bulk
// erasure's workflows against today's code, as TestReplayHistories does
// the erasure workflow's: a change that would take a running batch down
// another path fails here.
func TestReplayBatchHistories(t *testing.T) {
	logger := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	for _, kind := range []string{"batch", "chunk"} {
		files, err := filepath.Glob(filepath.Join(batchHistoriesDir, kind+"-*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("no recorded %s history in %s: record them as docs/operating.md says", kind, batchHistoriesDir)
		}
		for _, file := range files {
			name := filepath.Base(file)
			t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
				r := worker.NewWorkflowReplayer()
				registerWorkflow(r)
				if err := r.ReplayWorkflowHistoryFromJSONFile(logger, file); err != nil {
					t.Errorf("replay %s: %v", name, err)
				}
			})
		}
	}
}
