package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/workflows"
)

const testCodecKeys = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

var codecLine = regexp.MustCompile(`Codec:\s+(http://\S+)`)

// codecPayloads is the body the Temporal Web UI posts to its codec endpoint
// and reads back.
type codecPayloads struct {
	Payloads []struct {
		Metadata map[string][]byte `json:"metadata"`
		Data     []byte            `json:"data"`
	} `json:"payloads"`
}

// codecRequest posts payloads to endpoint+path as the UI's browser code does.
func codecRequest(t *testing.T, method, url, origin string, payloads []*commonpb.Payload, header ...string) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader
	if payloads != nil {
		var in codecPayloads
		for _, p := range payloads {
			in.Payloads = append(in.Payloads, struct {
				Metadata map[string][]byte `json:"metadata"`
				Data     []byte            `json:"data"`
			}{p.Metadata, p.Data})
		}
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if method == http.MethodOptions {
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace")
	} else {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestDevCodec runs `lethe dev --demo`, erases the demo subject, and checks
// what the issue promises: the Temporal history holds no identifier value,
// the UI is configured with the codec endpoint, and that endpoint, called as
// the UI's browser code calls it, turns a payload of the real history back
// into the workflow's input.
func TestDevCodec(t *testing.T) {
	env := devEnv(t, testenv.PostgresURL(t))
	dataDir := t.TempDir()
	banner := startDev(t, env, "--demo", "--ephemeral", "--data-dir", dataDir)
	apiURL := submatch(t, apiLine, banner, 1)
	uiURL := submatch(t, uiLine, banner, 1)
	bannerCodec := submatch(t, codecLine, banner, 1)
	m := curlBody.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no curl command in the banner:\n%s", banner)
	}
	var demo struct {
		Subject map[string]string `json:"subject"`
	}
	if err := json.Unmarshal([]byte(m[2]), &demo); err != nil {
		t.Fatalf("banner curl body: %v", err)
	}
	values := demo.Subject
	if len(values) == 0 {
		t.Fatalf("banner curl has no subject: %s", m[2])
	}

	authz := bannerAuth(t, banner)
	r := httpDo(t, http.MethodPost, m[1], m[2], authz...)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures answered %d %s", r.status, r.body)
	}
	var accepted struct {
		ID         string `json:"id"`
		WorkflowID string `json:"workflow_id"`
	}
	json.Unmarshal(r.body, &accepted)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		r := httpDo(t, http.MethodGet, apiURL+"/v1/erasures/"+accepted.ID, "", authz...)
		var st struct {
			Status string `json:"status"`
		}
		json.Unmarshal(r.body, &st)
		if st.Status == "completed" {
			break
		}
		if st.Status == "failed" || st.Status == "canceled" || time.Since(start) > time.Minute {
			t.Fatalf("demo request is %q: %s", st.Status, r.body)
		}
	}

	// The UI signs its user in and tells the browser, through its
	// settings, where the codec is and, the endpoint being plain http, to
	// send it the browser's cookies, among them the one the sign-in set.
	signedIn := testenv.UISession(t, uiURL)
	session := []string{"Authorization", "Bearer " + signedIn.AccessToken, "Authorization-Extras", signedIn.IDToken}
	r = httpDo(t, http.MethodGet, uiURL+"/api/v1/settings", "", session...)
	var settings struct {
		Codec struct {
			Endpoint           string
			IncludeCredentials bool
		}
	}
	if err := json.Unmarshal(r.body, &settings); err != nil || r.status != http.StatusOK {
		t.Fatalf("UI settings: %d %s (%v)", r.status, r.body, err)
	}
	endpoint := settings.Codec.Endpoint
	if endpoint == "" || endpoint != bannerCodec {
		t.Fatalf("UI codec endpoint = %q, want the one the banner prints, %q", endpoint, bannerCodec)
	}
	if !settings.Codec.IncludeCredentials {
		t.Error("the UI does not send its cookies to the codec endpoint")
	}
	var cookie string
	for _, c := range signedIn.Cookies {
		if c.Name == devstack.CodecCookie {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatal("the sign-in left no codec cookie in the browser")
	}

	// The stored history, read without the key, holds no identifier value.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := client.DialContext(ctx, client.Options{
		HostPort: env["TEMPORAL_ADDRESS"], Namespace: "default",
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial temporal without the codec: %v", err)
	}
	defer raw.Close()
	var input []*commonpb.Payload
	it := raw.GetWorkflowHistory(ctx, accepted.WorkflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	events := 0
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		events++
		b, _ := proto.Marshal(e)
		for kind, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("history event %d (%s) holds the %s value in clear", e.GetEventId(), e.GetEventType(), kind)
			}
		}
		if a := e.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			input = a.GetInput().GetPayloads()
		}
	}
	if events < 5 || len(input) != 1 {
		t.Fatalf("history has %d events and %d input payloads; want a whole request with one input", events, len(input))
	}

	// The browser's preflight, then the decode itself, from the UI's origin.
	pre, _ := codecRequest(t, http.MethodOptions, endpoint+"/decode?preserveStorageRefs=true", uiURL, nil)
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != uiURL {
		t.Errorf("preflight from the UI = %d, Allow-Origin %q; want 204 and %q", pre.StatusCode, pre.Header.Get("Access-Control-Allow-Origin"), uiURL)
	}
	if resp, body := codecRequest(t, http.MethodPost, endpoint+"/decode?preserveStorageRefs=true", uiURL, input); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("decode without the UI's token = %d %s, want 401", resp.StatusCode, body)
	}
	if resp, body := codecRequest(t, http.MethodPost, endpoint+"/decode?preserveStorageRefs=true", uiURL, input,
		"Authorization", authz[1]); resp.StatusCode != http.StatusOK {
		t.Errorf("decode with the dev token as a bearer = %d %s, want 200", resp.StatusCode, body)
	}
	resp, body := codecRequest(t, http.MethodPost, endpoint+"/decode?preserveStorageRefs=true", uiURL, input,
		"Cookie", cookie)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s/decode = %d %s", endpoint, resp.StatusCode, body)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != uiURL {
		t.Errorf("decode Allow-Origin = %q, want %q", got, uiURL)
	}
	var out codecPayloads
	if err := json.Unmarshal(body, &out); err != nil || len(out.Payloads) != 1 {
		t.Fatalf("decode answered %s (%v), want one payload", body, err)
	}
	var in workflows.ErasureInput
	if err := json.Unmarshal(out.Payloads[0].Data, &in); err != nil {
		t.Fatalf("decoded payload is not the erasure input: %v: %s", err, out.Payloads[0].Data)
	}
	if in.RequestID != accepted.ID {
		t.Errorf("decoded request id = %q, want %q", in.RequestID, accepted.ID)
	}
	got := map[string]string{}
	for _, id := range in.Subject {
		got[id.Type] = id.Value
	}
	for kind, v := range values {
		if got[kind] != v {
			t.Errorf("decoded subject %s = %q, want the submitted value", kind, got[kind])
		}
	}

	// The key lives in the data folder, so the next start reads this history.
	key, err := os.ReadFile(filepath.Join(dataDir, "codec.key"))
	if err != nil {
		t.Fatalf("codec key not kept in the data folder: %v", err)
	}
	keys, err := codec.ParseKeys(devCodecKeyID + ":" + strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := codec.NewCodec(keys).Decode(input); err != nil {
		t.Errorf("the kept key does not decrypt the history: %v", err)
	}
}

