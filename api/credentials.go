package api

import (
	"encoding/hex"
	"net/http"

	"github.com/lethe-dev/lethe"
)

// credentialResponse is the body of POST /v1/systems/{name}/credentials.
// The secret is shown this once: Lethe stores only the key id and derives
// the secret again from LETHE_SYSTEM_KEY when it signs or checks.
type credentialResponse struct {
	KeyID  string `json:"key_id"`
	Secret string `json:"secret"`
}

// issueCredential gives a system a new signing credential. From then on
// its commands are signed and its confirmations must be; its older
// credentials stay valid for the configured overlap, the time its connector
// has to be redeployed with the new secret.
func (s *Server) issueCredential(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !lethe.ValidSystemName(name) {
		s.writeError(w, r, invalidName())
		return
	}
	if s.systemKey == nil {
		s.writeError(w, r, lethe.Errorf(lethe.KindUnavailable, "system_key_missing",
			"LETHE_SYSTEM_KEY is not configured: this deployment issues no signing credentials"))
		return
	}
	keyID, err := s.store.IssueCredential(r.Context(), name, actorOf(r), s.overlap)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, credentialResponse{
		KeyID:  keyID,
		Secret: hex.EncodeToString(s.systemKey.Secret(keyID)),
	})
}
