package codec

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/internal/httpx"

	"go.temporal.io/sdk/converter"
)

// maxRequestBytes bounds a codec request body. The UI sends the payloads of
// one history event at a time, and Temporal refuses payloads over 2 MiB.
const maxRequestBytes = 8 << 20

// Handler serves the codec endpoint the Temporal Web UI calls from the
// browser to show payloads decrypted: POST /decode and POST /encode with
// {"payloads":[…]} bodies (the SDK's remote codec contract). The UI lives on
// another origin than the endpoint, so the handler answers CORS preflights
// for allowedOrigins (scheme://host[:port], as the browser sends Origin) and
// refuses requests from any other origin. Requests without an Origin header
// (the temporal CLI's --codec-endpoint, curl) are served: CORS guards
// browsers, not the network, so the endpoint must listen only where its
// callers may decrypt.
//
// With access.Verifier set, /decode and /encode need a bearer credential
// carrying the codec:decode scope (the UI forwards the signed-in user's
// access token when its codec settings pass it); each call is logged with
// its actor, namespace and payload count, never a payload.
func Handler(k *Keyring, allowedOrigins []string, access Access) http.Handler {
	allowed := make([]string, 0, len(allowedOrigins))
	for _, o := range allowedOrigins {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			allowed = append(allowed, o)
		}
	}
	codec := converter.NewPayloadCodecHTTPHandler(NewCodec(k))
	mux := http.NewServeMux()
	for _, path := range []string{"/decode", "/encode"} {
		mux.Handle("POST "+path, access.guard(path, http.MaxBytesHandler(codec, maxRequestBytes)))
		mux.HandleFunc("OPTIONS "+path, func(w http.ResponseWriter, r *http.Request) {
			// Only allowed origins reach here (see below).
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			// The UI sends these; the Authorization pair only when its codec
			// settings pass the user's access token.
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization, Authorization-Extras")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" {
			if !slices.Contains(allowed, origin) {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			// The UI sends cookies when its codec settings ask to include
			// credentials; the browser then needs this answer.
			w.Header().Set("Access-Control-Allow-Credentials", "true")
		}
		mux.ServeHTTP(w, r)
	})
}

// Access says who may use the codec endpoint and where its calls are logged.
type Access struct {
	// Verifier checks the bearer credential of every /decode and /encode
	// call, which must carry auth.CodecDecode. Nil serves every caller: an
	// endpoint without it must listen on loopback only, which `lethe codec`
	// enforces.
	Verifier auth.Verifier
	// Log receives one line per call with its actor; nil discards them.
	Log *slog.Logger
	// Cookie, when set, names a cookie whose value is accepted as the
	// credential of a call that has no Authorization header. The Web UI
	// passes access tokens to https endpoints only; `lethe dev`, whose
	// codec endpoint is plain http on loopback, has its sign-in set this
	// cookie instead, which the UI sends with its codec settings'
	// includeCredentials. It is SameSite=Strict, and calls from other
	// origins are refused before this check, so other sites cannot use it.
	Cookie string
}

// guard authenticates a codec call and logs it once served.
func (a Access) guard(path string, next http.Handler) http.Handler {
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor := "anonymous"
		if a.Verifier != nil {
			p, status, code := a.check(r)
			if status != 0 {
				if status == http.StatusUnauthorized || status == http.StatusForbidden {
					w.Header().Set("WWW-Authenticate", `Bearer realm="lethe-codec"`)
				}
				log.LogAttrs(r.Context(), slog.LevelInfo, "codec call refused",
					slog.String("path", path), slog.String("code", code))
				writeError(w, status, code)
				return
			}
			actor = p.Subject
		}
		sw := httpx.NewStatusWriter(w)
		next.ServeHTTP(sw, r)
		log.LogAttrs(r.Context(), slog.LevelInfo, "codec call",
			slog.String("path", path), slog.String("actor", actor),
			slog.String("namespace", r.Header.Get("X-Namespace")), slog.Int("status", sw.Status()))
	})
}

// check returns the caller's principal, or the status and code refusing it.
func (a Access) check(r *http.Request) (auth.Principal, int, string) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if c, err := r.Cookie(a.Cookie); a.Cookie != "" && r.Header.Get("Authorization") == "" && err == nil {
		scheme, cred = "Bearer", c.Value
	}
	if !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return auth.Principal{}, http.StatusUnauthorized, "unauthenticated"
	}
	p, err := a.Verifier.Verify(r.Context(), cred)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return p, http.StatusUnauthorized, "unauthenticated"
	case err != nil:
		return p, http.StatusServiceUnavailable, "auth_unavailable"
	case !p.Has(auth.CodecDecode):
		return p, http.StatusForbidden, "insufficient_scope"
	}
	return p, 0, ""
}

func writeError(w http.ResponseWriter, status int, code string) {
	msg := map[string]string{
		"unauthenticated":    "the codec endpoint needs Authorization: Bearer <token> with the codec:decode scope",
		"insufficient_scope": "this credential lacks the codec:decode scope",
		"auth_unavailable":   "the credential could not be checked now; try again later",
	}[code]
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}})
}
