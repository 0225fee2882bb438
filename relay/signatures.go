package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/wire"
)

// Credentials tells the relay which systems sign their confirmations and
// with which keys, and whether a request is known. registry.Store
// satisfies it. Batch confirmations are checked by the same rules as
// single ones.
type Credentials interface {
	// SystemCredentials lists, for each of systems that was ever issued a
	// credential, the key ids valid at at; a system without credentials is
	// absent (see registry.Store.SystemCredentials).
	SystemCredentials(ctx context.Context, systems []string, at time.Time) (map[string][]string, error)
	// ErasureRecorded reports whether the ledger holds a request, so that
	// a refused confirmation is audited under its request only when that
	// request exists. For a batch confirmation it is asked about the
	// batch_id, the id of a chunk of a bulk erasure.
	ErasureRecorded(ctx context.Context, id string) (bool, error)
}

// DLQBadSignature is the dead-letter reason of a confirmation refused for
// its signature; the audit event says which check failed.
const DLQBadSignature = "bad_signature"

// refusal is a confirmation, single or batch, refused for its signature,
// and why.
type refusal struct {
	decoded
	detail string
}

// checkSignatures splits a batch's confirmations, single or batch, into
// those that count and those whose signature does not hold. A confirmation
// of either kind must be signed when
// its system was ever issued a credential, or always with
// Config.RequireSignatures; it then counts only when its key id is a
// currently valid key of that very system and its signature matches its
// value bytes. The credentials of the batch's systems are read in one
// query, retried until it succeeds.
func (r *Relay) checkSignatures(ctx context.Context, in []decoded) (ok []decoded, refused []refusal, err error) {
	if r.cfg.Credentials == nil || len(in) == 0 {
		return in, nil, nil
	}
	var systems []string
	seen := make(map[string]bool)
	for _, d := range in {
		if !seen[d.system()] {
			seen[d.system()] = true
			systems = append(systems, d.system())
		}
	}
	at := r.cfg.Now()
	var creds map[string][]string
	if err := kafkax.Retry(ctx, r.log, "read credentials", func(ctx context.Context) error {
		var err error
		creds, err = r.cfg.Credentials.SystemCredentials(ctx, systems, at)
		return err
	}); err != nil {
		return nil, nil, err
	}
	for _, d := range in {
		if problem := r.signatureProblem(d, creds); problem != "" {
			refused = append(refused, refusal{decoded: d, detail: problem})
			continue
		}
		ok = append(ok, d)
	}
	return ok, refused, nil
}

// signatureProblem says which check d fails, or "" when it counts.
func (r *Relay) signatureProblem(d decoded, creds map[string][]string) string {
	keyID, okKey := header(d.msg, wire.HeaderKeyID)
	signature, okSig := header(d.msg, wire.HeaderSignature)
	return SignatureProblem(Signed{System: d.system(), Value: d.msg.Value, KeyID: keyID, Signature: signature,
		Present: okKey && okSig}, creds, r.cfg.SystemKey, r.cfg.RequireSignatures)
}

// Signed is a confirmation as its signature is checked: the bytes signed
// and the lethe-key-id and lethe-signature that came with them, from
// Kafka headers or from HTTP headers (pull mode).
type Signed struct {
	System    string
	Value     []byte
	KeyID     string
	Signature string
	// Present is false when the message lacks one of the two, or carries
	// one twice, which is as good as unsigned.
	Present bool
}

// SignatureProblem says which check s fails, or "" when it counts, by the
// one set of rules of every confirmation, from Kafka or over HTTP: s must
// be signed when its system was ever issued a credential (creds, see
// Credentials.SystemCredentials), or always with require; it then counts
// only when its key id is a current key of that very system and its
// signature matches its value bytes under master. The text names headers
// and key ids, never the message's content.
func SignatureProblem(s Signed, creds map[string][]string, master *credential.Master, require bool) string {
	valid, hasCreds := creds[s.System]
	if !hasCreds && !require {
		return "" // a system that never had a credential still works unsigned
	}
	switch {
	case !s.Present:
		return fmt.Sprintf("unsigned: no single %s and %s header", wire.HeaderKeyID, wire.HeaderSignature)
	case !hasCreds:
		return "system has no credential and signatures are required"
	case !credential.ValidKeyID(s.KeyID):
		return "key id is malformed"
	}
	current := false
	for _, id := range valid {
		current = current || id == s.KeyID
	}
	switch {
	case !current:
		return fmt.Sprintf("key %s is not a current key of system %s", s.KeyID, s.System)
	case master == nil:
		return "no system key (LETHE_SYSTEM_KEY) to check signatures with"
	case !wire.Verify(master.Secret(s.KeyID), s.Value, s.Signature):
		return fmt.Sprintf("signature does not match the value under key %s", s.KeyID)
	}
	return ""
}

// header returns the value of the message's one header named key; ok is
// false when it has none or several, which is as good as unsigned.
func header(m kafka.Message, key string) (value string, ok bool) {
	n := 0
	for _, h := range m.Headers {
		if h.Key == key {
			value, n = string(h.Value), n+1
		}
	}
	return value, n == 1
}

// refuse dead-letters refused confirmations with reason bad_signature and
// audits each: under its request (a batch confirmation's: its batch_id)
// when the ledger knows it, with its system and the check that failed.
// They are never signaled.
func (r *Relay) refuse(ctx context.Context, w *kafka.Writer, refused []refusal) error {
	if len(refused) == 0 {
		return nil
	}
	now := r.cfg.Now().UTC()
	dead := make([]kafka.Message, len(refused))
	events := make([]lethe.AuditEvent, len(refused))
	known := make(map[string]bool)
	for i, f := range refused {
		r.log.Warn("confirmation refused for its signature", "partition", f.msg.Partition, "offset", f.msg.Offset,
			"system", f.system(), "reason", f.detail)
		dead[i] = kafkax.DeadLetter(f.msg, DLQBadSignature)
		id := f.scope()
		if _, checked := known[id]; !checked {
			if err := kafkax.Retry(ctx, r.log, "look up request", func(ctx context.Context) error {
				var err error
				known[id], err = r.cfg.Credentials.ErasureRecorded(ctx, id)
				return err
			}); err != nil {
				return err
			}
		}
		if !known[id] {
			id = ""
		}
		events[i] = lethe.AuditEvent{RequestID: id, System: f.system(), Kind: lethe.AuditBadSignature, Detail: f.detail, At: now}
	}
	if err := kafkax.WriteAll(ctx, w, r.log, dead...); err != nil {
		return err
	}
	if err := kafkax.Retry(ctx, r.log, "audit refused confirmations", func(ctx context.Context) error {
		return r.aud.AppendAudit(ctx, events)
	}); err != nil {
		return err
	}
	r.badSignatures.Add(int64(len(refused)))
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.DeadLettered(r.cfg.Topic, DLQBadSignature, len(refused))
	}
	return nil
}
