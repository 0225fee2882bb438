package codec

import (
	"net/http"
	"slices"
	"strings"

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
func Handler(k *Keyring, allowedOrigins []string) http.Handler {
	allowed := make([]string, 0, len(allowedOrigins))
	for _, o := range allowedOrigins {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			allowed = append(allowed, o)
		}
	}
	codec := converter.NewPayloadCodecHTTPHandler(NewCodec(k))
	mux := http.NewServeMux()
	for _, path := range []string{"/decode", "/encode"} {
		mux.Handle("POST "+path, http.MaxBytesHandler(codec, maxRequestBytes))
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
