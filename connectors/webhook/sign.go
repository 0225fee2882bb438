package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of the protocol (see the package documentation).
const (
	// HeaderSignature carries the timestamp and the HMAC of the body.
	HeaderSignature = "Lethe-Signature"
	// HeaderCommandID carries the command id, for the endpoint's logs and
	// routing without parsing the body.
	HeaderCommandID = "Lethe-Command-Id"
	// HeaderIdempotency carries the command id too, under the name HTTP
	// tooling already knows for "the same operation again".
	HeaderIdempotency = "Idempotency-Key"
)

// Sign is the Lethe-Signature header value for body sent at t: the Unix
// time in seconds and the hex HMAC-SHA256 of "<t>.<body>" under secret. The
// connector and Verifier share this one implementation, so they cannot
// disagree on the format.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// signature is a parsed Lethe-Signature header.
type signature struct {
	ts   string // as sent, since the MAC covers these exact digits
	unix int64
	v1   [][]byte
}

var errMalformedHeader = errors.New("the header is not t=<unix seconds>,v1=<hex>")

// parseSignature reads "t=…,v1=…". Unknown keys are ignored so that a later
// scheme (v2) can be sent alongside v1; several v1 values are allowed so a
// sender can sign with an old and a new secret while they rotate.
func parseSignature(h string) (signature, error) {
	var s signature
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return signature{}, errMalformedHeader
		}
		switch k {
		case "t":
			if s.ts != "" || v == "" || len(v) > 12 || strings.Trim(v, "0123456789") != "" {
				return signature{}, errMalformedHeader
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return signature{}, errMalformedHeader
			}
			s.ts, s.unix = v, n
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return signature{}, errMalformedHeader
			}
			s.v1 = append(s.v1, b)
		}
	}
	if s.ts == "" || len(s.v1) == 0 {
		return signature{}, errMalformedHeader
	}
	return s, nil
}
