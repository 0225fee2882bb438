package relay

import (
	"encoding/json"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// decoded is one confirmation of a fetch with the message it came in:
// a single confirmation (conf), or a batch confirmation (batch, non-nil)
// answering many subjects of one chunk of a bulk erasure.
type decoded struct {
	msg   kafka.Message
	conf  wire.Confirmation
	batch *wire.BatchConfirmation
	// size is how long the confirmation is in a signal, encoded again as
	// Temporal encodes payloads; it can exceed the message's length, since
	// the encoder escapes characters a connector may have written bare.
	size int
}

// system is the system that sent d.
func (d decoded) system() string {
	if d.batch != nil {
		return d.batch.System
	}
	return d.conf.System
}

// scope is the id of the workflow d goes to, and under which it is
// audited: a confirmation's request_id, or a batch confirmation's
// batch_id, which is its chunk's id.
func (d decoded) scope() string {
	if d.batch != nil {
		return d.batch.BatchID
	}
	return d.conf.RequestID
}

// decodeMessage decodes m as the confirmation its schema names: its one
// wire.HeaderSchema header when it has one, else the schema field of its
// body. The error of a message that is neither kind wraps
// wire.ErrMalformed and names fields, never content.
func decodeMessage(m kafka.Message) (decoded, error) {
	d := decoded{msg: m}
	var err error
	switch messageSchema(m) {
	case wire.SchemaBatchConfirmation:
		var c wire.BatchConfirmation
		if c, err = wire.DecodeBatchConfirmation(m.Value); err == nil {
			d.batch = &c
			d.size, err = encodedSize(c)
		}
	case wire.SchemaConfirmation, "":
		// No schema could be read: the single decoder says what is wrong
		// with the message, as it did before batches existed.
		if d.conf, err = wire.DecodeConfirmation(m.Value); err == nil {
			d.size, err = encodedSize(d.conf)
		}
	default:
		err = fmt.Errorf("%w: schema is neither %q nor %q", wire.ErrMalformed, wire.SchemaConfirmation, wire.SchemaBatchConfirmation)
	}
	return d, err
}

// messageSchema is the schema m says it carries, as the connector SDK
// reads it: its one HeaderSchema header, or without one the schema field
// of its body; "" when neither can be read.
func messageSchema(m kafka.Message) string {
	if s, ok := header(m, wire.HeaderSchema); ok {
		return s
	}
	if len(m.Value) > wire.MaxMessageBytes {
		return ""
	}
	var envelope struct {
		Schema string `json:"schema"`
	}
	if json.Unmarshal(m.Value, &envelope) != nil {
		return ""
	}
	return envelope.Schema
}

// encodedSize is how many bytes v takes once encoded as Temporal's
// payload converter encodes it. A confirmation that cannot be encoded
// could never be signaled and is malformed.
func encodedSize(v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("%w: cannot be encoded for its workflow", wire.ErrMalformed)
	}
	return len(b), nil
}

// batchParts splits a batch confirmation whose encoding exceeds
// maxSignalBytes into confirmations of the same command, each with some of
// its items in their order and each within maxSignalBytes; an item larger
// than that on its own is a part alone, which wire's limits keep under
// Temporal's payload limit. The workflow takes the parts as it takes an
// answer its connector split (wire.PackBatchConfirmations). A confirmation
// within the bound is its one part. Sizes are exact: encoding/json writes
// an array as its elements' encodings joined by commas.
func batchParts(d decoded) []decoded {
	if d.size <= maxSignalBytes {
		return []decoded{d}
	}
	c := *d.batch
	c.Items = nil
	base, _ := encodedSize(c) // its items encode as null; with items, as [a,b,…]
	base += len("[]") - len("null")
	var parts []decoded
	from, size := 0, base
	cut := func(to int) {
		p := *d.batch
		p.Items = d.batch.Items[from:to]
		parts = append(parts, decoded{msg: d.msg, batch: &p, size: size})
	}
	for i, it := range d.batch.Items {
		n, _ := encodedSize(it) // it was encoded with the whole confirmation
		if i > from {
			n++ // the comma
		}
		if i > from && size+n > maxSignalBytes {
			cut(i)
			from, size, n = i, base, n-1
		}
		size += n
	}
	cut(len(d.batch.Items))
	return parts
}

// signal is one signal to send to a workflow: confirmations of one kind,
// in the order they were read.
type signal struct {
	batch         bool
	confirmations []wire.Confirmation
	batches       []wire.BatchConfirmation
	size          int
}

// name and payload are the signal's name and argument for SignalWorkflow.
func (s *signal) name() string {
	if s.batch {
		return workflows.SignalBatchConfirm
	}
	return workflows.SignalConfirm
}

func (s *signal) payload() any {
	if s.batch {
		return workflows.BatchConfirmSignal{Confirmations: s.batches}
	}
	return workflows.ConfirmSignal{Confirmations: s.confirmations}
}

// len is how many confirmations the signal carries.
func (s *signal) len() int { return len(s.confirmations) + len(s.batches) }

// target is what one fetch holds for one workflow: its confirmations and
// its batch confirmations, each kind coalesced into signals of at most
// maxSignalBytes (a single confirmation larger than that goes alone). The
// signals go in the order their first confirmation was read, so each
// kind's confirmations reach the workflow in the order read.
type target struct {
	id      string
	signals []*signal
	// open is the last signal of each kind (single, batch), which takes
	// the next confirmation of its kind while it has room.
	open [2]*signal
}

// add puts d, or its parts, in the target's signals.
func (t *target) add(d decoded) {
	if d.batch == nil {
		s := t.take(false, d.size)
		s.confirmations = append(s.confirmations, d.conf)
		return
	}
	for _, p := range batchParts(d) {
		s := t.take(true, p.size)
		s.batches = append(s.batches, *p.batch)
	}
}

// take returns the signal of its kind (batch or single) that gets a
// confirmation of size bytes, opening a new one when the last has no
// room, and counts the size. A signal is never left empty.
func (t *target) take(batch bool, size int) *signal {
	k := 0
	if batch {
		k = 1
	}
	s := t.open[k]
	if s == nil || s.size+size > maxSignalBytes {
		s = &signal{batch: batch}
		t.open[k] = s
		t.signals = append(t.signals, s)
	}
	s.size += size
	return s
}
