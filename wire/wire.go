// Package wire defines Lethe's Kafka wire format: the erasure command sent to
// each system's topic and the confirmation each system sends back, and their
// batch forms (batch.go) for systems that erase many subjects at once. It is the
// one contract shared by the orchestrator and every connector, so it depends
// on the standard library only and validates strictly in both directions.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
)

// Schema names carried in the message body and in the HeaderSchema header.
const (
	SchemaCommand      = "erasure.command.v1"
	SchemaConfirmation = "erasure.confirmation.v1"
)

// Kafka names fixed by the contract.
const (
	// HeaderSchema carries the schema value so consumers can route without decoding.
	HeaderSchema = "lethe-schema"
	// HeaderDLQReason carries, on a dead-lettered message, why it was rejected.
	HeaderDLQReason = "lethe-dlq-reason"
	// ConfirmationsTopic is where every system sends its confirmations.
	ConfirmationsTopic = "lethe.erasure.confirmations"
	// TopicPrefix prefixes a system's default command topic.
	TopicPrefix = "lethe.erasure."
	// DLQSuffix is appended to a topic's name to name its dead-letter topic.
	DLQSuffix = ".dlq"
)

// MaxMessageBytes bounds what a decoder accepts; a larger message is malformed.
const MaxMessageBytes = 1 << 20

// DefaultTopic is the command topic of a system that names none.
func DefaultTopic(system string) string { return TopicPrefix + system }

// DLQTopic is the dead-letter topic that goes with topic.
func DLQTopic(topic string) string { return topic + DLQSuffix }

// Identifier is one identifier of a data subject: its type (user_id, email)
// and its value. Values are personal data: never log them.
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Outcome is what a system reports it did with a command.
type Outcome string

// The outcomes of the contract.
const (
	OutcomeErased   Outcome = "erased"
	OutcomeNotFound Outcome = "not_found"
	OutcomeRetained Outcome = "retained"
	OutcomeFailed   Outcome = "failed"
)

// Valid reports whether o is one of the contract's outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeErased, OutcomeNotFound, OutcomeRetained, OutcomeFailed:
		return true
	}
	return false
}

// Command tells one system to erase what it holds under some identifiers.
type Command struct {
	Schema      string       `json:"schema"`
	CommandID   string       `json:"command_id"`
	RequestID   string       `json:"request_id"`
	System      string       `json:"system"`
	Attempt     int          `json:"attempt"`
	Identifiers []Identifier `json:"identifiers"`
	IssuedAt    time.Time    `json:"issued_at"`
	ConfirmBy   time.Time    `json:"confirm_by"`
	DryRun      bool         `json:"dry_run"`
}

// Confirmation is a system's answer to a command.
type Confirmation struct {
	Schema             string       `json:"schema"`
	CommandID          string       `json:"command_id"`
	RequestID          string       `json:"request_id"`
	System             string       `json:"system"`
	Outcome            Outcome      `json:"outcome"`
	Records            int64        `json:"records"`
	Detail             string       `json:"detail"`
	Retryable          bool         `json:"retryable"`
	DerivedIdentifiers []Identifier `json:"derived_identifiers,omitempty"`
	ConfirmedAt        time.Time    `json:"confirmed_at"`
}

// MaxDetailBytes bounds a confirmation's detail text.
const MaxDetailBytes = 4096

// MaxIdentifiers bounds how many identifiers a message may carry.
const MaxIdentifiers = 256

// MaxValueBytes bounds one identifier value.
const MaxValueBytes = 1024

