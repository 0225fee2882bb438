package codec_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-dev/lethe/codec"
)

// canary is a value that must never be readable in an encrypted payload.
const canary = "canary-ada.lovelace@example.org"

// Two fixed test keys, so failures are reproducible.
const (
	oldKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	newKeyHex = "f0e0d0c0b0a090807060504030201000f1e1d1c1b1a191817161514131211101"
)

func mustKeys(t *testing.T, s string) *codec.Keyring {
	t.Helper()
	k, err := codec.ParseKeys(s)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return k
}

type subject struct {
	Email string `json:"email"`
	Tag   string `json:"tag"`
}

func TestDataConverterRoundTrip(t *testing.T) {
	dc := codec.DataConverter(mustKeys(t, "k1:"+oldKeyHex))
	in := subject{Email: canary, Tag: "x"}
	p, err := dc.ToPayload(in)
	if err != nil {
		t.Fatalf("ToPayload: %v", err)
	}
	if got := string(p.Metadata[converter.MetadataEncoding]); got != codec.Encoding {
		t.Errorf("encoding = %q, want %q", got, codec.Encoding)
	}
	if got := string(p.Metadata[codec.MetadataKeyID]); got != "k1" {
		t.Errorf("key id = %q, want k1", got)
	}
	var out subject
	if err := dc.FromPayload(p, &out); err != nil {
		t.Fatalf("FromPayload: %v", err)
	}
	if out != in {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
}

func TestCiphertextHidesDataAndMetadata(t *testing.T) {
	c := codec.NewCodec(mustKeys(t, "k1:"+oldKeyHex))
	plain := &commonpb.Payload{
		Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain"), "message-type": []byte("lethe.Subject")},
		Data:     []byte(`{"email":"` + canary + `"}`),
	}
	enc, err := c.Encode([]*commonpb.Payload{plain, plain})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	for i, p := range enc {
		raw, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{canary, "json/plain", "lethe.Subject"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("encrypted payload %d contains %q", i, secret)
			}
		}
		if len(p.Metadata) != 2 {
			t.Errorf("encrypted payload %d has metadata %v, want encoding and key id only", i, p.Metadata)
		}
	}
	if bytes.Equal(enc[0].Data, enc[1].Data) {
		t.Error("the same payload encrypted twice gave the same ciphertext: nonces repeat")
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	for i, p := range dec {
		if !proto.Equal(p, plain) {
			t.Errorf("decoded payload %d = %v, want %v", i, p, plain)
		}
	}
}

func TestRotation(t *testing.T) {
	before := codec.DataConverter(mustKeys(t, "old:"+oldKeyHex))
	written, err := before.ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}

	rotated := mustKeys(t, "new:"+newKeyHex+", old:"+oldKeyHex)
	if rotated.ActiveID() != "new" {
		t.Errorf("active key = %q, want new", rotated.ActiveID())
	}
	after := codec.DataConverter(rotated)
	var got subject
	if err := after.FromPayload(written, &got); err != nil {
		t.Fatalf("reading a payload written before the rotation: %v", err)
	}
	if got.Email != canary {
		t.Errorf("decoded email = %q, want the original", got.Email)
	}
	fresh, err := after.ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	if id := string(fresh.Metadata[codec.MetadataKeyID]); id != "new" {
		t.Errorf("after rotation new payloads use key %q, want new", id)
	}

	// Once the old key is dropped, old payloads fail loudly, naming the key.
	dropped := codec.DataConverter(mustKeys(t, "new:"+newKeyHex))
	err = dropped.FromPayload(written, &got)
	if err == nil || !strings.Contains(err.Error(), `unknown key id "old"`) {
		t.Errorf("decoding with the old key dropped: err = %v, want unknown key id \"old\"", err)
	}
}

