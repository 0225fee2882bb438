package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// The decoders face whatever reaches a topic: a connector's bug, another
// producer's message, an attacker's forgery. These targets check that no such
// input panics them, that what they accept survives encoding again, and that
// what they refuse is refused with ErrMalformed in words that never quote
// the input. `go test` runs the seeds below and those under
// testdata/fuzz/; `make fuzz` searches for new inputs.

// fuzzValue is an identifier value with characters no error text of the
// wire package contains, so that finding it in one means it was copied from
// the input.
const fuzzValue = "Ada Lövelace <ada@example.invalid>"

const (
	fuzzCommandID = "0b5c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	fuzzRequestID = "6f1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
)

// FuzzDecodeCommand checks the decoder a connector runs on every message of
// its topic.
func FuzzDecodeCommand(f *testing.F) {
	good := `{"schema":"erasure.command.v1","command_id":"` + fuzzCommandID + `","request_id":"` + fuzzRequestID +
		`","system":"orders","attempt":1,"identifiers":[{"type":"email","value":"` + fuzzValue + `"}],` +
		`"issued_at":"2026-11-25T10:00:00Z","confirm_by":"2026-11-28T10:00:00Z","dry_run":false}`
	for _, s := range []string{
		good,
		strings.Replace(good, `"attempt":1`, `"attempt":0`, 1),
		strings.Replace(good, `"attempt":1`, `"attempt":1e3`, 1),
		strings.Replace(good, `"system":"orders"`, `"system":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"type":"email"`, `"type":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"value":"`+fuzzValue+`"`, `"value":""`, 1),
		strings.Replace(good, `"value":"`+fuzzValue+`"`, `"value":7`, 1),
		strings.Replace(good, `10:00:00Z","dry_run"`, `10:00:00.5+01:00","dry_run"`, 1),
		strings.Replace(good, `"2026-11-25T10:00:00Z"`, `"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"identifiers":[`, `"identifiers":[{"type":"user_id","value":"u-1"},`, 1),
		strings.Replace(good, `"dry_run":false`, `"dry_run":true,"extra":{"nested":["`+fuzzValue+`"]}`, 1),
		good + ` {"trailing":"` + fuzzValue + `"}`,
		good[:len(good)/2],
		`{"` + fuzzValue + `":1}`,
		`["` + fuzzValue + `"]`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.DecodeCommand(b)
		if err != nil {
			checkRejection(t, b, err)
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded command does not validate: %v", err)
		}
		again := mustMarshal(t, c)
		c2, err := wire.DecodeCommand(again)
		if err != nil {
			t.Fatalf("re-encoded command %s is rejected: %v", again, err)
		}
		if !sameCommand(c, c2) {
			t.Fatalf("round trip changed the command:\n first %+v\nsecond %+v", c, c2)
		}
		if third := mustMarshal(t, c2); !bytes.Equal(again, third) {
			t.Fatalf("encoding is not stable:\n first %s\nsecond %s", again, third)
		}
	})
}

