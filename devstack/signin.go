package devstack

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DevClientID is the OAuth client id of `lethe dev`'s Web UI at its sign-in
// provider.
const DevClientID = "lethe-dev-ui"

// CodecCookie is the cookie the sign-in sets for `lethe dev`'s codec
// endpoint (see codec.Access.Cookie).
const CodecCookie = "lethe_dev_codec"

// signInTTL is how long a dev session's tokens last before the UI refreshes
// them, and codeTTL how long an authorization code may wait to be redeemed.
const (
	signInTTL = 12 * time.Hour
	codeTTL   = time.Minute
)

// SignIn is the OpenID provider `lethe dev` runs for its Temporal Web UI. It
// exists so that the UI works as it does behind a company's SSO: the UI
// signs its user in, keeps the access token, and passes it to the codec
// endpoint (Codec.PassAccessToken), which then checks it like any API
// credential. The provider signs in whoever reaches the UI on this machine,
// without a password, and hands out the dev token as the access token: on a
// loopback-only dev stack that is the person at the terminal, who was shown
// the dev token anyway. It redirects only to the UI's own callback, so no
// other site can obtain a code.
type SignIn struct {
	issuer   string
	callback string
	secret   string
	token    string
	key      *rsa.PrivateKey
	kid      string
	now      func() time.Time

	mu      sync.Mutex
	codes   map[string]pendingCode // authorization code → what it grants
	refresh map[string]bool        // refresh tokens handed out
}

type pendingCode struct {
	nonce   string
	expires time.Time
}

// NewSignIn builds the provider that answers under issuer (a URL whose
// handler is Handler, prefix stripped) and hands out accessToken. StartUI
// registers the UI's callback, the one place it redirects to.
func NewSignIn(issuer, accessToken string) (*SignIn, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &SignIn{
		issuer: issuer, token: accessToken,
		secret: randomHex(16), key: key, kid: randomHex(8), now: time.Now,
		codes: map[string]pendingCode{}, refresh: map[string]bool{},
	}, nil
}

// Issuer is the provider's issuer URL, which the UI discovers it from.
func (s *SignIn) Issuer() string { return s.issuer }

// ClientSecret is the secret the UI authenticates to the provider with.
func (s *SignIn) ClientSecret() string { return s.secret }

// Callback is the one redirect URI the provider sends codes to; empty
// until StartUI registered its own.
func (s *SignIn) Callback() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callback
}

func (s *SignIn) setCallback(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callback = u
}

// Handler serves the discovery document, the keys, the authorization
// endpoint and the token endpoint, at paths relative to the issuer.
func (s *SignIn) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /jwks", s.jwks)
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.tokenEndpoint)
	return mux
}

func (s *SignIn) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSONBody(w, http.StatusOK, map[string]any{
		"issuer":                                s.issuer,
		"authorization_endpoint":                s.issuer + "/authorize",
		"token_endpoint":                        s.issuer + "/token",
		"jwks_uri":                              s.issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
	})
}

func (s *SignIn) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSONBody(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: string(jose.RS256), Use: "sig"},
	}})
}

// authorize grants a code at once, to the registered callback only.
func (s *SignIn) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	callback := s.Callback()
	switch {
	case q.Get("client_id") != DevClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case callback == "" || q.Get("redirect_uri") != callback:
		http.Error(w, "redirect_uri is not the Web UI's callback", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "only response_type=code is supported", http.StatusBadRequest)
		return
	}
	code := randomHex(16)
	// The UI passes access tokens to https codec endpoints only; the dev
	// codec endpoint is plain http, so the browser gets the token as a
	// cookie of this host (any port), which the UI's codec calls carry.
	http.SetCookie(w, &http.Cookie{Name: CodecCookie, Value: s.token, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int(signInTTL / time.Second)})
	s.mu.Lock()
	for c, p := range s.codes {
		if s.now().After(p.expires) {
			delete(s.codes, c)
		}
	}
	s.codes[code] = pendingCode{nonce: q.Get("nonce"), expires: s.now().Add(codeTTL)}
	s.mu.Unlock()
	to, _ := url.Parse(callback)
	v := to.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	to.RawQuery = v.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

// tokenEndpoint redeems a code once, or a refresh token, for the dev token
// and a signed ID token.
func (s *SignIn) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != DevClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.secret)) != 1 {
		oauthError(w, "invalid_client")
		return
	}
	var nonce string
	callback := s.Callback()
	s.mu.Lock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p, found := s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code"))
		if !found || s.now().After(p.expires) || r.PostForm.Get("redirect_uri") != callback {
			s.mu.Unlock()
			oauthError(w, "invalid_grant")
			return
		}
		nonce = p.nonce
	case "refresh_token":
		if !s.refresh[r.PostForm.Get("refresh_token")] {
			s.mu.Unlock()
			oauthError(w, "invalid_grant")
			return
		}
	default:
		s.mu.Unlock()
		oauthError(w, "unsupported_grant_type")
		return
	}
	refresh := randomHex(16)
	s.refresh[refresh] = true
	s.mu.Unlock()
	idToken, err := s.idToken(nonce)
	if err != nil {
		oauthError(w, "server_error")
		return
	}
	writeJSONBody(w, http.StatusOK, map[string]any{
		"access_token":  s.token,
		"token_type":    "Bearer",
		"expires_in":    int(signInTTL / time.Second),
		"id_token":      idToken,
		"refresh_token": refresh,
	})
}

// idToken signs the dev user's ID token for the UI.
func (s *SignIn) idToken(nonce string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		return "", err
	}
	now := s.now()
	claims := struct {
		jwt.Claims
		Nonce string `json:"nonce,omitempty"`
		Name  string `json:"name"`
	}{
		Claims: jwt.Claims{
			Issuer: s.issuer, Subject: "dev", Audience: jwt.Audience{DevClientID},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(signInTTL)),
		},
		Nonce: nonce,
		Name:  "lethe dev",
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func oauthError(w http.ResponseWriter, code string) {
	writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": code})
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
