package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/testenv"
)

// freeAddr reserves a loopback port for a moment and hands it back.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// devAddrKeys are the settings that give `lethe dev` the addresses it
// listens on.
var devAddrKeys = []string{"LETHE_HTTP_ADDR", "LETHE_KAFKA_BROKERS", "TEMPORAL_ADDRESS", "LETHE_UI_ADDR", "LETHE_CODEC_ADDR"}

// devEnv is an environment for `lethe dev` on free ports and a fresh database.
func devEnv(t *testing.T, dbURL string) map[string]string {
	env := map[string]string{"LETHE_DATABASE_URL": dbURL, "LETHE_LOG_LEVEL": "warn"}
	for _, k := range devAddrKeys {
		env[k] = freeAddr(t)
	}
	return env
}

var (
	apiLine  = regexp.MustCompile(`API:\s+(http://\S+)`)
	uiLine   = regexp.MustCompile(`Temporal UI:\s+(http://[^/\s]+)`)
	curlBody = regexp.MustCompile(`(?s)curl -s -X POST (\S+) .*?-d '([^']+)'`)
	curlAuth = regexp.MustCompile(`curl -s -X POST \S+ -H '(Authorization): (Bearer \S+)'`)
)

// bannerAuth is the Authorization header the banner's curl carries, as a
// name/value pair for httpDo.
func bannerAuth(t *testing.T, banner string) []string {
	t.Helper()
	m := curlAuth.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("the banner's curl carries no Authorization header:\n%s", banner)
	}
	return []string{m[1], m[2]}
}

// TestDevDemo runs `lethe dev --demo` as a user would, pastes the curl it
// prints, and sees the request completed and its workflow listed by the
// Temporal Web UI with Lethe's search attributes.
func TestDevDemo(t *testing.T) {
	env := devEnv(t, testenv.PostgresURL(t))
	banner := startDev(t, env, "--demo", "--data-dir", t.TempDir())
	apiURL := submatch(t, apiLine, banner, 1)
	uiURL := submatch(t, uiLine, banner, 1)
	m := curlBody.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no curl command in the banner:\n%s", banner)
	}
	if want := apiURL + "/v1/erasures"; m[1] != want {
		t.Errorf("curl posts to %s, want %s", m[1], want)
	}

	authz := bannerAuth(t, banner)
	if r := httpDo(t, http.MethodPost, m[1], m[2]); r.status != http.StatusUnauthorized {
		t.Fatalf("the curl without its Authorization header answered %d %s, want 401", r.status, r.body)
	}
	resp := httpDo(t, http.MethodPost, m[1], m[2], authz...)
	if resp.status != http.StatusAccepted {
		t.Fatalf("pasted curl answered %d %s", resp.status, resp.body)
	}
	var accepted struct {
		ID         string `json:"id"`
		WorkflowID string `json:"workflow_id"`
	}
	json.Unmarshal(resp.body, &accepted)

	var final struct {
		Status  string `json:"status"`
		Systems []struct {
			Name    string `json:"name"`
			Status  string `json:"status"`
			Records int64  `json:"records"`
		} `json:"systems"`
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		r := httpDo(t, http.MethodGet, apiURL+"/v1/erasures/"+accepted.ID, "", authz...)
		json.Unmarshal(r.body, &final)
		if final.Status == "completed" || final.Status == "failed" || final.Status == "canceled" {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("request still %s after a minute: %s", final.Status, r.body)
		}
	}
	if final.Status != "completed" || len(final.Systems) != 3 {
		t.Fatalf("demo request ended %s with systems %+v, want completed over accounts, analytics, orders", final.Status, final.Systems)
	}
	for _, s := range final.Systems {
		if s.Status != "erased" || s.Records == 0 {
			t.Errorf("demo system %s = %s(%d), want erased with records", s.Name, s.Status, s.Records)
		}
	}

	// The UI's own API, as the browser calls it once its user signed in,
	// lists the workflow with its search attributes.
	signedIn := testenv.UISession(t, uiURL)
	session := []string{"Authorization", "Bearer " + signedIn.AccessToken, "Authorization-Extras", signedIn.IDToken}
	q := url.Values{"query": {fmt.Sprintf("WorkflowId = %q", accepted.WorkflowID)}}
	var listed string
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		r := httpDo(t, http.MethodGet, uiURL+"/api/v1/namespaces/default/workflows?"+q.Encode(), "", session...)
		listed = string(r.body)
		if r.status == http.StatusOK && strings.Contains(listed, "LetheStatus") {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the UI does not list %s with LetheStatus: %d %s", accepted.WorkflowID, r.status, listed)
		}
	}
	for _, want := range []string{accepted.WorkflowID, "LetheStatus", "LethePending", "LetheSystems"} {
		if !strings.Contains(listed, want) {
			t.Errorf("UI workflow list lacks %q", want)
		}
	}
	if r := httpDo(t, http.MethodGet, uiURL+"/", ""); r.status != http.StatusOK {
		t.Errorf("UI page answered %d", r.status)
	}
}

// TestDevFailsWithOneLine: when it cannot start, `lethe dev` says why in
// one line and returns an error.
func TestDevFailsWithOneLine(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"api port taken", map[string]string{"LETHE_HTTP_ADDR": taken.Addr().String()}, taken.Addr().String()},
		{"temporal port taken", map[string]string{"TEMPORAL_ADDRESS": taken.Addr().String()}, taken.Addr().String()},
		{"codec port taken", map[string]string{"LETHE_CODEC_ADDR": taken.Addr().String()}, "codec"},
		{"postgres unreachable", map[string]string{"LETHE_DATABASE_URL": "postgres://postgres@127.0.0.1:1/lethe?sslmode=disable"}, "PostgreSQL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := devEnv(t, "postgres://postgres@127.0.0.1:5432/lethe_never_created?sslmode=disable")
			for k, v := range tc.set {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := run(ctx, []string{"dev", "--ephemeral", "--data-dir", t.TempDir()}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("lethe dev started; want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want one line naming %q", msg, tc.want)
			}
		})
	}
}

type httpResult struct {
	status int
	body   []byte
}

// httpDo sends one request with the header name/value pairs given.
func httpDo(t *testing.T, method, u, body string, header ...string) httpResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, b}
}

func submatch(t *testing.T, re *regexp.Regexp, s string, i int) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("banner lacks %s:\n%s", re, s)
	}
	return m[i]
}