func TestDecodeRejectsUnknownOrMissingKeyID(t *testing.T) {
	c := codec.NewCodec(mustKeys(t, "k1:"+oldKeyHex))
	enc, err := c.Encode([]*commonpb.Payload{{Data: []byte(canary)}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		id   []byte
		want string
	}{
		{"unknown", []byte("k9"), `unknown key id "k9"`},
		{"missing", nil, "no " + codec.MetadataKeyID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := proto.Clone(enc[0]).(*commonpb.Payload)
			if tc.id == nil {
				delete(p.Metadata, codec.MetadataKeyID)
			} else {
				p.Metadata[codec.MetadataKeyID] = tc.id
			}
			_, err := c.Decode([]*commonpb.Payload{p})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeRejectsTampering(t *testing.T) {
	keys := mustKeys(t, "k1:"+oldKeyHex+",k2:"+newKeyHex)
	c := codec.NewCodec(keys)
	enc, err := c.Encode([]*commonpb.Payload{{Data: []byte(canary)}})
	if err != nil {
		t.Fatal(err)
	}
	tamper := map[string]func(p *commonpb.Payload){
		"nonce byte":      func(p *commonpb.Payload) { p.Data[0] ^= 1 },
		"ciphertext byte": func(p *commonpb.Payload) { p.Data[len(p.Data)/2] ^= 0x80 },
		"tag byte":        func(p *commonpb.Payload) { p.Data[len(p.Data)-1] ^= 1 },
		"truncated":       func(p *commonpb.Payload) { p.Data = p.Data[:10] },
		"other key id":    func(p *commonpb.Payload) { p.Metadata[codec.MetadataKeyID] = []byte("k2") },
	}
	for name, change := range tamper {
		t.Run(name, func(t *testing.T) {
			p := proto.Clone(enc[0]).(*commonpb.Payload)
			change(p)
			if _, err := c.Decode([]*commonpb.Payload{p}); err == nil {
				t.Error("Decode accepted an altered payload")
			}
		})
	}
}

func TestDecodePassesUnencryptedPayloads(t *testing.T) {
	c := codec.NewCodec(mustKeys(t, "k1:"+oldKeyHex))
	plain, err := converter.GetDefaultDataConverter().ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode([]*commonpb.Payload{plain, enc[0]})
	if err != nil {
		t.Fatalf("Decode of a mixed history: %v", err)
	}
	if out[0] != plain {
		t.Errorf("unencrypted payload was changed: %v", out[0])
	}
	if !proto.Equal(out[1], plain) {
		t.Errorf("encrypted payload decoded to %v, want %v", out[1], plain)
	}
	// Reading a history written before encryption through the converter.
	var got subject
	if err := codec.DataConverter(mustKeys(t, "k1:"+oldKeyHex)).FromPayload(plain, &got); err != nil || got.Email != canary {
		t.Errorf("FromPayload(unencrypted) = %+v, %v", got, err)
	}
}

func TestParseKeys(t *testing.T) {
	cases := []struct {
		name, in string
		wantIDs  []string
		wantErr  string
	}{
		{"one key", "k1:" + oldKeyHex, []string{"k1"}, ""},
		{"rotation order kept", "b:" + newKeyHex + ",a:" + oldKeyHex, []string{"b", "a"}, ""},
		{"spaces and trailing comma", " b : " + newKeyHex + " , a:" + oldKeyHex + ",", []string{"b", "a"}, ""},
		{"upper-case hex", "k1:" + strings.ToUpper(oldKeyHex), []string{"k1"}, ""},
		{"empty", "", nil, "no keys"},
		{"no colon", oldKeyHex, nil, "id:hexkey"},
		{"short key", "k1:" + oldKeyHex[:62], nil, `key "k1": want 64 hex digits`},
		{"long key", "k1:" + oldKeyHex + "00", nil, `key "k1": want 64 hex digits`},
		{"not hex", "k1:" + strings.Repeat("zz", 32), nil, `key "k1": want 64 hex digits`},
		{"duplicate id", "k1:" + oldKeyHex + ",k1:" + newKeyHex, nil, "appears twice"},
		{"empty id", ":" + oldKeyHex, nil, "key id"},
		{"id with a space", "my key:" + oldKeyHex, nil, "key id"},
		{"key and id swapped", oldKeyHex + ":k1", nil, "a key id has 64 characters"},
		{"id too long", strings.Repeat("a", 33) + ":" + oldKeyHex, nil, "a key id has 33 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := codec.ParseKeys(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				for _, secret := range []string{oldKeyHex, newKeyHex, oldKeyHex[:62], strings.Repeat("zz", 32)} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error message reveals key material: %q", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if got := k.IDs(); strings.Join(got, ",") != strings.Join(tc.wantIDs, ",") {
				t.Errorf("IDs() = %v, want %v", got, tc.wantIDs)
			}
			if k.ActiveID() != tc.wantIDs[0] {
				t.Errorf("ActiveID() = %q, want %q", k.ActiveID(), tc.wantIDs[0])
			}
		})
	}
}

func TestGenerateKeys(t *testing.T) {
	a, err := codec.GenerateKeys("dev")
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.GenerateKeys("dev")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("two generated keys are equal")
	}
	k := mustKeys(t, a)
	if k.ActiveID() != "dev" {
		t.Errorf("generated key id = %q, want dev", k.ActiveID())
	}
	if _, err := codec.GenerateKeys("bad id"); err == nil {
		t.Error("GenerateKeys accepted an id with a space")
	}
}

func TestNilKeyringEncryptsNothingAndRefusesEncrypted(t *testing.T) {
	enc, err := codec.DataConverter(mustKeys(t, "k1:"+oldKeyHex)).ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	keyless := codec.DataConverter(nil)
	plain, err := keyless.ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(plain.Metadata[converter.MetadataEncoding]); got != "json/plain" {
		t.Errorf("without keys the encoding is %q, want json/plain", got)
	}
	var got subject
	if err := keyless.FromPayload(plain, &got); err != nil || got.Email != canary {
		t.Errorf("without keys a plain payload reads %+v, %v", got, err)
	}
	err = keyless.FromPayload(enc, &got)
	var de *codec.DecryptError
	if !errors.As(err, &de) || de.KeyID != "k1" || !strings.Contains(err.Error(), "LETHE_CODEC_KEYS is not set") {
		t.Errorf("without keys an encrypted payload gives %v, want a DecryptError for k1 saying no keys are set", err)
	}
}

// TestWorkflowCodeStopsOnUndecryptablePayloads: in workflow code a payload
// that cannot be decrypted panics (the SDK then retries the workflow task)
// rather than returning an error that would fail the workflow; any other
// decoding error, and every error outside workflow code, is returned.
func TestWorkflowCodeStopsOnUndecryptablePayloads(t *testing.T) {
	foreign, err := codec.DataConverter(mustKeys(t, "k9:"+newKeyHex)).ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	dc := codec.DataConverter(mustKeys(t, "k1:"+oldKeyHex))
	aware, ok := dc.(converter.ContextAware)
	if !ok {
		t.Fatal("the data converter is not context-aware")
	}
	inWorkflow := aware.WithWorkflowContext(nil)
	inActivity := aware.WithContext(context.Background())

	panicked := func(f func() error) (p any, err error) {
		defer func() { p = recover() }()
		return nil, f()
	}
	var got subject
	p, _ := panicked(func() error { return inWorkflow.FromPayload(foreign, &got) })
	var de *codec.DecryptError
	if perr, ok := p.(error); !ok || !errors.As(perr, &de) {
		t.Errorf("workflow code, undecryptable payload: panic %v, want a DecryptError", p)
	}
	p, _ = panicked(func() error {
		return inWorkflow.FromPayloads(&commonpb.Payloads{Payloads: []*commonpb.Payload{foreign}}, &got)
	})
	if p == nil {
		t.Error("workflow code, undecryptable payloads: no panic")
	}
	for name, c := range map[string]converter.DataConverter{"client": dc, "activity": inActivity} {
		p, err := panicked(func() error { return c.FromPayload(foreign, &got) })
		if p != nil || !errors.As(err, &de) {
			t.Errorf("%s, undecryptable payload: panic %v, err %v; want the DecryptError returned", name, p, err)
		}
	}
	// A payload that decrypts but does not fit the target is an ordinary error.
	mine, err := dc.ToPayload("a string")
	if err != nil {
		t.Fatal(err)
	}
	p, err = panicked(func() error { return inWorkflow.FromPayload(mine, &got) })
	if p != nil || err == nil {
		t.Errorf("workflow code, type mismatch: panic %v, err %v; want an error returned", p, err)
	}
}
