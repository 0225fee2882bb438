package api_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/certificate"
)

// The routes of a batch once submitted: progress, subjects, cancel, retry,
// certificate and inclusion proofs. The submission is in batches_test.go.

func TestGetAndListBatches(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, h.createBatch(t, fmt.Sprintf(`{"subject":{"user_id":"u-%d"}}`, i)).ID)
	}
	h.store.finishBatch(ids[1], lethe.RequestFailed, testNow)

	res := h.do(t, req{method: "GET", path: batchesPath + "/" + ids[0]})
	var b lethe.Batch
	res.decode(t, &b)
	if res.status != http.StatusOK || b.ID != ids[0] || b.Total != 1 || b.Systems == nil || b.SubjectTypes == nil {
		t.Errorf("GET = %s", describe(res))
	}
	for _, path := range []string{batchesPath + "/6f1c0000-0000-4000-8000-000000000001", batchesPath + "/" + canary} {
		if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusNotFound || res.errorCode(t) != "batch_not_found" {
			t.Errorf("GET %s = %s, want 404 batch_not_found", path, describe(res))
		}
	}

	var page struct {
		Items      []lethe.Batch `json:"items"`
		NextCursor string        `json:"next_cursor"`
	}
	res = h.do(t, req{method: "GET", path: batchesPath + "?limit=2"})
	res.decode(t, &page)
	if res.status != http.StatusOK || len(page.Items) != 2 || page.Items[0].ID != ids[2] || page.NextCursor == "" {
		t.Fatalf("first page = %s", describe(res))
	}
	res = h.do(t, req{method: "GET", path: batchesPath + "?limit=2&cursor=" + page.NextCursor})
	page.Items, page.NextCursor = nil, ""
	res.decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != ids[0] || page.NextCursor != "" {
		t.Errorf("second page = %s", describe(res))
	}
	res = h.do(t, req{method: "GET", path: batchesPath + "?status=failed"})
	page.Items = nil
	res.decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != ids[1] {
		t.Errorf("failed batches = %s", describe(res))
	}
	for q, code := range map[string]string{
		"?status=done": "invalid_status", "?limit=0": "invalid_limit", "?limit=201": "invalid_limit", "?cursor=zz": "invalid_cursor",
	} {
		if res := h.do(t, req{method: "GET", path: batchesPath + q}); res.status != http.StatusBadRequest || res.errorCode(t) != code {
			t.Errorf("GET %s = %s, want 400 %s", q, describe(res), code)
		}
	}
}

func TestListBatchSubjects(t *testing.T) {
	h := newHarness(t)
	var body strings.Builder
	for i := range 150 {
		fmt.Fprintf(&body, "{\"subject\":{\"email\":\"%d-%s\"}}\n", i, canary)
	}
	b := h.createBatch(t, body.String())
	path := batchesPath + "/" + b.ID + "/subjects"

	var page struct {
		Items      []lethe.BatchSubject `json:"items"`
		NextCursor string               `json:"next_cursor"`
	}
	res := h.do(t, req{method: "GET", path: path})
	res.decode(t, &page)
	if res.status != http.StatusOK || len(page.Items) != api.DefaultBatchSubjectLimit || page.NextCursor == "" {
		t.Fatalf("GET = %d, %d items, cursor %q; want %d items and a cursor", res.status, len(page.Items), page.NextCursor, api.DefaultBatchSubjectLimit)
	}
	first := page.Items[0]
	want := []lethe.SubjectDigest{{Type: "email", Digest: h.digester.Sum("email", "0-"+canary)}}
	if first.Item != 0 || first.Status != lethe.RequestPending || !slices.Equal(first.Identifiers, want) || first.Systems == nil {
		t.Errorf("first subject = %+v", first)
	}
	if bytes.Contains(res.body, []byte(canary)) {
		t.Errorf("the listing holds identifier values")
	}
	res = h.do(t, req{method: "GET", path: path + "?limit=1000&status=failed&cursor=i0"})
	if f := h.store.lastBatchSubjectFilter; res.status != http.StatusOK || f.BatchID != b.ID || f.Limit != 1000 ||
		f.Status != lethe.RequestFailed || f.Cursor != "i0" {
		t.Errorf("GET = %s, filter %+v", describe(res), f)
	}
	for q, code := range map[string]string{"?status=x": "invalid_status", "?limit=0": "invalid_limit", "?limit=1001": "invalid_limit"} {
		if res := h.do(t, req{method: "GET", path: path + q}); res.status != http.StatusBadRequest || res.errorCode(t) != code {
			t.Errorf("GET %s = %s, want 400 %s", q, describe(res), code)
		}
	}
	if res := h.do(t, req{method: "GET", path: batchesPath + "/nope/subjects"}); res.status != http.StatusNotFound || res.errorCode(t) != "batch_not_found" {
		t.Errorf("subjects of a malformed id = %s", describe(res))
	}
}

