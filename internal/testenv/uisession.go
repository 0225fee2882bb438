package testenv

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// Session is what a browser holds once signed in to the Web UI.
type Session struct {
	// AccessToken is the user's access token, which the UI passes to an
	// https codec endpoint; IDToken is what it sends its own API.
	AccessToken, IDToken string
	// Cookies are the browser's cookies for the UI's host (any port), which
	// the UI's codec calls carry when its settings include credentials.
	Cookies []*http.Cookie
}

// UISession signs in to a Temporal Web UI that has a sign-in provider, as
// a browser does (following the redirects with a cookie jar), and returns
// what the browser then holds.
func UISession(t testing.TB, uiURL string) Session {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := browser.Get(uiURL + "/auth/sso")
	if err != nil {
		t.Fatalf("testenv: sign in to the UI: %v", err)
	}
	resp.Body.Close()
	u, _ := url.Parse(uiURL)
	var parts []*http.Cookie
	for _, c := range jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "user") {
			parts = append(parts, c)
		}
	}
	if len(parts) == 0 {
		t.Fatalf("testenv: the UI set no user cookie after sign-in (last status %d)", resp.StatusCode)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Name < parts[j].Name })
	var b64 strings.Builder
	for _, c := range parts {
		b64.WriteString(c.Value)
	}
	raw, err := base64.StdEncoding.DecodeString(b64.String())
	if err != nil {
		t.Fatalf("testenv: the UI's user cookie is not base64: %v", err)
	}
	var user struct{ AccessToken, IDToken string }
	if err := json.Unmarshal(raw, &user); err != nil {
		t.Fatalf("testenv: the UI's user cookie: %v", err)
	}
	return Session{AccessToken: user.AccessToken, IDToken: user.IDToken, Cookies: jar.Cookies(u)}
}