// FuzzDecodeConfirmation checks the decoder the relay runs on every message
// of the confirmations topic, which any producer can write to.
func FuzzDecodeConfirmation(f *testing.F) {
	good := `{"schema":"erasure.confirmation.v1","command_id":"` + fuzzCommandID + `","request_id":"` + fuzzRequestID +
		`","system":"orders","outcome":"erased","records":3,"detail":"","retryable":false,` +
		`"derived_identifiers":[{"type":"stripe_customer_id","value":"` + fuzzValue + `"}],"confirmed_at":"2026-11-25T10:00:02Z"}`
	for _, s := range []string{
		good,
		strings.Replace(good, `"outcome":"erased"`, `"outcome":"retained"`, 1),
		strings.Replace(good, `"outcome":"erased","records":3,"detail":""`, `"outcome":"retained","records":0,"detail":"tax law"`, 1),
		strings.Replace(good, `"outcome":"erased"`, `"outcome":"failed"`, 1),
		strings.Replace(good, `"outcome":"erased","records":3,"detail":"","retryable":false`, `"outcome":"failed","records":0,"detail":"db down","retryable":true`, 1),
		strings.Replace(good, `"retryable":false`, `"retryable":true`, 1),
		strings.Replace(good, `"records":3`, `"records":-1`, 1),
		strings.Replace(good, `"records":3`, `"records":99999999999999999999`, 1),
		strings.Replace(good, `"derived_identifiers":[{"type":"stripe_customer_id","value":"`+fuzzValue+`"}],`, `"derived_identifiers":[],`, 1),
		strings.Replace(good, `"derived_identifiers":[{"type":"stripe_customer_id","value":"`+fuzzValue+`"}],`, `"derived_identifiers":null,`, 1),
		strings.Replace(good, `"type":"stripe_customer_id"`, `"type":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"detail":""`, `"detail":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"2026-11-25T10:00:02Z"`, `"2026-11-25T10:00:02.123456789-07:00"`, 1),
		strings.Replace(good, `"2026-11-25T10:00:02Z"`, `"0000-01-01T00:00:00Z"`, 1),
		strings.Replace(good, `"command_id"`, `"COMMAND_ID"`, 1),
		strings.Replace(good, `"system":"orders"`, `"system":"orders","system":"`+fuzzValue+`"`, 1),
		good + `}`,
		`{"derived_identifiers":[{"type":"email","value":"` + fuzzValue + `"`,
		`"` + fuzzValue + `"`,
		` `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.DecodeConfirmation(b)
		if err != nil {
			checkRejection(t, b, err)
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded confirmation does not validate: %v", err)
		}
		again := mustMarshal(t, c)
		c2, err := wire.DecodeConfirmation(again)
		if err != nil {
			t.Fatalf("re-encoded confirmation %s is rejected: %v", again, err)
		}
		if !sameConfirmation(c, c2) {
			t.Fatalf("round trip changed the confirmation:\n first %+v\nsecond %+v", c, c2)
		}
		if third := mustMarshal(t, c2); !bytes.Equal(again, third) {
			t.Fatalf("encoding is not stable:\n first %s\nsecond %s", again, third)
		}
	})
}

const fuzzItemID = "3a1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"

