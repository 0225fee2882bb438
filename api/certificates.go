package api

import (
	"net/http"

	"github.com/lethe-dev/lethe/wire"
)

// getCertificate answers a finished request's certificate of erasure: the
// stored file, byte for byte, or a new one issued, signed and stored on the
// first call. Its bytes are the certificate, so they are written as they
// are rather than re-encoded.
func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, erasureNotFound())
		return
	}
	doc, err := s.issuer.Certificate(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeFile(w, "erasure-"+id+".certificate.json", doc)
}

// writeFile answers a JSON file whose bytes are its meaning (a signed
// certificate, an inclusion proof): written as they are rather than
// re-encoded, under the name a browser saves it as. name is built from
// ids only, never from anything a client typed.
func writeFile(w http.ResponseWriter, name string, doc []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

// listKeys answers the public keys that verify this deployment's
// certificates, the active one first, so that an auditor can fetch them
// once and verify certificates offline afterwards.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.keys)
}
