package devstack_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/internal/testenv"
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

	user := testenv.UISession(t, ui.URL())
	// The dev codec endpoint is plain http, to which the UI passes no
	// token: the sign-in leaves the token in a cookie its calls carry.
	var codecCookie string
	for _, c := range user.Cookies {
		if c.Name == devstack.CodecCookie {
			codecCookie = c.Value
		}
	}
	if codecCookie != token {
		t.Errorf("codec cookie after sign-in = %q, want the dev token", codecCookie)
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