// startDev runs `lethe dev` with env and args until the test ends, and
// returns its banner once it is ready. The ports in env were free when
// devEnv chose them, but the embedded servers' own ports and outgoing
// connections can take one before dev binds it; on such a start dev names
// the port and stops, and startDev picks fresh ports (in env, so the caller
// sees them) and starts again, up to three times.
func startDev(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		banner, err := startDevOnce(t, env, args...)
		if err == nil {
			return banner
		}
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			t.Fatal(err)
		}
		t.Logf("start %d of lethe dev lost a port race, starting again on fresh ports: %v", attempt, err)
		for _, k := range devAddrKeys {
			env[k] = freeAddr(t)
		}
	}
}

// startDevOnce starts `lethe dev` once. An error says it stopped before it
// was ready; the test's cleanup stops a dev that is running.
func startDevOnce(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testenv.LogBuffer
	done := make(chan error, 1)
	env = maps.Clone(env)
	go func() {
		done <- run(ctx, append([]string{"dev"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(stdout.String(), "Lethe is ready.") {
		select {
		case err := <-done:
			cancel()
			return "", fmt.Errorf("lethe dev exited early: %v\nstderr:\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Cleanup(cancel)
			t.Fatalf("lethe dev not ready after 3 minutes\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("lethe dev stopped with %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("lethe dev did not stop within a minute of its context ending")
		}
	})
	return stdout.String(), nil
}

// TestCodecRole runs `lethe codec` and decodes through it a payload the
// API's converter encrypted with the same keys.
func TestCodecRole(t *testing.T) {
	const origin = "https://temporal.example.com"
	addr := freeAddr(t)
	env := map[string]string{
		"LETHE_CODEC_KEYS": testCodecKeys, "LETHE_CODEC_ADDR": addr,
		"LETHE_CODEC_ORIGINS": "http://127.0.0.1:8233, " + origin, "LETHE_LOG_LEVEL": "warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"codec"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("lethe codec stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("lethe codec did not stop")
		}
	})

	keys, err := codec.ParseKeys(testCodecKeys)
	if err != nil {
		t.Fatal(err)
	}
	p, err := codec.DataConverter(keys).ToPayload(map[string]string{"email": "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("lethe codec exited: %v", err)
		default:
		}
		if c, err := http.Get("http://" + addr + "/decode"); err == nil {
			c.Body.Close()
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("lethe codec does not listen")
		}
	}
	resp, body := codecRequest(t, http.MethodPost, "http://"+addr+"/decode", origin, []*commonpb.Payload{p})
	var out codecPayloads
	json.Unmarshal(body, &out)
	if resp.StatusCode != http.StatusOK || len(out.Payloads) != 1 || !bytes.Contains(out.Payloads[0].Data, []byte("ada@example.com")) {
		t.Errorf("decode = %d %s, want the email back", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
		t.Errorf("Allow-Origin = %q, want %q", got, origin)
	}
}

// TestCodecConfig: `lethe codec` refuses to start without what it needs,
// and a bad key is reported without its material.
func TestCodecConfig(t *testing.T) {
	const badKey = "k1:00112233"
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no keys", map[string]string{"LETHE_CODEC_ORIGINS": "http://x"}, "LETHE_CODEC_KEYS is not set"},
		{"no origins", map[string]string{"LETHE_CODEC_KEYS": testCodecKeys}, "LETHE_CODEC_ORIGINS is not set"},
		{"bad key", map[string]string{"LETHE_CODEC_KEYS": badKey, "LETHE_CODEC_ORIGINS": "http://x"}, `LETHE_CODEC_KEYS: codec: key "k1"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["LETHE_CODEC_ADDR"] = freeAddr(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, []string{"codec"}, func(k string) string { return tc.env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "00112233") {
				t.Errorf("error reveals key material: %v", err)
			}
		})
	}
}

// TestDataConverterFromConfig: without LETHE_CODEC_KEYS the roles write
// payloads in clear and say so once; with keys they encrypt.
func TestDataConverterFromConfig(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	dc, err := (&config{}).dataConverter(log)
	if err != nil || dc == nil {
		t.Fatalf("no keys: converter %v, err %v", dc, err)
	}
	if p, err := dc.ToPayload("ada@example.com"); err != nil || string(p.Metadata["encoding"]) != "json/plain" {
		t.Errorf("no keys: payload %v (%v), want json/plain", p, err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "LETHE_CODEC_KEYS is not set") {
		t.Errorf("no keys: logs = %q, want one warning naming LETHE_CODEC_KEYS", logs.String())
	}

	logs.Reset()
	dc, err = (&config{CodecKeys: testCodecKeys}).dataConverter(log)
	if err != nil || dc == nil {
		t.Fatalf("with keys: converter %v, err %v", dc, err)
	}
	p, err := dc.ToPayload("ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if enc := string(p.Metadata["encoding"]); enc != codec.Encoding {
		t.Errorf("with keys payloads are %q, want %q", enc, codec.Encoding)
	}
	if strings.Contains(logs.String(), "0001020304") {
		t.Errorf("the log shows key material: %s", logs.String())
	}

	if _, err := (&config{CodecKeys: "k1:zz"}).dataConverter(log); err == nil {
		t.Error("a malformed key was accepted")
	}
	if _, err := (&config{CodecKeys: testCodecKeys, CodecPlainBefore: "2026-12-03T09:00:00Z"}).dataConverter(log); err != nil {
		t.Errorf("an RFC 3339 LETHE_CODEC_PLAINTEXT_BEFORE was refused: %v", err)
	}
	if _, err := (&config{CodecKeys: testCodecKeys, CodecPlainBefore: "yesterday"}).dataConverter(log); err == nil ||
		!strings.Contains(err.Error(), "LETHE_CODEC_PLAINTEXT_BEFORE") {
		t.Errorf("LETHE_CODEC_PLAINTEXT_BEFORE=yesterday: err %v, want it refused by name", err)
	}
}

func TestUIOrigins(t *testing.T) {
	cases := map[string][]string{
		"127.0.0.1:8233":      {"http://localhost:8233", "http://127.0.0.1:8233", "http://[::1]:8233"},
		"0.0.0.0:9000":        {"http://localhost:9000", "http://127.0.0.1:9000", "http://[::1]:9000"},
		"ui.example.lan:8233": {"http://ui.example.lan:8233"},
	}
	for addr, want := range cases {
		if got := uiOrigins(addr); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("uiOrigins(%q) = %v, want %v", addr, got, want)
		}
	}
}
