package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Schema names of the batch messages, which carry many subjects of one
// bulk erasure to a system that declared "batch": true, and their
// outcomes back. They travel on the same topics as the single messages;
// consumers tell them apart by HeaderSchema.
const (
	SchemaBatchCommand      = "erasure.batch_command.v1"
	SchemaBatchConfirmation = "erasure.batch_confirmation.v1"
)

// Limits of a batch message. A batch command carries at most
// MaxBatchItems items and is at most MaxBatchBytes long encoded; a batch
// confirmation likewise. MaxBatchBytes leaves room under MaxMessageBytes
// (and under a broker's default message.max.bytes, 1 MiB and 12 bytes) for
// the record's key, headers and framing.
const (
	MaxBatchItems = 1000
	MaxBatchBytes = MaxMessageBytes - 16<<10
)

// BatchItem is one subject of a batch command: its id within the batch and
// its identifiers, of the types the system declared only.
type BatchItem struct {
	ItemID      string       `json:"item_id"`
	Identifiers []Identifier `json:"identifiers"`
}

// BatchCommand tells one system to erase many subjects at once. It has a
// Command's fields, with BatchID in place of RequestID and Items in place
// of Identifiers; a new attempt keeps the command id and may carry only the
// items that failed.
type BatchCommand struct {
	Schema    string      `json:"schema"`
	CommandID string      `json:"command_id"`
	BatchID   string      `json:"batch_id"`
	System    string      `json:"system"`
	Attempt   int         `json:"attempt"`
	Items     []BatchItem `json:"items"`
	IssuedAt  time.Time   `json:"issued_at"`
	ConfirmBy time.Time   `json:"confirm_by"`
	DryRun    bool        `json:"dry_run"`
}

// ItemOutcome is a system's answer for one item of a batch command: the
// fields of a Confirmation that concern one subject.
type ItemOutcome struct {
	ItemID             string       `json:"item_id"`
	Outcome            Outcome      `json:"outcome"`
	Records            int64        `json:"records"`
	Detail             string       `json:"detail"`
	Retryable          bool         `json:"retryable"`
	DerivedIdentifiers []Identifier `json:"derived_identifiers,omitempty"`
}

// BatchConfirmation is a system's answer to a batch command, one outcome
// per item. An answer too large for one message is split into several
// confirmations of the same command, each with some of the items.
type BatchConfirmation struct {
	Schema      string        `json:"schema"`
	CommandID   string        `json:"command_id"`
	BatchID     string        `json:"batch_id"`
	System      string        `json:"system"`
	Items       []ItemOutcome `json:"items"`
	ConfirmedAt time.Time     `json:"confirmed_at"`
}

// Validate reports the first way c breaks the contract, wrapping
// ErrMalformed. Its messages name fields and item positions, never
// identifier values.
func (c BatchCommand) Validate() error {
	if err := validEnvelope(c.Schema, SchemaBatchCommand, c.CommandID, "batch_id", c.BatchID, c.System); err != nil {
		return err
	}
	if err := validDispatch(c.Attempt, c.IssuedAt, c.ConfirmBy); err != nil {
		return err
	}
	if err := validItemCount(len(c.Items)); err != nil {
		return err
	}
	seen := make(map[string]int, len(c.Items))
	for i, it := range c.Items {
		if err := validItemID(it.ItemID, i, seen); err != nil {
			return err
		}
		if err := validIdentifiers(it.Identifiers, fmt.Sprintf("items[%d].identifiers", i), true); err != nil {
			return err
		}
	}
	return nil
}

// Validate reports the first way c breaks the contract, wrapping
// ErrMalformed.
func (c BatchConfirmation) Validate() error {
	if err := validEnvelope(c.Schema, SchemaBatchConfirmation, c.CommandID, "batch_id", c.BatchID, c.System); err != nil {
		return err
	}
	if err := validTime("confirmed_at", c.ConfirmedAt); err != nil {
		return err
	}
	if err := validItemCount(len(c.Items)); err != nil {
		return err
	}
	seen := make(map[string]int, len(c.Items))
	for i, it := range c.Items {
		if err := validItemID(it.ItemID, i, seen); err != nil {
			return err
		}
		prefix := fmt.Sprintf("items[%d].", i)
		if err := validResult(prefix, it.Outcome, it.Records, it.Detail, it.Retryable); err != nil {
			return err
		}
		if err := validIdentifiers(it.DerivedIdentifiers, prefix+"derived_identifiers", false); err != nil {
			return err
		}
	}
	return nil
}

