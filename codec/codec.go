// Package codec keeps personal data out of Temporal's storage. Workflow
// inputs carry the subject's identifier values, and Temporal keeps every
// payload in its history for the namespace's retention; the codec encrypts
// each payload with AES-256-GCM before it leaves the process, so the Temporal
// server, its database and its backups hold only ciphertext. Operators who
// have the key read payloads through the codec endpoint (Handler), which the
// Temporal Web UI calls from the browser.
package codec

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"
)

const (
	// Encoding is the value of the "encoding" metadata of an encrypted
	// payload. Decode recognises encrypted payloads by it and leaves every
	// other payload as it is.
	Encoding = "binary/encrypted"
	// MetadataKeyID names the metadata entry that says which key encrypted
	// a payload, so that a payload written before a rotation still finds
	// its key.
	MetadataKeyID = "encryption-key-id"
	// KeySize is the length in bytes of an AES-256 key.
	KeySize = 32
)

// keyIDPattern keeps key ids printable and free of the separators of the
// LETHE_CODEC_KEYS syntax; ids travel in clear in every payload's metadata.
// They are shorter than a hex key, so that a key written where its id
// belongs is refused without being repeated in the error.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// checkKeyID explains why id is not a valid key id. It quotes the id only
// when it is short enough not to be key material pasted in the wrong place.
func checkKeyID(id string) error {
	if keyIDPattern.MatchString(id) {
		return nil
	}
	const want = "want 1 to 32 letters, digits, '.', '_' or '-'"
	if len(id) > 32 {
		return fmt.Errorf("codec: a key id has %d characters: %s", len(id), want)
	}
	return fmt.Errorf("codec: key id %q: %s", id, want)
}

// Keyring holds the keys the codec may use: the active one encrypts, every
// one decrypts. Keeping retired keys lets histories written before a
// rotation be read until Temporal's retention drops them.
type Keyring struct {
	active string
	ids    []string
	aeads  map[string]cipher.AEAD
}

// Key is one named AES-256 key.
type Key struct {
	// ID names the key in every payload it encrypts. It is not secret.
	ID string
	// Secret is the KeySize-byte AES key.
	Secret []byte
}

// NewKeyring builds a keyring from raw keys. The first key is the active
// one; the others only decrypt. Ids must be unique, 1 to 32 characters of
// letters, digits, '.', '_' or '-'; keys must be KeySize bytes.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("codec: no keys")
	}
	k := &Keyring{active: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, key := range keys {
		if err := checkKeyID(key.ID); err != nil {
			return nil, err
		}
		if _, dup := k.aeads[key.ID]; dup {
			return nil, fmt.Errorf("codec: key id %q appears twice", key.ID)
		}
		if len(key.Secret) != KeySize {
			return nil, fmt.Errorf("codec: key %q has %d bytes, want %d (AES-256)", key.ID, len(key.Secret), KeySize)
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", key.ID, err)
		}
		k.aeads[key.ID] = aead
		k.ids = append(k.ids, key.ID)
	}
	return k, nil
}

// ParseKeys reads the LETHE_CODEC_KEYS syntax: comma-separated "id:hexkey"
// entries, each key 64 hex digits, the first one active. Rotation is adding
// a new entry in front and keeping the old ones behind it.
func ParseKeys(s string) (*Keyring, error) {
	var keys []Key
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, hexKey, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, errors.New("codec: each key must read id:hexkey")
		}
		id = strings.TrimSpace(id)
		if err := checkKeyID(id); err != nil {
			return nil, err
		}
		// The error names the id only: the rest of the entry is secret.
		secret, err := hex.DecodeString(strings.TrimSpace(hexKey))
		if err != nil || len(secret) != KeySize {
			return nil, fmt.Errorf("codec: key %q: want %d hex digits (openssl rand -hex %d)", id, 2*KeySize, KeySize)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return NewKeyring(keys...)
}

