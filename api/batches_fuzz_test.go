package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// FuzzCreateBatch sends POST /v1/erasure-batches any body, content type,
// query string and Idempotency-Key, with the properties of
// FuzzCreateErasure, and for an accepted batch that its subjects are the
// entries sent, merged exactly where they share an identifier.
func FuzzCreateBatch(f *testing.F) {
	const ndjson, jsonType = "application/x-ndjson", "application/json"
	line := `{"subject":{"email":"` + fuzzSecret + `","user_id":"u-1"}}`
	for _, s := range []struct {
		body, ctype, query, key string
		hasKey                  bool
	}{
		{line + "\n" + `{"subject":{"user_id":"u-2"}}` + "\n", ndjson, "", "", false},
		{line + "\n\n" + `{"subject":{"user_id":"u-1","phone":"+33 1"}}`, ndjson, "reason=gdpr&dry_run=true", "import/1", true},
		{line + "\r\n" + `{"subject":{"email":"` + fuzzSecret + `"}}` + "\r\n", ndjson + "; charset=utf-8", "", fuzzSecret, true},
		{`{"subject":{"a":"x"}}` + "\n" + `{"subject":{"b":"y"}}` + "\n" + `{"subject":{"a":"x","b":"y"}}`, ndjson, "", "", false},
		{line + "\n" + `{"subject":{"email":""}}` + "\n" + `{"subject":` + "\n", ndjson, "", "", false},
		{line + "\n" + `{"subject":{"email":"` + fuzzSecret + `"},"x":1}`, ndjson, "", "", false},
		{`{"` + fuzzSecret + `":1}`, ndjson, "", "", false},
		{"\n \n", ndjson, "", "", false},
		{line, ndjson, "dryrun=true", "", false},
		{line, ndjson, url.QueryEscape(fuzzSecret) + "=1", "", false},
		{line, ndjson, "reason=" + url.QueryEscape(fuzzSecret), "", false},
		{line, ndjson, "deadline=" + url.QueryEscape(fuzzSecret), "", false},
		{line, ndjson, "policy=ccpa&requested_by=t-1", "", false},
		{line, "text/plain", "", "", false},
		{line, "", "", "", false},
		{`{"subjects":[{"email":"` + fuzzSecret + `"},{"user_id":"u"},{"user_id":"u","email":"` + fuzzSecret + `"}],"reason":"r"}`, jsonType, "", "k", true},
		{`{"subjects":[{"email":"` + fuzzSecret + `"},{"email":7},"` + fuzzSecret + `"]}`, jsonType, "", "", false},
		{`{"subjects":[{"email":"` + fuzzSecret + `"}],"` + fuzzSecret + `":1}`, jsonType, "", "", false},
		{`{"subjects":[{"email":"` + fuzzSecret + `"}],"deadline":"` + fuzzSecret + `"}`, jsonType, "", "", false},
		{`{"subjects":[{"email":"` + fuzzSecret + `"}]}`, jsonType, "reason=x", "", false},
		{`{"subjects":[{"email":"` + fuzzSecret, jsonType, "", "", false},
		{`{"subjects":[]}`, jsonType, "", "", false},
		{`[` + line + `]`, jsonType, "", "", false},
	} {
		f.Add([]byte(s.body), s.ctype, s.query, s.key, s.hasKey)
	}
	f.Fuzz(func(t *testing.T, body []byte, ctype, query, key string, hasKey bool) {
		h := newHarness(t)
		send := func() response {
			r := fuzzRequest(http.MethodPost, "/v1/erasure-batches", body, ctype)
			r.URL.RawQuery = query
			if hasKey {
				r.Header["Idempotency-Key"] = []string{key}
			}
			return serveFuzz(h, r)
		}
		secrets := stringsIn(body)
		for l := range bytes.Lines(body) {
			secrets = append(secrets, stringsIn(l)...)
		}
		if q, err := url.ParseQuery(query); err == nil {
			for k, vs := range q {
				secrets = append(append(secrets, k), vs...)
			}
		}
		if hasKey {
			secrets = append(secrets, key)
		}
		res := send()
		checkAnswer(t, h, res, secrets)
		if res.status >= 300 {
			checkNothingWritten(t, h)
			return
		}
		if res.status != http.StatusAccepted {
			t.Fatalf("POST /v1/erasure-batches answered %s, want 202 or an error", describe(res))
		}
		b := checkBatchCreated(t, h, res, body, ctype, secrets)
		if !hasKey {
			return
		}
		again := send()
		checkAnswer(t, h, again, secrets)
		var b2 lethe.Batch
		again.decode(t, &b2)
		if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" || b2.ID != b.ID {
			t.Fatalf("replay with the same Idempotency-Key answered %s, want 200 replayed with id %s", describe(again), b.ID)
		}
		if starts, _ := h.engine.counts(); starts != 1 {
			t.Fatalf("replay started %d workflows in all, want 1", starts)
		}
	})
}

