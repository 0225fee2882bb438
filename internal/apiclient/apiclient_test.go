package apiclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDoSendsCredentialAndReturnsTheAnswer(t *testing.T) {
	var got struct{ method, path, auth, contentType, key, body string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.body = r.Method, r.URL.RequestURI(), string(b)
		got.auth, got.contentType, got.key = r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x"}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/", "tok")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Do(context.Background(), http.MethodPost, "/v1/erasures?x=1", map[string]string{"a": "b"}, "Idempotency-Key", "k-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"id":"x"}` {
		t.Errorf("answer %q", b)
	}
	want := struct{ method, path, auth, contentType, key, body string }{
		http.MethodPost, "/v1/erasures?x=1", "Bearer tok", "application/json", "k-1", `{"a":"b"}`}
	if got != want {
		t.Errorf("server saw %+v, want %+v", got, want)
	}
}

func TestDoWithoutTokenSendsNoAuthorization(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Values("Authorization")
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), http.MethodGet, "/v1/systems", nil); err != nil {
		t.Fatal(err)
	}
	if len(auth) != 0 {
		t.Errorf("Authorization %q sent without a token", auth)
	}
}

func TestDoErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		want        string
		unavailable bool
	}{
		{"contract error", http.StatusNotFound, `{"error":{"code":"erasure_not_found","message":"no erasure request has this id"}}`,
			"404 erasure_not_found: no erasure request has this id", false},
		{"overloaded", http.StatusServiceUnavailable, `{"error":{"code":"temporal_unavailable","message":"try again"}}`,
			"503 temporal_unavailable: try again", true},
		{"a proxy's page", http.StatusBadGateway, "<html>bad gateway</html>", "502 bad gateway", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, _ := New(srv.URL, "")
			_, err := c.Do(context.Background(), http.MethodGet, "/", nil)
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if apiErr.Error() != tt.want || apiErr.Status != tt.status || apiErr.Unavailable() != tt.unavailable {
				t.Errorf("err = %q (status %d, unavailable %v), want %q (%d, %v)",
					apiErr, apiErr.Status, apiErr.Unavailable(), tt.want, tt.status, tt.unavailable)
			}
		})
	}
}

func TestDoUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := New(url, "")
	_, err := c.Do(context.Background(), http.MethodGet, "/v1/systems", nil)
	var unreachable *UnreachableError
	if !errors.As(err, &unreachable) || unreachable.URL != url {
		t.Errorf("err = %v, want an *UnreachableError for %s", err, url)
	}
}

func TestNewRefusesANonHTTPURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, err := New(u, ""); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func TestUnreachableHidesAPasswordInTheURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	host := srv.Listener.Addr().String()
	srv.Close()
	c, _ := New("http://ops:hunter2@"+host, "")
	_, err := c.Do(context.Background(), http.MethodGet, "/v1/systems", nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v, want one without the password", err)
	}
}