// FuzzDecodeBatchCommand checks the decoder a connector runs on every batch
// command of its topic.
func FuzzDecodeBatchCommand(f *testing.F) {
	item := `{"item_id":"` + fuzzItemID + `","identifiers":[{"type":"email","value":"` + fuzzValue + `"}]}`
	good := `{"schema":"erasure.batch_command.v1","command_id":"` + fuzzCommandID + `","batch_id":"` + fuzzRequestID +
		`","system":"orders","attempt":1,"items":[` + item + `],` +
		`"issued_at":"2026-11-25T10:00:00Z","confirm_by":"2026-11-28T10:00:00Z","dry_run":false}`
	for _, s := range []string{
		good,
		strings.Replace(good, `"items":[`, `"items":[`+strings.Replace(item, "3a1c", "4a1c", 1)+`,`, 1),
		strings.Replace(good, `"items":[`, `"items":[`+item+`,`, 1),
		strings.Replace(good, `"items":[`+item+`]`, `"items":[]`, 1),
		strings.Replace(good, `"items":[`+item+`]`, `"items":null`, 1),
		strings.Replace(good, `"item_id":"`+fuzzItemID+`"`, `"item_id":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"identifiers":[{"type":"email","value":"`+fuzzValue+`"}]`, `"identifiers":[]`, 1),
		strings.Replace(good, `"type":"email"`, `"type":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"batch_id":"`+fuzzRequestID+`"`, `"request_id":"`+fuzzRequestID+`"`, 1),
		strings.Replace(good, `"schema":"erasure.batch_command.v1"`, `"schema":"erasure.command.v1"`, 1),
		strings.Replace(good, `"dry_run":false`, `"dry_run":true,"extra":["`+fuzzValue+`"]`, 1),
		good[:len(good)/2],
		`{"items":[{"item_id":"` + fuzzValue + `"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.DecodeBatchCommand(b)
		if err != nil {
			checkRejection(t, b, err)
			return
		}
		again := mustMarshal(t, c)
		c2, err := wire.DecodeBatchCommand(again)
		if err != nil {
			t.Fatalf("re-encoded batch command %s is rejected: %v", again, err)
		}
		if third := mustMarshal(t, c2); !bytes.Equal(again, third) {
			t.Fatalf("encoding is not stable:\n first %s\nsecond %s", again, third)
		}
	})
}

// FuzzDecodeBatchConfirmation checks the decoder the relay runs on every
// batch confirmation of the confirmations topic.
func FuzzDecodeBatchConfirmation(f *testing.F) {
	item := `{"item_id":"` + fuzzItemID + `","outcome":"erased","records":3,"detail":"","retryable":false,` +
		`"derived_identifiers":[{"type":"stripe_customer_id","value":"` + fuzzValue + `"}]}`
	good := `{"schema":"erasure.batch_confirmation.v1","command_id":"` + fuzzCommandID + `","batch_id":"` + fuzzRequestID +
		`","system":"orders","items":[` + item + `],"confirmed_at":"2026-11-25T10:00:02Z"}`
	for _, s := range []string{
		good,
		strings.Replace(good, `"items":[`, `"items":[`+strings.Replace(item, "3a1c", "4a1c", 1)+`,`, 1),
		strings.Replace(good, `"items":[`, `"items":[`+item+`,`, 1),
		strings.Replace(good, `"outcome":"erased"`, `"outcome":"retained"`, 1),
		strings.Replace(good, `"outcome":"erased","records":3,"detail":"","retryable":false`, `"outcome":"failed","records":0,"detail":"db down","retryable":true`, 1),
		strings.Replace(good, `"retryable":false`, `"retryable":true`, 1),
		strings.Replace(good, `"records":3`, `"records":-1`, 1),
		strings.Replace(good, `"type":"stripe_customer_id"`, `"type":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"detail":""`, `"detail":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"item_id":"`+fuzzItemID+`"`, `"item_id":"`+fuzzValue+`"`, 1),
		strings.Replace(good, `"items":[`+item+`]`, `"items":[]`, 1),
		strings.Replace(good, `"2026-11-25T10:00:02Z"`, `"2026-11-25T10:00:02+24:00"`, 1),
		good + `]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.DecodeBatchConfirmation(b)
		if err != nil {
			checkRejection(t, b, err)
			return
		}
		again := mustMarshal(t, c)
		c2, err := wire.DecodeBatchConfirmation(again)
		if err != nil {
			t.Fatalf("re-encoded batch confirmation %s is rejected: %v", again, err)
		}
		if third := mustMarshal(t, c2); !bytes.Equal(again, third) {
			t.Fatalf("encoding is not stable:\n first %s\nsecond %s", again, third)
		}
	})
}

// TestDecodeRefusesTimesThatCannotBeWrittenAgain keeps the first bug these
// targets found: encoding/json decodes an offset of +24:00 (or +23:60) that
// no encoder writes back, so a forged confirmation holding one was accepted
// and then failed every signal the relay tried, blocking its partition.
func TestDecodeRefusesTimesThatCannotBeWrittenAgain(t *testing.T) {
	for _, offset := range []string{"+24:00", "+23:60", "-24:00"} {
		conf := `{"schema":"erasure.confirmation.v1","command_id":"` + fuzzCommandID + `","request_id":"` + fuzzRequestID +
			`","system":"orders","outcome":"erased","records":1,"confirmed_at":"2026-11-25T10:00:02` + offset + `"}`
		if _, err := wire.DecodeConfirmation([]byte(conf)); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("confirmed_at with offset %s: err = %v, want ErrMalformed", offset, err)
		}
		cmd := `{"schema":"erasure.command.v1","command_id":"` + fuzzCommandID + `","request_id":"` + fuzzRequestID +
			`","system":"orders","attempt":1,"identifiers":[{"type":"email","value":"x"}],` +
			`"issued_at":"2026-11-25T10:00:00Z","confirm_by":"2026-11-28T10:00:00` + offset + `"}`
		if _, err := wire.DecodeCommand([]byte(cmd)); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("confirm_by with offset %s: err = %v, want ErrMalformed", offset, err)
		}
	}
}

// wireMessageRe matches every error text the wire package writes: field
// names, numbers and fixed words, nothing copied from the message. A new
// error text belongs here once it is checked to quote no input.
var wireMessageRe = regexp.MustCompile(`^malformed message: (` + strings.Join([]string{
	`message is larger than \d+ bytes`,
	`trailing data after the JSON object`,
	`not valid JSON for this schema: (syntax error at byte \d+|field "[a-z_.]*" has the wrong type|empty message|cannot decode)`,
	`schema is not "erasure\.(command|confirmation|batch_command|batch_confirmation)\.v1"`,
	`(command_id|request_id|batch_id) is not a UUID`,
	`items is empty`,
	`items has more than \d+ entries`,
	`items\[\d+\]\.item_id (is not a UUID|repeats items\[\d+\]\.item_id)`,
	`items\[\d+\]\.(outcome is not one of erased, not_found, retained, failed|records is negative|detail is longer than \d+ bytes|a retained outcome must name its legal basis in detail|retryable is only meaningful with outcome failed)`,
	`items\[\d+\]\.(identifiers|derived_identifiers) (is empty|has more than \d+ entries)`,
	`items\[\d+\]\.(identifiers|derived_identifiers)\[\d+\]\.(type is not a valid identifier type|value is empty|value is longer than \d+ bytes)`,
	`system is not a valid system name`,
	`attempt is below 1`,
	`(issued_at|confirm_by|confirmed_at) is (missing|not a time RFC 3339 can carry)`,
	`outcome is not one of erased, not_found, retained, failed`,
	`records is negative`,
	`detail is longer than \d+ bytes`,
	`a retained outcome must name its legal basis in detail`,
	`retryable is only meaningful with outcome failed`,
	`(identifiers|derived_identifiers) is empty`,
	`(identifiers|derived_identifiers) has more than \d+ entries`,
	`(identifiers|derived_identifiers)\[\d+\]\.(type is not a valid identifier type|value is empty|value is longer than \d+ bytes)`,
}, "|") + `)$`)

// checkRejection asserts what a refused message's error must be: an
// ErrMalformed whose text is one of the package's own and quotes none of
// the strings the message held.
func checkRejection(t *testing.T, input []byte, err error) {
	t.Helper()
	if !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("error %q does not wrap wire.ErrMalformed", err)
	}
	msg := err.Error()
	if !wireMessageRe.MatchString(msg) {
		t.Fatalf("error text %q is not one of the wire package's fixed texts; it may quote the input", msg)
	}
	for _, v := range stringsIn(input) {
		if distinctive(v) && strings.Contains(msg, v) {
			t.Fatalf("error text %q quotes %q from the input", msg, v)
		}
	}
}