// entriesSent decodes an accepted body with encoding/json alone: the
// subjects of its lines (NDJSON) or of its subjects field.
func entriesSent(t *testing.T, body []byte, ctype string) []map[string]string {
	t.Helper()
	var out []map[string]string
	if strings.HasPrefix(ctype, "application/x-ndjson") {
		for l := range bytes.Lines(body) {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			var e struct{ Subject map[string]string }
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatalf("the API accepted a line encoding/json refuses: %v", err)
			}
			out = append(out, e.Subject)
		}
		return out
	}
	var doc struct{ Subjects []map[string]string }
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("the API accepted a body encoding/json refuses: %v", err)
	}
	return doc.Subjects
}

// mergeSlowly merges entries into subjects the obvious way, for small
// inputs: a subject takes every later entry that shares an identifier
// with it, until none does; subjects come in the order of their first
// entry. Each subject is its sorted "type\x00value" keys.
func mergeSlowly(entries []map[string]string) [][]string {
	var groups []map[string]bool
	for _, e := range entries {
		g := map[string]bool{}
		for t, v := range e {
			g[t+"\x00"+v] = true
		}
		// Fold every earlier group that shares a key into the first of them.
		first := -1
		for i := 0; i < len(groups); i++ {
			shares := false
			for k := range g {
				if groups[i][k] {
					shares = true
					break
				}
			}
			if !shares {
				continue
			}
			if first < 0 {
				first = i
				for k := range g {
					groups[i][k] = true
				}
				g = groups[i]
				continue
			}
			for k := range groups[i] {
				groups[first][k] = true
			}
			groups = slices.Delete(groups, i, i+1)
			i--
		}
		if first < 0 {
			groups = append(groups, g)
		}
	}
	out := make([][]string, len(groups))
	for i, g := range groups {
		for k := range g {
			out[i] = append(out[i], k)
		}
		slices.Sort(out[i])
	}
	return out
}

// checkBatchCreated asserts what an accepted batch did: one batch
// recorded with digests only, its subjects exactly the entries merged,
// cut into chunks in item order, and an answer that repeats no value.
func checkBatchCreated(t *testing.T, h *harness, res response, body []byte, ctype string, secrets []string) lethe.Batch {
	t.Helper()
	entries := entriesSent(t, body, ctype)
	want := mergeSlowly(entries)
	var b lethe.Batch
	res.decode(t, &b)
	if !wire.ValidID(b.ID) || b.Total != len(want) || b.Duplicates != len(entries)-len(want) {
		t.Fatalf("accepted batch = %+v, want %d subjects from %d entries", b, len(want), len(entries))
	}

	h.store.mu.Lock()
	created := slices.Clone(h.store.batchCreated)
	h.store.mu.Unlock()
	h.engine.mu.Lock()
	starts := slices.Clone(h.engine.batchStarts)
	h.engine.mu.Unlock()
	if len(created) != 1 || len(starts) != 1 {
		t.Fatalf("store got %d batches and engine %d starts, want 1 and 1", len(created), len(starts))
	}
	in := created[0]
	// Reason and requested_by are the client's own notes, kept on purpose.
	stored := append([]string{in.IdempotencyKey, in.RequestHash}, in.SubjectTypes...)
	for _, s := range in.Subjects {
		for _, d := range s.Digests {
			stored = append(stored, d.Type, d.Digest)
		}
	}
	for _, s := range stored {
		if v, ok := quoted(s, secrets); ok {
			t.Fatalf("the ledger was given %q, which holds %q from the request", s, v)
		}
	}

	var got [][]string
	for c, ch := range starts[0].chunks {
		if ch.Chunk != c || ch.ChunkID != in.Chunks[c].ID {
			t.Fatalf("chunk %d is %d (%s), the ledger's %+v", c, ch.Chunk, ch.ChunkID, in.Chunks[c])
		}
		for _, s := range ch.Subjects {
			if s.Item != len(got) || s.Item/workflows.ChunkSize != c || s.ItemID != in.Subjects[s.Item].ItemID {
				t.Fatalf("subject %d of chunk %d is item %d", len(got), c, s.Item)
			}
			var keys []string
			for i, id := range s.Identifiers {
				keys = append(keys, id.Type+"\x00"+id.Value)
				if d := in.Subjects[s.Item].Digests[i]; d.Type != id.Type || d.Digest != h.digester.Sum(id.Type, id.Value) {
					t.Fatalf("item %d: digest %d does not match its identifier", s.Item, i)
				}
			}
			got = append(got, keys)
		}
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("the workflow got %d subjects, not the %d the entries merge into", len(got), len(want))
	}

	var shown map[string]any
	res.decode(t, &shown)
	delete(shown, "reason")
	delete(shown, "requested_by")
	walkStrings(shown, func(s string) {
		if v, ok := quoted(s, secrets); ok {
			t.Fatalf("answer %s repeats %q from the request", res.body, v)
		}
	})
	return b
}
