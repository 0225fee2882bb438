package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// suppressionPage is GET /v1/suppressions' body, decoded strictly so that a
// field the contract does not name fails the test.
type suppressionPage struct {
	Items []struct {
		RequestID string    `json:"request_id"`
		Type      string    `json:"type"`
		Digest    string    `json:"digest"`
		ErasedAt  time.Time `json:"erased_at"`
	} `json:"items"`
	NextCursor *string `json:"next_cursor"`
	HasMore    *bool   `json:"has_more"`
}

func decodeSuppressions(t *testing.T, res response) suppressionPage {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("GET /v1/suppressions = %s, want 200", describe(res))
	}
	var p suppressionPage
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode %s: %v", res.body, err)
	}
	if p.Items == nil || p.HasMore == nil {
		t.Fatalf("body %s lacks items or has_more", res.body)
	}
	return p
}

func TestListSuppressions(t *testing.T) {
	h := newHarness(t)
	at := testNow.Add(-time.Hour).UTC().Truncate(time.Microsecond)
	const id = "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11"
	for i, typ := range []string{"email", "user_id", "email"} {
		h.store.suppressions = append(h.store.suppressions, lethe.Suppression{
			RequestID: id, Type: typ, Digest: h.digester.Sum(typ, string(rune('a'+i))), ErasedAt: at.Add(time.Duration(i) * time.Minute),
		})
	}

	t.Run("defaults", func(t *testing.T) {
		p := decodeSuppressions(t, h.do(t, req{method: "GET", path: "/v1/suppressions"}))
		want := registry.SuppressionFilter{Limit: registry.DefaultSuppressionLimit}
		if h.store.lastSuppressionFilter != want {
			t.Errorf("filter = %+v, want %+v", h.store.lastSuppressionFilter, want)
		}
		if len(p.Items) != 3 || *p.HasMore || p.NextCursor == nil || *p.NextCursor != "s3" {
			t.Fatalf("page = %+v, want all three, no more, cursor s3", p)
		}
		first := p.Items[0]
		if first.RequestID != id || first.Type != "email" || first.Digest != h.digester.Sum("email", "a") || !first.ErasedAt.Equal(at) {
			t.Errorf("first entry = %+v", first)
		}
	})

	t.Run("filters are passed on", func(t *testing.T) {
		// 09:30+01:00 is 08:30Z: the offset is kept as the same instant.
		res := h.do(t, req{method: "GET", path: "/v1/suppressions?since=2026-11-25T09:30:00.5%2B01:00&type=email&limit=1&cursor=s0"})
		p := decodeSuppressions(t, res)
		f := h.store.lastSuppressionFilter
		since := time.Date(2026, 11, 25, 8, 30, 0, 5e8, time.UTC)
		if !f.Since.Equal(since) || f.Type != "email" || f.Limit != 1 || f.Cursor != "s0" {
			t.Errorf("filter = %+v, want since %v, email, 1, s0", f, since)
		}
		if len(p.Items) != 1 || !*p.HasMore || *p.NextCursor != "s1" {
			t.Errorf("page = %+v, want one entry, more, cursor s1", p)
		}
	})

	t.Run("paging with the cursor", func(t *testing.T) {
		var got []string
		cursor := ""
		for range 5 {
			p := decodeSuppressions(t, h.do(t, req{method: "GET", path: "/v1/suppressions?limit=2&cursor=" + cursor}))
			for _, it := range p.Items {
				got = append(got, it.Digest)
			}
			cursor = *p.NextCursor
			if !*p.HasMore {
				break
			}
		}
		var want []string
		for _, e := range h.store.suppressions {
			want = append(want, e.Digest)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("paged %v, want %v", got, want)
		}
		// Nothing new: the same cursor comes back, and an empty page.
		p := decodeSuppressions(t, h.do(t, req{method: "GET", path: "/v1/suppressions?cursor=" + cursor}))
		if len(p.Items) != 0 || *p.HasMore || *p.NextCursor != cursor {
			t.Errorf("caught up: %+v, want empty with cursor %q", p, cursor)
		}
	})

	t.Run("an empty list", func(t *testing.T) {
		res := h.do(t, req{method: "GET", path: "/v1/suppressions?type=phone"})
		if string(res.body) != "{\"items\":[],\"has_more\":false}\n" {
			t.Errorf("empty list = %s", res.body)
		}
	})
}