// stringsIn returns every JSON string of input, keys included, up to its
// first syntax error: the identifier values a malformed message may carry,
// decoded as the decoder itself sees them.
func stringsIn(input []byte) []string {
	var out []string
	dec := json.NewDecoder(bytes.NewReader(input))
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		if s, ok := tok.(string); ok {
			out = append(out, s)
		}
	}
}

// distinctive reports whether s holds a character that no error text of
// the package contains, so that finding s in one can only mean it was
// copied there.
func distinctive(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(` ".,:_[]-`, r))
	}) >= 0
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %+v: %v", v, err)
	}
	return b
}

// sameInstant compares times as the wire carries them: the same instant
// written with the same UTC offset.
func sameInstant(a, b time.Time) bool {
	_, oa := a.Zone()
	_, ob := b.Zone()
	return a.Equal(b) && oa == ob
}

func sameCommand(a, b wire.Command) bool {
	return a.Schema == b.Schema && a.CommandID == b.CommandID && a.RequestID == b.RequestID &&
		a.System == b.System && a.Attempt == b.Attempt && slices.Equal(a.Identifiers, b.Identifiers) &&
		sameInstant(a.IssuedAt, b.IssuedAt) && sameInstant(a.ConfirmBy, b.ConfirmBy) && a.DryRun == b.DryRun
}

func sameConfirmation(a, b wire.Confirmation) bool {
	return a.Schema == b.Schema && a.CommandID == b.CommandID && a.RequestID == b.RequestID &&
		a.System == b.System && a.Outcome == b.Outcome && a.Records == b.Records && a.Detail == b.Detail &&
		a.Retryable == b.Retryable && slices.Equal(a.DerivedIdentifiers, b.DerivedIdentifiers) &&
		sameInstant(a.ConfirmedAt, b.ConfirmedAt)
}
