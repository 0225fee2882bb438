package apicall

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDoSendsAndReadsWhole(t *testing.T) {
	var got struct {
		method, path, contentType, key, body string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.body = r.Method, r.URL.Path, string(b)
		got.contentType, got.key = r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key")
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":{"code":"idempotency_key_reused","message":"m"}}`)
	}))
	defer srv.Close()
	body, contentType, err := JSON(map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Do(context.Background(), srv.URL, http.MethodPost, "/v1/erasures", body, contentType, "Idempotency-Key", "k-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPost || got.path != "/v1/erasures" || got.body != `{"a":"b"}` ||
		got.contentType != "application/json" || got.key != "k-1" {
		t.Errorf("server saw %+v", got)
	}
	if r.Status != http.StatusConflict || r.ErrorCode() != "idempotency_key_reused" {
		t.Errorf("answer %d %q, want 409 idempotency_key_reused", r.Status, r.ErrorCode())
	}
	var e struct{ Error struct{ Message string } }
	r.Decode(t, &e)
	if e.Error.Message != "m" {
		t.Errorf("decoded %+v", e)
	}
}

func TestDoTransportFailureIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if _, err := Do(context.Background(), url, http.MethodGet, "/", nil, ""); err == nil {
		t.Error("a closed server answered")
	}
	if r := (Response{Body: []byte(`{}`)}); r.ErrorCode() != "" {
		t.Errorf("error code %q of an answer without error", r.ErrorCode())
	}
}
