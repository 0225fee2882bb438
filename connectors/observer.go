package connectors

import (
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// Observer receives Run's events, so that a service can count them in its
// own metrics library (Prometheus, OpenTelemetry, expvar) without the SDK
// depending on one. Every argument is of low cardinality and free of
// personal data: the system's name, an outcome, a fixed reason, a count, a
// duration. Run calls the methods from several goroutines at once, so they
// must be safe for concurrent use, and they should return quickly, since
// they run on the path of each command. Embed NopObserver to implement only
// some of them.
type Observer interface {
	// CommandHandled is called once the handler's confirmation of a
	// command is known: outcome is the confirmed one (failed after the
	// last retry, or after a panic), attempts how many times the handler
	// was called, d the time from the first call to the confirmation,
	// waits between retries included. A command abandoned at shutdown is
	// not reported.
	CommandHandled(system string, outcome wire.Outcome, attempts int, d time.Duration)
	// CommandDuplicate is called when a command is answered with a
	// recorded confirmation instead of calling the handler.
	CommandDuplicate(system string)
	// CommandDeadLettered is called for each message sent to the
	// dead-letter topic; reason is one of DLQMalformed, DLQOtherSystem,
	// DLQUnencodable, DLQUnsigned and DLQBadSignature.
	CommandDeadLettered(system, reason string)
	// HandlerRetried is called before each retry of a handler that
	// returned an error.
	HandlerRetried(system string)
}

// The reasons Observer.CommandDeadLettered reports. The message's
// wire.HeaderDLQReason header says more; these stay few so that a metric
// labelled with them stays small.
const (
	// DLQMalformed: the message is not a command of the wire format.
	DLQMalformed = "malformed"
	// DLQOtherSystem: the command is addressed to another system.
	DLQOtherSystem = "other_system"
	// DLQUnencodable: the command's confirmation could not be encoded.
	DLQUnencodable = "unencodable_confirmation"
)

// NopObserver ignores every event. It is Run's observer when
// Config.Observer is nil, and a base to embed in an observer that counts
// only some events.
type NopObserver struct{}

// CommandHandled does nothing.
func (NopObserver) CommandHandled(string, wire.Outcome, int, time.Duration) {}

// CommandDuplicate does nothing.
func (NopObserver) CommandDuplicate(string) {}

// CommandDeadLettered does nothing.
func (NopObserver) CommandDeadLettered(string, string) {}

// HandlerRetried does nothing.
func (NopObserver) HandlerRetried(string) {}

var _ Observer = NopObserver{}
