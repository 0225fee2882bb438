package webhook_test

import (
	"encoding/json"
	"net/http"
	"os"

	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/wire"
)

// A Go service that receives commands over HTTP guards its endpoint with the
// Verifier, and answers each command id the same way every time it comes.
func ExampleVerifier_Middleware() {
	v := &webhook.Verifier{Secret: []byte(os.Getenv("LETHE_WEBHOOK_SECRET"))}
	erase := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d webhook.Delivery
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
			http.Error(w, "bad delivery", http.StatusBadRequest)
			return
		}
		// Look up d.CommandID first: a command seen before gets its recorded
		// answer. Otherwise erase by d.Identifiers (or, with d.DryRun, count),
		// record the answer under d.CommandID, and send it.
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(webhook.Answer{Outcome: wire.OutcomeNotFound})
	})
	http.Handle("POST /lethe/erase", v.Middleware(erase))
}
