package codec_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/lethe-dev/lethe/codec"
)

const uiOrigin = "http://127.0.0.1:8233"

// uiPayloads is the JSON the Temporal Web UI sends and reads: metadata
// values and data are standard base64, as encoding/json writes []byte.
type uiPayloads struct {
	Payloads []uiPayload `json:"payloads"`
}

type uiPayload struct {
	Metadata map[string][]byte `json:"metadata"`
	Data     []byte            `json:"data"`
}

func toUI(ps ...*commonpb.Payload) []byte {
	var body uiPayloads
	for _, p := range ps {
		body.Payloads = append(body.Payloads, uiPayload{Metadata: p.Metadata, Data: p.Data})
	}
	b, _ := json.Marshal(body)
	return b
}

// post sends a request shaped like the UI's fetch: JSON body, X-Namespace,
// the page's Origin, and the query parameter the UI appends.
func post(t *testing.T, srv *httptest.Server, path, origin string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path+"?preserveStorageRefs=true", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readUI(t *testing.T, resp *http.Response) uiPayloads {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var out uiPayloads
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer is not {\"payloads\":[…]}: %v: %s", err, b)
	}
	return out
}

func newServer(t *testing.T, keys string) (*httptest.Server, *codec.Keyring) {
	t.Helper()
	k := mustKeys(t, keys)
	srv := httptest.NewServer(codec.Handler(k, []string{uiOrigin + "/"}, codec.Access{}))
	t.Cleanup(srv.Close)
	return srv, k
}

func TestHandlerDecodesForTheUI(t *testing.T) {
	srv, k := newServer(t, "k1:"+oldKeyHex)
	enc, err := codec.DataConverter(k).ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	resp := post(t, srv, "/decode", uiOrigin, toUI(enc))
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != uiOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, uiOrigin)
	}
	out := readUI(t, resp)
	if len(out.Payloads) != 1 {
		t.Fatalf("got %d payloads, want 1", len(out.Payloads))
	}
	p := out.Payloads[0]
	if enc := string(p.Metadata[converter.MetadataEncoding]); enc != "json/plain" {
		t.Errorf("decoded encoding = %q, want json/plain", enc)
	}
	var got subject
	if err := json.Unmarshal(p.Data, &got); err != nil || got.Email != canary {
		t.Errorf("decoded data = %s (%v), want the subject with the canary", p.Data, err)
	}
}

func TestHandlerEncodeThenDecode(t *testing.T) {
	srv, _ := newServer(t, "k1:"+oldKeyHex)
	plain, err := converter.GetDefaultDataConverter().ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	encoded := readUI(t, post(t, srv, "/encode", uiOrigin, toUI(plain)))
	if len(encoded.Payloads) != 1 || string(encoded.Payloads[0].Metadata[converter.MetadataEncoding]) != codec.Encoding {
		t.Fatalf("/encode answered %+v, want one %s payload", encoded, codec.Encoding)
	}
	if bytes.Contains(encoded.Payloads[0].Data, []byte(canary)) {
		t.Error("/encode answered the plaintext")
	}
	e := encoded.Payloads[0]
	decoded := readUI(t, post(t, srv, "/decode", "", toUI(&commonpb.Payload{Metadata: e.Metadata, Data: e.Data})))
	if len(decoded.Payloads) != 1 || !bytes.Equal(decoded.Payloads[0].Data, plain.Data) {
		t.Errorf("/decode of /encode = %+v, want the original data %s", decoded, plain.Data)
	}
}

func TestHandlerPreflight(t *testing.T) {
	srv, _ := newServer(t, "k1:"+oldKeyHex)
	for _, path := range []string{"/decode", "/encode"} {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+path+"?preserveStorageRefs=true", nil)
		req.Header.Set("Origin", uiOrigin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("OPTIONS %s = %d, want 204", path, resp.StatusCode)
		}
		h := resp.Header
		if got := h.Get("Access-Control-Allow-Origin"); got != uiOrigin {
			t.Errorf("OPTIONS %s: Allow-Origin = %q, want %q", path, got, uiOrigin)
		}
		allowHeaders := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"content-type", "x-namespace"} {
			if !strings.Contains(allowHeaders, want) {
				t.Errorf("OPTIONS %s: Allow-Headers %q lacks %s", path, allowHeaders, want)
			}
		}
		if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
			t.Errorf("OPTIONS %s: Allow-Methods = %q, want POST", path, h.Get("Access-Control-Allow-Methods"))
		}
		if h.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("OPTIONS %s: Allow-Credentials = %q, want true", path, h.Get("Access-Control-Allow-Credentials"))
		}
	}
}

func TestHandlerRefusesOtherOrigins(t *testing.T) {
	srv, k := newServer(t, "k1:"+oldKeyHex)
	enc, err := codec.DataConverter(k).ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	const evil = "http://evil.example"
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	req.Header.Set("Origin", evil)
	req.Header.Set("Access-Control-Request-Method", "POST")
	pre, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	resp := post(t, srv, "/decode", evil, toUI(enc))
	body, _ := io.ReadAll(resp.Body)
	for name, r := range map[string]*http.Response{"preflight": pre, "POST": resp} {
		for h := range r.Header {
			if strings.HasPrefix(h, "Access-Control-") {
				t.Errorf("%s from %s got CORS header %s: %s", name, evil, h, r.Header.Get(h))
			}
		}
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("%s from %s = %d, want 403", name, evil, r.StatusCode)
		}
	}
	if bytes.Contains(body, []byte(canary)) {
		t.Error("a foreign origin got the decrypted payload")
	}
}

func TestHandlerErrors(t *testing.T) {
	srv, _ := newServer(t, "k1:"+oldKeyHex)
	other := codec.NewCodec(mustKeys(t, "k9:"+newKeyHex))
	foreign, err := other.Encode([]*commonpb.Payload{{Data: []byte(canary)}})
	if err != nil {
		t.Fatal(err)
	}
	// A 4xx makes the UI show the raw payload instead of retrying.
	resp := post(t, srv, "/decode", uiOrigin, toUI(foreign...))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `unknown key id "k9"`) {
		t.Errorf("decode with an unknown key = %d %s, want 400 naming the key id", resp.StatusCode, body)
	}
	if resp := post(t, srv, "/decode", uiOrigin, []byte("not json")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed body = %d, want 400", resp.StatusCode)
	}
	get, err := srv.Client().Get(srv.URL + "/decode")
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /decode = %d, want 405", get.StatusCode)
	}
	if resp := post(t, srv, "/other", uiOrigin, toUI(foreign...)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /other = %d, want 404", resp.StatusCode)
	}
}