func validItemCount(n int) error {
	switch {
	case n == 0:
		return malformed("items is empty")
	case n > MaxBatchItems:
		return malformed("items has more than %d entries", MaxBatchItems)
	}
	return nil
}

// validItemID checks the id of the item at position i and that no earlier
// item (seen, by id, their positions) has it: an outcome must say which
// subject it is for.
func validItemID(id string, i int, seen map[string]int) error {
	if !ValidID(id) {
		return malformed("items[%d].item_id is not a UUID", i)
	}
	if j, dup := seen[id]; dup {
		return malformed("items[%d].item_id repeats items[%d].item_id", i, j)
	}
	seen[id] = i
	return nil
}

// DecodeBatchCommand parses and validates a batch command. Unknown fields
// are allowed, as in DecodeCommand.
func DecodeBatchCommand(b []byte) (BatchCommand, error) {
	var c BatchCommand
	if err := decode(b, &c); err != nil {
		return BatchCommand{}, err
	}
	return c, c.Validate()
}

// DecodeBatchConfirmation parses and validates a batch confirmation.
func DecodeBatchConfirmation(b []byte) (BatchConfirmation, error) {
	var c BatchConfirmation
	if err := decode(b, &c); err != nil {
		return BatchConfirmation{}, err
	}
	return c, c.Validate()
}

// PackBatchCommands packs items into as few batch commands as the limits
// allow, in their order: each holds at most MaxBatchItems items and encodes
// to at most MaxBatchBytes. Every command copies tmpl's fields except
// CommandID, which newID gives each, and Items. The commands are
// validated; an item that cannot fit a command on its own is an error
// naming its position.
func PackBatchCommands(tmpl BatchCommand, items []BatchItem, newID func() string) ([]BatchCommand, error) {
	tmpl.Items = nil
	groups, err := pack(tmpl, items)
	if err != nil {
		return nil, err
	}
	out := make([]BatchCommand, len(groups))
	for i, g := range groups {
		c := tmpl
		c.CommandID = newID()
		c.Items = items[g[0]:g[1]]
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// PackBatchConfirmations splits the outcomes of one batch command into as
// few confirmations as the limits allow, in their order, each copying
// tmpl's fields but Items. A connector whose answer does not fit one
// message sends them all; the items of each are answered.
func PackBatchConfirmations(tmpl BatchConfirmation, items []ItemOutcome) ([]BatchConfirmation, error) {
	tmpl.Items = nil
	groups, err := pack(tmpl, items)
	if err != nil {
		return nil, err
	}
	out := make([]BatchConfirmation, len(groups))
	for i, g := range groups {
		c := tmpl
		c.Items = items[g[0]:g[1]]
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// pack splits items into ranges [from, to) whose message, tmpl with those
// items, stays within MaxBatchItems and MaxBatchBytes. The size is exact:
// json.Marshal writes the array as its elements' encodings joined by commas.
func pack[T any](tmpl any, items []T) ([][2]int, error) {
	base, err := json.Marshal(tmpl)
	if err != nil {
		return nil, malformed("cannot encode the message")
	}
	// tmpl's items encode as null; with items they become [a,b,…].
	size0 := len(base) - len("null") + len("[]")
	var groups [][2]int
	from, size := 0, size0
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, malformed("items[%d] cannot be encoded", i)
		}
		add := len(b)
		if i > from {
			add++ // the comma
		}
		if size0+len(b) > MaxBatchBytes {
			return nil, malformed("items[%d] alone makes the message larger than %d bytes", i, MaxBatchBytes)
		}
		if i-from == MaxBatchItems || size+add > MaxBatchBytes {
			groups = append(groups, [2]int{from, i})
			from, size, add = i, size0, len(b)
		}
		size += add
	}
	if from < len(items) {
		groups = append(groups, [2]int{from, len(items)})
	}
	if len(groups) == 0 {
		return nil, malformed("items is empty")
	}
	return groups, nil
}