func TestCancelBatch(t *testing.T) {
	h := newHarness(t)
	b := h.createBatch(t, `{"subject":{"user_id":"u"}}`)
	h.engine.onCancel = func(id string) error {
		h.store.finishBatch(id, lethe.RequestCanceled, testNow)
		return nil
	}
	res := h.do(t, req{method: "POST", path: batchesPath + "/" + b.ID + "/cancel"})
	var got lethe.Batch
	res.decode(t, &got)
	if res.status != http.StatusOK || got.Status != lethe.RequestCanceled {
		t.Fatalf("cancel = %s, want 200 canceled", describe(res))
	}
	if !slices.Equal(h.engine.batchCancels, []string{b.ID}) || !slices.Equal(h.store.batchCancelBy, []string{"token:all"}) {
		t.Errorf("engine canceled %v, audit by %v", h.engine.batchCancels, h.store.batchCancelBy)
	}
	res = h.do(t, req{method: "POST", path: batchesPath + "/" + b.ID + "/cancel"})
	if res.status != http.StatusConflict || res.errorCode(t) != "already_finished" {
		t.Errorf("second cancel = %s, want 409 already_finished", describe(res))
	}

	// A workflow that finished on its own meanwhile.
	other := h.createBatch(t, `{"subject":{"user_id":"v"}}`)
	h.engine.onCancel = func(id string) error {
		h.store.finishBatch(id, lethe.RequestCompleted, testNow)
		return lethe.Errorf(lethe.KindConflict, "already_finished", "closed")
	}
	res = h.do(t, req{method: "POST", path: batchesPath + "/" + other.ID + "/cancel"})
	if res.status != http.StatusConflict || res.errorCode(t) != "already_finished" {
		t.Errorf("cancel of a batch that completed = %s, want 409 already_finished", describe(res))
	}
	if res := h.do(t, req{method: "POST", path: batchesPath + "/6f1c0000-0000-4000-8000-000000000001/cancel"}); res.status != http.StatusNotFound {
		t.Errorf("cancel of an unknown batch = %s, want 404", describe(res))
	}
}

func TestRetryBatch(t *testing.T) {
	h := newHarness(t)
	b := h.createBatch(t, `{"subject":{"user_id":"u"}}`)
	path := batchesPath + "/" + b.ID + "/retry"
	res := h.do(t, req{method: "POST", path: path})
	if res.status != http.StatusConflict || res.errorCode(t) != "nothing_to_retry" || h.engine.retryCount() != 0 {
		t.Fatalf("retry of a batch without failures = %s, want 409 nothing_to_retry", describe(res))
	}
	h.store.finishBatch(b.ID, lethe.RequestFailed, testNow)
	if res := h.do(t, req{method: "POST", path: path, body: `{"systems":["Orders"]}`}); res.status != http.StatusBadRequest || res.errorCode(t) != "invalid_system" {
		t.Errorf("retry naming a bad system = %s, want 400 invalid_system", describe(res))
	}
	h.engine.retryErr = lethe.Errorf(lethe.KindConflict, "workflow_gone", "gone")
	if res := h.do(t, req{method: "POST", path: path}); res.status != http.StatusConflict || res.errorCode(t) != "workflow_gone" {
		t.Errorf("retry with the workflow gone = %s, want 409 workflow_gone", describe(res))
	}
	if len(h.store.batchRetries) != 0 {
		t.Errorf("a retry the workflow refused was recorded")
	}
	h.engine.retryErr = nil
	res = h.do(t, req{method: "POST", path: path, body: `{"systems":["orders"]}`})
	var got lethe.Batch
	res.decode(t, &got)
	if res.status != http.StatusAccepted || got.Status != lethe.RequestRunning {
		t.Fatalf("retry = %s, want 202 running", describe(res))
	}
	orders := h.engine.batchRetries[b.ID]
	if len(orders) != 1 || orders[0].Actor != "token:all" || !slices.Equal(orders[0].Systems, []string{"orders"}) {
		t.Errorf("retry orders = %+v", orders)
	}
	if r := h.store.batchRetries; len(r) != 1 || r[0].actor != "token:all" || !slices.Equal(r[0].systems, []string{"orders"}) {
		t.Errorf("store retries = %+v", r)
	}
}

