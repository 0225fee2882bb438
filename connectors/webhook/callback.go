package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lethe-dev/lethe/connectors"
)

// Error codes of the callback server's answers, besides the Verifier's
// (missing_signature, invalid_signature, stale_signature, body_too_large,
// unreadable_body), which it shares.
const (
	CodeInvalidAnswer  = "invalid_answer"
	CodeUnknownCommand = "unknown_command"
	CodeBusy           = "busy"
	CodeNotReady       = "not_ready"
	CodeUnavailable    = "unavailable"
)

// CallbackPath is the route of the callback server; the endpoint posts to
// /callbacks/<command_id>.
const CallbackPath = "/callbacks/{command_id}"

// AttachFinish is how connectors.Run hands the connector the function that
// confirms a deferred command, which the callback server calls.
func (c *Connector) AttachFinish(finish connectors.FinishFunc) { c.finish.Store(&finish) }

// CallbackHandler serves the endpoint's callbacks: POST
// /callbacks/{command_id}, signed like the connector's own requests
// (Lethe-Signature over the body, with the callback secret), with the body
// of a 200 answer (Answer). The answer is confirmed as the status URL's
// final answer would be, and the command is forgotten. A bad or missing
// signature answers 401 and writes nothing; an invalid body 400; a command
// that is not waiting 404; a repeat of a callback already confirmed 200.
// Repeats are not refused as replays, unlike the Verifier's: the command id
// makes them harmless. It answers 503 until connectors.Run has attached.
func (c *Connector) CallbackHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+CallbackPath, c.serveCallback)
	return mux
}

func (c *Connector) serveCallback(w http.ResponseWriter, r *http.Request) {
	if _, _, _, err := authenticate(r, c.callbackSecret, c.cfg.Now(), DefaultWindow); err != nil {
		status, code := rejection(err)
		writeError(w, status, code, err.Error())
		return
	}
	body, _ := readBody(r.Body) // put back, whole, by authenticate
	res, problem := decodeAnswer(body)
	if problem != "" {
		writeError(w, http.StatusBadRequest, CodeInvalidAnswer, "callback: "+problem)
		return
	}
	finish := c.finish.Load()
	if finish == nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeNotReady, "the connector is starting; try again shortly")
		return
	}
	err := (*finish)(r.Context(), r.PathValue("command_id"), res)
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"confirmed"}` + "\n"))
	case errors.Is(err, connectors.ErrNotDeferred):
		writeError(w, http.StatusNotFound, CodeUnknownCommand, "no command of this id is waiting for a callback")
	case errors.Is(err, connectors.ErrDeferredBusy):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeBusy, "the command's status url is being polled right now; try again shortly")
	default:
		c.log.Error("confirm a callback", "error_type", fmt.Sprintf("%T", errors.Unwrap(err)))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "the confirmation could not be written; try again later")
	}
}

// serveCallbacks runs the callback server on ln until ctx ends.
func (c *Connector) serveCallbacks(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: c.CallbackHandler(), ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
