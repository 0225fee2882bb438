// Package connectors is the SDK a service imports to take part in erasures:
// it reads the service's commands from Kafka, calls the service's Handler and
// sends the confirmation back. Service teams build it into their own
// binaries, so it depends on the standard library, kafka-go (with its SASL
// mechanisms), uuid, the wire format and package digest only.
//
// Run carries the guarantees a connector would otherwise get wrong: at
// least once delivery with offsets committed only after the confirmation is
// acknowledged; de-duplication by command id, in a store replicas may share
// (NewPostgresDedup); retries with backoff for transient handler errors;
// recovered panics; dead letters for malformed commands; bounded
// concurrency that keeps each request's commands in order; graceful
// shutdown; TLS and SASL; logs free of identifier values; and an Observer
// for metrics. A handler whose work outlives a call (a vendor that answers
// days later) implements Resumer: its command is committed at once and
// resumed in the background, so it holds up no other command.
//
// A service that restores a backup uses a SuppressionList to find the
// restored subjects Lethe had erased, and ReErase to erase them again
// through its Handler.
package connectors

import (
	"context"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// Handler is the one interface a service implements: erase what it holds
// under the given identifiers and say what happened. It must be idempotent
// (a command can arrive more than once) and, when req.DryRun is set, change
// nothing while reporting what it would erase.
type Handler interface {
	Erase(ctx context.Context, req Request) (Result, error)
}

// HandlerFunc adapts a plain function to Handler.
type HandlerFunc func(ctx context.Context, req Request) (Result, error)

// Erase calls f.
func (f HandlerFunc) Erase(ctx context.Context, req Request) (Result, error) { return f(ctx, req) }

// Request is one erasure command as the handler sees it. For an item of a
// batch command passed to a plain Handler, RequestID is the item's id and
// CommandID is ItemCommandID of the batch command and the item.
type Request struct {
	CommandID string
	RequestID string
	System    string
	Attempt   int
	// Identifiers holds only the identifier types this system declared.
	// The values are personal data: never log them.
	Identifiers []wire.Identifier
	DryRun      bool
	IssuedAt    time.Time
	ConfirmBy   time.Time
}

// Values returns the values of the identifiers of one type, the common way a
// handler builds its DELETE statements.
func (r Request) Values(idType string) []string {
	var out []string
	for _, id := range r.Identifiers {
		if id.Type == idType {
			out = append(out, id.Value)
		}
	}
	return out
}

// Result is what a handler reports. A nil error with Outcome failed is a
// definitive failure unless Retryable is set; a non-nil error is treated as
// transient.
type Result struct {
	Outcome wire.Outcome
	// Records counts what was erased, or with DryRun what would be.
	Records int64
	// Detail explains the outcome for people; for retained it must name the
	// legal basis. Never put identifier values in it.
	Detail    string
	Retryable bool
	// Derived are further identifiers of the same subject the handler found,
	// which Lethe sends on to the systems that erase by their types.
	Derived []wire.Identifier

	// later, set by Later, says the handler has not finished.
	later *later
}