var (
	uuidRe   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	systemRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	typeRe   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// ErrMalformed is wrapped by every decoding and validation error, so callers
// can tell a bad message (dead-letter it) from a failure of their own.
var ErrMalformed = errors.New("malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ValidID reports whether s has the form of a request or command id: a
// lower-case UUID.
func ValidID(s string) bool { return uuidRe.MatchString(s) }

// ValidSystemName reports whether s may name a system. The connector SDK
// checks its configuration with it, so a misnamed service fails at start
// rather than dead-lettering every command it reads.
func ValidSystemName(s string) bool { return systemRe.MatchString(s) }

// ValidIdentifierType reports whether s may name an identifier type. The
// connector SDK checks the types it is configured with, and those of the
// identifiers it is asked about, with it.
func ValidIdentifierType(s string) bool { return typeRe.MatchString(s) }

func validIdentifiers(ids []Identifier, field string, required bool) error {
	if required && len(ids) == 0 {
		return malformed("%s is empty", field)
	}
	if len(ids) > MaxIdentifiers {
		return malformed("%s has more than %d entries", field, MaxIdentifiers)
	}
	for i, id := range ids {
		if !typeRe.MatchString(id.Type) {
			return malformed("%s[%d].type is not a valid identifier type", field, i)
		}
		if id.Value == "" {
			return malformed("%s[%d].value is empty", field, i)
		}
		if len(id.Value) > MaxValueBytes {
			return malformed("%s[%d].value is longer than %d bytes", field, i, MaxValueBytes)
		}
	}
	return nil
}

// Validate reports the first way c breaks the contract, wrapping ErrMalformed.
// Its messages name fields, never identifier values.
func (c Command) Validate() error {
	if err := validEnvelope(c.Schema, SchemaCommand, c.CommandID, "request_id", c.RequestID, c.System); err != nil {
		return err
	}
	if err := validDispatch(c.Attempt, c.IssuedAt, c.ConfirmBy); err != nil {
		return err
	}
	return validIdentifiers(c.Identifiers, "identifiers", true)
}

// validEnvelope checks what every message, single or batch, command or
// confirmation, carries before what it says of its subjects: its schema,
// its command, the request or batch it belongs to (scope names the field)
// and its system.
func validEnvelope(schema, want, commandID, scope, scopeID, system string) error {
	switch {
	case schema != want:
		return malformed("schema is not %q", want)
	case !ValidID(commandID):
		return malformed("command_id is not a UUID")
	case !ValidID(scopeID):
		return malformed("%s is not a UUID", scope)
	case !systemRe.MatchString(system):
		return malformed("system is not a valid system name")
	}
	return nil
}

// validDispatch checks a command's attempt and times.
func validDispatch(attempt int, issuedAt, confirmBy time.Time) error {
	if attempt < 1 {
		return malformed("attempt is below 1")
	}
	if err := validTime("issued_at", issuedAt); err != nil {
		return err
	}
	return validTime("confirm_by", confirmBy)
}

// validTime checks a required time field named name.
func validTime(name string, t time.Time) error {
	switch {
	case t.IsZero():
		return malformed("%s is missing", name)
	case !encodable(t):
		return malformed("%s is not a time RFC 3339 can carry", name)
	}
	return nil
}

// Validate reports the first way c breaks the contract, wrapping ErrMalformed.
func (c Confirmation) Validate() error {
	if err := validEnvelope(c.Schema, SchemaConfirmation, c.CommandID, "request_id", c.RequestID, c.System); err != nil {
		return err
	}
	if err := validResult("", c.Outcome, c.Records, c.Detail, c.Retryable); err != nil {
		return err
	}
	if err := validTime("confirmed_at", c.ConfirmedAt); err != nil {
		return err
	}
	return validIdentifiers(c.DerivedIdentifiers, "derived_identifiers", false)
}

// validResult checks what a confirmation, or one item of a batch
// confirmation, says about one subject, derived identifiers aside; prefix
// names the item.
func validResult(prefix string, o Outcome, records int64, detail string, retryable bool) error {
	switch {
	case !o.Valid():
		return malformed("%soutcome is not one of erased, not_found, retained, failed", prefix)
	case records < 0:
		return malformed("%srecords is negative", prefix)
	case len(detail) > MaxDetailBytes:
		return malformed("%sdetail is longer than %d bytes", prefix, MaxDetailBytes)
	case o == OutcomeRetained && detail == "":
		return malformed("%sa retained outcome must name its legal basis in detail", prefix)
	case retryable && o != OutcomeFailed:
		return malformed("%sretryable is only meaningful with outcome failed", prefix)
	}
	return nil
}

// encodable reports whether t can be written as RFC 3339 again. The JSON
// decoder accepts offsets no encoder writes back (+24:00, +23:60): a message
// holding one would pass here and then fail every time it is passed on, a
// confirmation the relay could never signal blocking its partition for good.
func encodable(t time.Time) bool {
	_, err := t.MarshalText()
	return err == nil
}

func decode(b []byte, v any) error {
	if len(b) > MaxMessageBytes {
		return malformed("message is larger than %d bytes", MaxMessageBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return malformed("not valid JSON for this schema: %s", jsonErrorText(err))
	}
	if dec.More() {
		return malformed("trailing data after the JSON object")
	}
	return nil
}

// jsonErrorText describes a decoding error without quoting the input, which
// may hold identifier values.
func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	case errors.Is(err, io.EOF):
		return "empty message"
	default:
		return "cannot decode"
	}
}

// DecodeCommand parses and validates a command. Unknown fields are allowed so
// that a newer Lethe can add some without breaking older connectors.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := decode(b, &c); err != nil {
		return Command{}, err
	}
	return c, c.Validate()
}

// DecodeConfirmation parses and validates a confirmation.
func DecodeConfirmation(b []byte) (Confirmation, error) {
	var c Confirmation
	if err := decode(b, &c); err != nil {
		return Confirmation{}, err
	}
	return c, c.Validate()
}
