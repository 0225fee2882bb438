// Package kafkasec is how every Kafka client of Lethe reaches a cluster:
// the security settings (TLS, mutual TLS, SASL), their validation, and the
// writers, readers and topic creation built over them. The orchestrator's
// roles (through internal/kafkax) and the connectors SDK both use it, so the
// two ends of the wire are secured, and configured, by one implementation.
// It depends only on the standard library and kafka-go, keeping the SDK
// light.
package kafkasec

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

// Settings are the security settings of one process's Kafka clients, as an
// operator writes them (environment variables for Lethe's roles, a
// connector's configuration file for the reference connectors).
type Settings struct {
	// TLS encrypts the connections, verifying the brokers against the
	// system's certificate authorities or CAFile's.
	TLS bool
	// CAFile is a PEM file of the authorities that sign the brokers'
	// certificates, for a cluster with a private CA.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for
	// brokers that authenticate clients by certificate (mutual TLS); both
	// or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name the brokers' certificates must carry, when it
	// differs from the host dialled (brokers reached through an address
	// their certificates do not name).
	ServerName string
	// SASL authenticates the connections with SASLMechanism, Username and
	// Password.
	SASL bool
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, in any case.
	SASLMechanism string
	Username      string
	// Password is read by the caller from wherever secrets live; it is
	// never quoted in an error.
	Password string
}

// Names are how an operator spells each setting, so that an error names
// the key to fix: an environment variable for Lethe's roles, a key of a
// connector's file for the reference connectors.
type Names struct {
	TLS, CAFile, CertFile, KeyFile, ServerName string
	SASL, SASLMechanism, Username, Password    string
}

// Validate reports the first problem of s without reading any file:
// settings that only make sense with TLS but come without it, a certificate
// without its key, an unknown SASL mechanism, a missing user name.
func (s Settings) Validate(n Names) error {
	for _, f := range []struct{ value, name string }{
		{s.CAFile, n.CAFile}, {s.CertFile, n.CertFile}, {s.KeyFile, n.KeyFile}, {s.ServerName, n.ServerName},
	} {
		if f.value != "" && !s.TLS {
			return fmt.Errorf("%s is set but %s is false", f.name, n.TLS)
		}
	}
	switch {
	case s.CertFile != "" && s.KeyFile == "":
		return fmt.Errorf("%s is set without %s", n.CertFile, n.KeyFile)
	case s.KeyFile != "" && s.CertFile == "":
		return fmt.Errorf("%s is set without %s", n.KeyFile, n.CertFile)
	}
	if !s.SASL {
		return nil
	}
	switch strings.ToUpper(s.SASLMechanism) {
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
	case "":
		return fmt.Errorf("%s is missing", n.SASLMechanism)
	default:
		return fmt.Errorf("%s %q is not one of %s, %s, %s",
			n.SASLMechanism, s.SASLMechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
	}
	if s.Username == "" {
		return fmt.Errorf("%s is missing", n.Username)
	}
	return nil
}

// Build validates s, reads its files and returns the Security its clients
// connect with. A missing password is reported here, naming n.Password,
// since a caller may validate a file before the secret is at hand.
func (s Settings) Build(n Names) (Security, error) {
	tlsConfig, mechanism, err := s.Load(n)
	if err != nil {
		return Security{}, err
	}
	return New(tlsConfig, mechanism), nil
}

// Load is Build's two halves, for a caller that hands them to a
// configuration of its own (connectors.Config's TLS and SASL): the TLS
// configuration, nil without TLS, and the SASL mechanism, nil without SASL.
func (s Settings) Load(n Names) (*tls.Config, sasl.Mechanism, error) {
	if err := s.Validate(n); err != nil {
		return nil, nil, err
	}
	tlsConfig, err := s.tlsConfig(n)
	if err != nil {
		return nil, nil, err
	}
	if !s.SASL {
		return tlsConfig, nil, nil
	}
	if s.Password == "" {
		return nil, nil, fmt.Errorf("%s is not set", n.Password)
	}
	mechanism, err := SASL(s.SASLMechanism, s.Username, s.Password)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", n.SASL, err)
	}
	return tlsConfig, mechanism, nil
}

// tlsConfig is nil without TLS.
func (s Settings) tlsConfig(n Names) (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s holds no PEM certificate", n.CAFile, s.CAFile)
		}
		c.RootCAs = pool
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			// The error may describe the key file's contents; only the
			// files are named.
			return nil, fmt.Errorf("%s and %s do not hold a PEM certificate and its private key", n.CertFile, n.KeyFile)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// The SASL mechanisms SASL knows, by the names Kafka gives them.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)
