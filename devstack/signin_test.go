package devstack_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/devstack"
)

// TestUISignInPassesTheAccessToken walks the Web UI's sign-in as a browser
// does: the UI sends the browser to the dev provider, which hands a code
// back to the UI's callback only, and the UI keeps the dev token as the
// user's access token, the one it passes to the codec endpoint.
func TestUISignInPassesTheAccessToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startTemporal(t, ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", Namespace: "signin-test", Ephemeral: true})

	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	const token = "lethe_dev_test-token"
	si, err := devstack.NewSignIn(idp.URL+"/oidc", token)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/oidc/", http.StripPrefix("/oidc", si.Handler()))
	ui, err := devstack.StartUI(devstack.UIConfig{Addr: "127.0.0.1:0", TemporalAddress: srv.Address(),
		Namespace: srv.Namespace(), CodecEndpoint: "http://127.0.0.1:1", SignIn: si})
	if err != nil {
		t.Fatalf("StartUI: %v", err)
	}
	defer ui.Stop()

	// Without signing in, the UI's API refuses.
	if code, _ := get(t, ctx, ui.URL()+"/api/v1/namespaces"); code != http.StatusUnauthorized {
		t.Errorf("UI API without a session = %d, want 401", code)
	}
	// A code is never sent anywhere but the UI's callback.
	evil := si.Issuer() + "/authorize?" + url.Values{"client_id": {devstack.DevClientID},
		"redirect_uri": {"http://attacker.example/cb"}, "response_type": {"code"}, "state": {"x"}}.Encode()
	if code, _ := get(t, ctx, evil); code != http.StatusBadRequest {
		t.Errorf("authorize to a foreign redirect_uri = %d, want 400", code)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := browser.Get(ui.URL() + "/auth/sso")
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	resp.Body.Close()
	u, _ := url.Parse(ui.URL())
	var parts []*http.Cookie
	for _, c := range jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "user") {
			parts = append(parts, c)
		}
	}
	if len(parts) == 0 {
		t.Fatalf("the UI set no user cookie after sign-in (last status %d)", resp.StatusCode)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Name < parts[j].Name })
	var b64 strings.Builder
	for _, c := range parts {
		b64.WriteString(c.Value)
	}
	raw, err := base64.StdEncoding.DecodeString(b64.String())
	if err != nil {
		t.Fatalf("user cookie is not base64: %v", err)
	}
	var user struct{ AccessToken, IDToken string }
	if err := json.Unmarshal(raw, &user); err != nil {
		t.Fatalf("user cookie: %v", err)
	}
	if user.AccessToken != token || user.IDToken == "" {
		t.Fatalf("UI session holds access token %q and ID token %t, want the dev token and an ID token", user.AccessToken, user.IDToken != "")
	}
	// The session works on the UI's own API, as the browser then uses it.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ui.URL()+"/api/v1/namespaces", nil)
	req.Header.Set("Authorization", "Bearer "+user.AccessToken)
	req.Header.Set("Authorization-Extras", user.IDToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("UI API with the session = %d, want 200", res.StatusCode)
	}
}