// GenerateKeys returns a new LETHE_CODEC_KEYS value holding one random key
// named id, for stacks that start without configured keys and for
// operators preparing a rotation.
func GenerateKeys(id string) (string, error) {
	if err := checkKeyID(id); err != nil {
		return "", err
	}
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("codec: generate key: %w", err)
	}
	return id + ":" + hex.EncodeToString(secret), nil
}

// ActiveID is the id of the key new payloads are encrypted with. Ids are not
// secret; logging it tells an operator which key a process writes with.
func (k *Keyring) ActiveID() string { return k.active }

// IDs lists every key id, the active one first.
func (k *Keyring) IDs() []string { return slices.Clone(k.ids) }

// DecryptError is Decode's error for a payload that is encrypted but cannot
// be read here: its key is not in the keyring, or it was altered. Its
// message names the key id, never any content.
type DecryptError struct {
	// KeyID is the id the payload's metadata names, empty when it has none.
	KeyID string
	msg   string
}

func (e *DecryptError) Error() string { return "codec: " + e.msg }

// NewCodec returns the payload codec that encrypts with k's active key and
// decrypts with any of k's keys. With a nil k it encrypts nothing and
// refuses encrypted payloads with a DecryptError, so that a process started
// without keys fails the same way as one missing a key.
func NewCodec(k *Keyring) converter.PayloadCodec { return &aesCodec{keys: k} }

// DataConverter is the SDK's default data converter with the codec behind
// it (k may be nil, see NewCodec). Every Temporal client of a deployment
// must use it with the same keys, or a worker cannot read the workflows the
// API started.
//
// Inside workflow code the SDK would fail the whole workflow on a payload it
// cannot decode, ending an erasure because one worker lacks a key. The
// converter instead panics there on a DecryptError, which the SDK turns into
// a failed workflow task that Temporal retries: the workflow waits until a
// worker with the key picks it up. Outside workflow code (clients,
// activities) the error is returned.
//
// With keys, workflow code also refuses payloads that are not encrypted
// (a PlaintextError): every Lethe process encrypts, so such a payload comes
// from a client without the keys, someone bypassing the API. A workflow
// started with one fails with the reason; a signal carrying one is dropped.
// PlaintextBefore lets workflows begun before encryption was turned on
// finish.
func DataConverter(k *Keyring, opts ...Option) converter.DataConverter {
	c := contextAware{DataConverter: converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), NewCodec(k)), strict: k != nil}
	for _, opt := range opts {
		opt(&c)
	}
	return c
}

// Option adjusts DataConverter.
type Option func(*contextAware)

// PlaintextBefore lets workflow code read unencrypted payloads in
// workflows started before t: those that were running when encryption was
// turned on, whose histories hold plaintext inputs, signals and results.
// Later workflows still refuse them. The zero t changes nothing.
func PlaintextBefore(t time.Time) Option {
	return func(c *contextAware) { c.plaintextBefore = t }
}

// PlaintextError is what workflow code gets for a payload that is not
// encrypted although this process has keys. It names no content.
type PlaintextError struct{}

func (PlaintextError) Error() string {
	return "codec: unencrypted payload refused: this worker has LETHE_CODEC_KEYS and every Lethe process encrypts, " +
		"so it was sent by a client without the keys, not through the Lethe API or relay " +
		"(workflows started before encryption was turned on: see LETHE_CODEC_PLAINTEXT_BEFORE)"
}

// contextAware hands workflow code a converter that stops the workflow task
// on a DecryptError instead of returning it, and that refuses plaintext
// when strict.
type contextAware struct {
	converter.DataConverter
	strict          bool
	plaintextBefore time.Time
}

// WithWorkflowContext is called by the SDK for conversions in workflow code.
func (c contextAware) WithWorkflowContext(ctx converter.WorkflowContext) converter.DataConverter {
	strict := c.strict
	if wctx, ok := ctx.(workflow.Context); ok && strict && !c.plaintextBefore.IsZero() {
		// The start time is the server's, so a client cannot claim an
		// older one, and it is the same at every replay.
		strict = !workflow.GetInfo(wctx).WorkflowStartTime.Before(c.plaintextBefore)
	}
	return workflowConverter{DataConverter: c.DataConverter, strict: strict}
}

