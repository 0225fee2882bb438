package apiclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
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

// TestStreamSendsTheBodyAsItIsRead: Stream sends a body of unknown length
// chunked, with its content type and the header pairs, and the server
// reads its first line before the caller has written the second: nothing
// waited for the whole body.
func TestStreamSendsTheBodyAsItIsRead(t *testing.T) {
	firstLine := make(chan string, 1)
	var got struct{ contentType, key, transfer, rest string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.contentType, got.key = r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key")
		got.transfer = strings.Join(r.TransferEncoding, ",")
		br := bufio.NewReader(r.Body)
		line, _ := br.ReadString('\n')
		firstLine <- line
		rest, _ := io.ReadAll(br)
		got.rest = string(rest)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"b-1"}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "")
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "{\"n\":1}\n")
		select {
		case <-firstLine:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(errors.New("the server did not read the first line before the body ended"))
			return
		}
		io.WriteString(pw, "{\"n\":2}\n")
		pw.Close()
	}()
	b, err := c.Stream(context.Background(), http.MethodPost, "/v1/erasure-batches", "application/x-ndjson", pr, "Idempotency-Key", "k-9")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"id":"b-1"}` {
		t.Errorf("answer %q", b)
	}
	if got.contentType != "application/x-ndjson" || got.key != "k-9" || got.transfer != "chunked" || got.rest != "{\"n\":2}\n" {
		t.Errorf("server saw %+v, want the NDJSON content type, the key, a chunked body and the second line after the first", got)
	}
}

// TestStreamReportsABodyThatCannotBeRead: a source that fails is the
// caller's failure, not an API out of reach.
func TestStreamReportsABodyThatCannotBeRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "")
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "{}\n")
		pw.CloseWithError(errors.New("disk on fire"))
	}()
	_, err := c.Stream(context.Background(), http.MethodPost, "/", "application/x-ndjson", pr)
	var unreachable *UnreachableError
	if err == nil || errors.As(err, &unreachable) || !strings.Contains(err.Error(), "read the body to send: disk on fire") {
		t.Errorf("err = %v, want the source's failure", err)
	}
}

// TestErrorNamesTheRefusedLines: an invalid_batch answer's lines reach
// the error, whether the API puts them beside the code or in details.
func TestErrorNamesTheRefusedLines(t *testing.T) {
	for _, body := range []string{
		`{"error":{"code":"invalid_batch","message":"2 lines are not subjects","lines":[3,17]}}`,
		`{"error":{"code":"invalid_batch","message":"2 lines are not subjects","details":{"lines":[3,17]}}}`,
	} {
		e := answerError(http.StatusBadRequest, []byte(body))
		if want := "400 invalid_batch: 2 lines are not subjects; lines 3, 17"; e.Error() != want || len(e.Lines) != 2 {
			t.Errorf("answer %s read as %q (lines %v), want %q", body, e.Error(), e.Lines, want)
		}
	}
}

// TestStreamRefusedBeforeTheBodyIsSent: a call the API refuses without
// reading the body gets the refusal, and the body is never read.
func TestStreamRefusedBeforeTheBodyIsSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthenticated","message":"a bearer credential is required"}}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "")
	body := &countingReader{r: strings.NewReader(strings.Repeat("{}\n", 1<<16))}
	_, err := c.Stream(context.Background(), http.MethodPost, "/v1/erasure-batches", "application/x-ndjson", body)
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("err = %v, want the 401", err)
	}
	if n := body.read(); n != 0 {
		t.Errorf("%d bytes of the body were read for a call refused before it", n)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r  io.Reader
	mu sync.Mutex
	n  int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) read() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
