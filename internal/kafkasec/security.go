package kafkasec

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL returns the kafka-go mechanism named mechanism (PLAIN, SCRAM-SHA-256
// or SCRAM-SHA-512, in any case) for user and password, so that settings can
// name their mechanism as a string, the way Kafka's own tools do. PLAIN
// sends the password as it is: use it only over TLS. Errors never quote the
// password.
func SASL(mechanism, user, password string) (sasl.Mechanism, error) {
	if user == "" {
		return nil, errors.New("sasl: empty user name")
	}
	if password == "" {
		return nil, errors.New("sasl: empty password")
	}
	switch strings.ToUpper(mechanism) {
	case SASLPlain:
		return plain.Mechanism{Username: user, Password: password}, nil
	case SASLSCRAMSHA256:
		return scramMechanism(scram.SHA256, user, password)
	case SASLSCRAMSHA512:
		return scramMechanism(scram.SHA512, user, password)
	}
	return nil, fmt.Errorf("sasl: unknown mechanism %q, want %s, %s or %s",
		mechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
}

func scramMechanism(algo scram.Algorithm, user, password string) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, user, password)
	if err != nil {
		// The error comes from normalising the credentials (SASLprep); it
		// may quote them, so only its occurrence is reported.
		return nil, fmt.Errorf("sasl: %s: the user name or password cannot be normalised", algo.Name())
	}
	return m, nil
}

// Security is how one process's clients reach the brokers: with TLS, SASL,
// both or neither. The zero value connects in plaintext, as the embedded
// broker of `lethe dev` and the tests expect. Its writers and topic
// creation share one transport (see EnsureTopics); Close releases it.
type Security struct {
	tls  *tls.Config
	sasl sasl.Mechanism
	// tr is nil without TLS and SASL, so that plain connections keep using
	// kafka-go's default transport.
	tr *kafka.Transport
}

// New returns the Security of tlsConfig and mechanism, either of which may
// be nil.
func New(tlsConfig *tls.Config, mechanism sasl.Mechanism) Security {
	if tlsConfig == nil && mechanism == nil {
		return Security{}
	}
	return Security{
		tls:  tlsConfig,
		sasl: mechanism,
		tr:   &kafka.Transport{TLS: tlsConfig, SASL: mechanism},
	}
}

// Secured reports whether s uses TLS or SASL, for the roles' start-up log.
func (s Security) Secured() (tlsOn, saslOn bool) { return s.tls != nil, s.sasl != nil }

// Transport is what writers and admin clients (kafka.Client) take as their
// Transport, or nil for kafka-go's default one. It never returns a nil
// pointer inside a non-nil interface.
func (s Security) Transport() kafka.RoundTripper { return s.transport() }

// Dialer is a dialer of connections secured by s, for tools and tests that
// speak to one broker directly.
func (s Security) Dialer() *kafka.Dialer {
	if d := s.dialer(); d != nil {
		return d
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
}

func (s Security) transport() kafka.RoundTripper {
	if s.tr == nil {
		return nil
	}
	return s.tr
}

// dialer is the readers' dialer, nil for kafka-go's default one. Its timeout
// and dual stack are those of kafka-go's default dialer.
func (s Security) dialer() *kafka.Dialer {
	if s.tr == nil {
		return nil
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.tls, SASLMechanism: s.sasl}
}

// Check connects to the brokers one after the other until one accepts the
// connection or refuses the SASL credentials, and returns
// kafka.SASLAuthenticationFailed (wrapped) in the second case. It explains
// a failure of the clients: a broker that refuses the credentials may
// simply close the connection, which kafka-go's transport reports as an
// unexpected end of file, while its dialer, which authenticates step by
// step, recognises the refusal.
func (s Security) Check(ctx context.Context, brokers []string) error {
	if s.sasl == nil {
		return nil
	}
	d := s.dialer()
	for _, b := range brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		if errors.Is(err, kafka.SASLAuthenticationFailed) {
			return err
		}
	}
	return nil
}

// Close releases the idle connections of the shared transport.
func (s Security) Close() {
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
}