// WithContext is called by the SDK for conversions in activities.
func (c contextAware) WithContext(context.Context) converter.DataConverter { return c }

// workflowConverter panics on a DecryptError and, when strict, refuses
// plaintext; see DataConverter.
type workflowConverter struct {
	converter.DataConverter
	strict bool
}

func (c workflowConverter) FromPayload(p *commonpb.Payload, valuePtr any) error {
	if err := c.refusePlaintext(p); err != nil {
		return err
	}
	return panicOnDecrypt(c.DataConverter.FromPayload(p, valuePtr))
}

func (c workflowConverter) FromPayloads(ps *commonpb.Payloads, valuePtrs ...any) error {
	if err := c.refusePlaintext(ps.GetPayloads()...); err != nil {
		return err
	}
	return panicOnDecrypt(c.DataConverter.FromPayloads(ps, valuePtrs...))
}

// refusePlaintext returns a PlaintextError when c is strict and one of ps
// is not encrypted.
func (c workflowConverter) refusePlaintext(ps ...*commonpb.Payload) error {
	if !c.strict {
		return nil
	}
	for _, p := range ps {
		if p != nil && string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			return PlaintextError{}
		}
	}
	return nil
}

func panicOnDecrypt(err error) error {
	var d *DecryptError
	if errors.As(err, &d) {
		panic(err)
	}
	return err
}

// aesCodec encrypts whole payloads. It seals the serialized payload,
// metadata included, so that even the encoding of the plaintext (and any
// metadata a converter adds) stays hidden.
type aesCodec struct {
	keys *Keyring
}

// additionalData binds a ciphertext to the key id in clear beside it.
func additionalData(keyID string) []byte { return []byte(Encoding + "\x00" + keyID) }

// Encode encrypts each payload with the active key and a fresh random nonce.
func (c *aesCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.keys == nil {
		return payloads, nil
	}
	id := c.keys.active
	aead := c.keys.aeads[id]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("codec: serialize payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return payloads, fmt.Errorf("codec: nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetadataKeyID:              []byte(id),
			},
			Data: aead.Seal(nonce, nonce, plain, additionalData(id)),
		}
	}
	return out, nil
}

// Decode decrypts the payloads Encode produced and passes any other payload
// through, so that histories written before encryption was turned on still
// read.
func (c *aesCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		d, err := c.decrypt(p)
		if err != nil {
			return payloads, err
		}
		out[i] = d
	}
	return out, nil
}

func (c *aesCodec) decrypt(p *commonpb.Payload) (*commonpb.Payload, error) {
	id := string(p.GetMetadata()[MetadataKeyID])
	fail := func(format string, args ...any) error {
		return &DecryptError{KeyID: id, msg: fmt.Sprintf(format, args...)}
	}
	if id == "" {
		return nil, fail("encrypted payload has no %s metadata", MetadataKeyID)
	}
	if c.keys == nil {
		return nil, fail("payload encrypted with key id %q, but LETHE_CODEC_KEYS is not set here", id)
	}
	aead, ok := c.keys.aeads[id]
	if !ok {
		return nil, fail("payload encrypted with unknown key id %q (this keyring has %s): add that key behind the active one in LETHE_CODEC_KEYS",
			id, strings.Join(c.keys.ids, ", "))
	}
	data := p.GetData()
	if len(data) < aead.NonceSize()+aead.Overhead() {
		return nil, fail("encrypted payload with key id %q is too short to be one", id)
	}
	nonce, sealed := data[:aead.NonceSize()], data[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, sealed, additionalData(id))
	if err != nil {
		return nil, fail("decrypt payload with key id %q: authentication failed (altered payload or wrong key)", id)
	}
	var d commonpb.Payload
	if err := proto.Unmarshal(plain, &d); err != nil {
		return nil, fail("decrypted payload with key id %q is not a payload", id)
	}
	return &d, nil
}