func TestBatchCertificateAndProof(t *testing.T) {
	signer := signerFor(t, 3)
	h := newHarnessWith(t, func(c *api.Config) { c.Signer = signer })
	b := h.createBatch(t, sharedBody)
	certPath := batchesPath + "/" + b.ID + "/certificate"
	digest := h.digester.Sum("user_id", "u-2")
	proofPath := batchesPath + "/" + b.ID + "/subjects/" + digest + "/proof"

	for _, p := range []string{certPath, proofPath} {
		if res := h.do(t, req{method: "GET", path: p}); res.status != http.StatusConflict || res.errorCode(t) != "not_finished" {
			t.Errorf("GET %s of a running batch = %s, want 409 not_finished", p, describe(res))
		}
	}
	h.store.finishBatch(b.ID, lethe.RequestCompleted, testNow.Add(time.Hour).Truncate(time.Microsecond))

	res := h.do(t, req{method: "GET", path: certPath})
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/json" ||
		!strings.Contains(res.header.Get("Content-Disposition"), "erasure-batch-"+b.ID) {
		t.Fatalf("certificate = %s", describe(res))
	}
	c, _, err := certificate.VerifyBatch(res.body, []ed25519.PublicKey{signer.Public()})
	if err != nil {
		t.Fatalf("the certificate does not verify: %v\n%s", err, res.body)
	}
	if c.BatchID != b.ID || c.Status != "completed" || c.Tree.Size != 3 || c.Subjects.Total != 3 {
		t.Errorf("certificate = %+v", c)
	}
	again := h.do(t, req{method: "GET", path: certPath})
	if !bytes.Equal(again.body, res.body) || h.store.batchCertPuts != 1 {
		t.Errorf("second GET answered another file or stored again (%d puts)", h.store.batchCertPuts)
	}

	res = h.do(t, req{method: "GET", path: proofPath})
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("proof = %s", describe(res))
	}
	p, err := certificate.ParseProof(res.body)
	if err != nil {
		t.Fatalf("the proof does not parse: %v", err)
	}
	if err := certificate.VerifyProof(c, p); err != nil {
		t.Errorf("the proof does not verify against the certificate: %v", err)
	}
	if p.LeafIndex != 2 || p.Leaf.Subject[1].Digest != digest {
		t.Errorf("proof of leaf %d for %+v, want leaf 2 with the digest asked", p.LeafIndex, p.Leaf.Subject)
	}
	// The merged subject is found by any of its identifiers.
	merged := batchesPath + "/" + b.ID + "/subjects/" + h.digester.Sum("email", canary) + "/proof"
	if res := h.do(t, req{method: "GET", path: merged}); res.status != http.StatusOK {
		t.Errorf("proof by the canary's digest = %s", describe(res))
	} else if p, _ := certificate.ParseProof(res.body); p == nil || p.LeafIndex != 0 {
		t.Errorf("proof by the canary's digest is not of leaf 0")
	}
	for path, code := range map[string]string{
		batchesPath + "/" + b.ID + "/subjects/" + strings.Repeat("0", 64) + "/proof":        "subject_not_found",
		batchesPath + "/" + b.ID + "/subjects/" + canary + "/proof":                         "subject_not_found",
		batchesPath + "/6f1c0000-0000-4000-8000-000000000001/subjects/" + digest + "/proof": "batch_not_found",
		batchesPath + "/6f1c0000-0000-4000-8000-000000000001/certificate":                   "batch_not_found",
	} {
		if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusNotFound || res.errorCode(t) != code {
			t.Errorf("GET %s = %s, want 404 %s", path, describe(res), code)
		}
	}
	if strings.Contains(h.logs.String(), canary) {
		t.Errorf("the log repeats an identifier value")
	}
}

func TestBatchCertificateWithoutSigningKey(t *testing.T) {
	h := newHarness(t)
	b := h.createBatch(t, `{"subject":{"user_id":"u"}}`)
	h.store.finishBatch(b.ID, lethe.RequestCompleted, testNow)
	path := batchesPath + "/" + b.ID + "/certificate"
	if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusServiceUnavailable || res.errorCode(t) != "signing_key_missing" {
		t.Errorf("certificate without a key = %s, want 503 signing_key_missing", describe(res))
	}
	h.store.batchCerts[b.ID] = []byte("{\"stored\":true}\n")
	if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusOK || string(res.body) != "{\"stored\":true}\n" {
		t.Errorf("stored certificate without a key = %s", describe(res))
	}
}

// TestBatchCertifiedOnlyOnceSettled: a batch that failed can still be
// retried until its deadline, which would change the leaves a stored
// certificate signs; neither its certificate nor a proof is given until
// then.
func TestBatchCertifiedOnlyOnceSettled(t *testing.T) {
	var mu sync.Mutex
	now := testNow
	h := newHarnessWith(t, func(c *api.Config) {
		c.Signer = signerFor(t, 3)
		c.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}
	})
	b := h.createBatch(t, `{"subject":{"user_id":"u"}}`)
	h.store.finishBatch(b.ID, lethe.RequestFailed, testNow)
	digest := h.digester.Sum("user_id", "u")
	paths := []string{batchesPath + "/" + b.ID + "/certificate", batchesPath + "/" + b.ID + "/subjects/" + digest + "/proof"}
	for _, path := range paths {
		if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusConflict || res.errorCode(t) != "still_retryable" {
			t.Errorf("GET %s of a failed batch before its deadline = %s, want 409 still_retryable", path, describe(res))
		}
	}
	if len(h.store.batchCerts) != 0 {
		t.Errorf("a certificate was stored: %v", h.store.batchCerts)
	}
	mu.Lock()
	now = b.Deadline.Add(time.Second)
	mu.Unlock()
	for _, path := range paths {
		if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusOK {
			t.Errorf("GET %s after the deadline = %s, want 200", path, describe(res))
		}
	}
}
