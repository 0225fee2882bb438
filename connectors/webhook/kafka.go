package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/segmentio/kafka-go/sasl"

	"github.com/lethe-dev/lethe/connectors"
)

// Kafka is the security of the connections to the brokers, with the same
// keys as the other reference connectors' files so that one cluster's
// settings can be copied between them.
type Kafka struct {
	// TLS encrypts the connections, verifying the brokers against the
	// system's certificate authorities or TLSCAFile's.
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM file of the authorities that sign the brokers'
	// certificates, for a cluster with a private CA; it needs TLS.
	TLSCAFile string `yaml:"tls_ca_file"`
	// SASL authenticates the connections, when set.
	SASL *SASL `yaml:"sasl"`
}

// SASL is a SASL login. The password comes from an environment variable,
// never from the file.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	// Username is the login.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
}

func (k Kafka) validate() error {
	if k.TLSCAFile != "" && !k.TLS {
		return errors.New("webhook: config: kafka.tls_ca_file is set but kafka.tls is false")
	}
	if k.SASL == nil {
		return nil
	}
	switch strings.ToUpper(k.SASL.Mechanism) {
	case connectors.SASLPlain, connectors.SASLSCRAMSHA256, connectors.SASLSCRAMSHA512:
	case "":
		return errors.New("webhook: config: kafka.sasl.mechanism is missing")
	default:
		return fmt.Errorf("webhook: config: kafka.sasl.mechanism %q is not one of %s, %s, %s",
			k.SASL.Mechanism, connectors.SASLPlain, connectors.SASLSCRAMSHA256, connectors.SASLSCRAMSHA512)
	}
	switch {
	case k.SASL.Username == "":
		return errors.New("webhook: config: kafka.sasl.username is missing")
	case !envNameRe.MatchString(k.SASL.PasswordEnv):
		return fmt.Errorf("webhook: config: kafka.sasl.password_env %q is not an environment variable name", k.SASL.PasswordEnv)
	}
	return nil
}

// security builds the SDK's TLS configuration and SASL mechanism, reading
// the password from env.
func (k Kafka) security(env func(string) string) (*tls.Config, sasl.Mechanism, error) {
	var tlsConfig *tls.Config
	if k.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(k.TLSCAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("webhook: kafka.tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("webhook: kafka.tls_ca_file %s holds no PEM certificate", k.TLSCAFile)
			}
			tlsConfig.RootCAs = pool
		}
	}
	if k.SASL == nil {
		return tlsConfig, nil, nil
	}
	password := env(k.SASL.PasswordEnv)
	if password == "" {
		return nil, nil, fmt.Errorf("webhook: $%s (kafka.sasl.password_env) is empty", k.SASL.PasswordEnv)
	}
	mechanism, err := connectors.SASL(k.SASL.Mechanism, k.SASL.Username, password)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook: kafka.sasl: %w", err)
	}
	return tlsConfig, mechanism, nil
}
