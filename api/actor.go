package api

import (
	"net/http"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
)

// actorOf names who makes a request: the subject of the principal the
// authentication middleware put in its context, which the registry records
// on what the request writes and on its audit events. It is empty when the
// route is open or authentication is off.
func actorOf(r *http.Request) string {
	p, _ := auth.FromContext(r.Context())
	return p.Subject
}

// systemWrite is who changes the registry in a request, and whether they may
// move an existing system's commands to another topic: only with the
// systems:admin scope, and never without a principal, so that a missing
// middleware fails closed.
func systemWrite(r *http.Request) registry.SystemWrite {
	p, ok := auth.FromContext(r.Context())
	return registry.SystemWrite{Actor: p.Subject, MayChangeTopic: ok && p.Has(auth.SystemsAdmin)}
}
