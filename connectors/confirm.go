package connectors

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// Details Run puts in confirmations it writes on a handler's behalf. They are
// fixed texts: a handler's error may quote the values it was working on, and
// a confirmation travels far beyond the service's own logs.
const (
	detailHandlerFailed = "the handler failed; the service's logs say why"
	// detailHandlerFailedPermanently answers a handler's Permanent error.
	detailHandlerFailedPermanently = "the handler failed and retrying cannot help; the service's logs say why"
	detailInvalidOutcome           = "handler returned an invalid outcome"
	detailInvalidResult            = "handler returned an invalid result: "
)

// NewConfirmation is the confirmation Run sends for cmd when its handler
// returned r, stamped with now. A result that would break the wire contract
// (an unknown outcome, retained without a legal basis, retryable without
// failing, bad derived identifiers…) becomes a definitive failure whose
// detail names the problem, because Lethe would reject it and keep waiting
// otherwise. The conformance kit builds its expectations with it too.
func NewConfirmation(cmd wire.Command, r Result, now time.Time) wire.Confirmation {
	c := wire.Confirmation{
		Schema:             wire.SchemaConfirmation,
		CommandID:          cmd.CommandID,
		RequestID:          cmd.RequestID,
		System:             cmd.System,
		Outcome:            r.Outcome,
		Records:            r.Records,
		Detail:             r.Detail,
		Retryable:          r.Retryable,
		DerivedIdentifiers: r.Derived,
		ConfirmedAt:        now.UTC(),
	}
	if !r.Outcome.Valid() {
		return failedConfirmation(c, detailInvalidOutcome)
	}
	if err := c.Validate(); err != nil {
		// wire's messages name fields, never values.
		reason := strings.TrimPrefix(err.Error(), wire.ErrMalformed.Error()+": ")
		return failedConfirmation(c, detailInvalidResult+reason)
	}
	return c
}

func failedConfirmation(c wire.Confirmation, detail string) wire.Confirmation {
	c.Outcome = wire.OutcomeFailed
	c.Records = 0
	c.Detail = detail
	c.Retryable = false
	c.DerivedIdentifiers = nil
	return c
}

// EncodeConfirmation is the Kafka message that carries c: on the
// confirmations topic, keyed by the request id so one request's
// confirmations stay in order on one partition, with the schema header.
func EncodeConfirmation(c wire.Confirmation) (kafka.Message, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode confirmation: %w", err)
	}
	return kafka.Message{
		Topic:   wire.ConfirmationsTopic,
		Key:     []byte(c.RequestID),
		Value:   b,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(c.Schema)}},
	}, nil
}

// EncodeCommand is the Kafka message that carries c to a system's command
// topic, keyed by the request id with the schema header. Lethe's dispatch
// and the tests that play Lethe's part build commands with it.
func EncodeCommand(topic string, c wire.Command) (kafka.Message, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode command: %w", err)
	}
	return kafka.Message{
		Topic:   topic,
		Key:     []byte(c.RequestID),
		Value:   b,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(c.Schema)}},
	}, nil
}
