package connectors

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

// KafkaSecurity is the `kafka:` block of a connector's configuration file:
// TLS and a SASL login for a real cluster. The reference connectors share
// it, so one cluster's settings can be copied between their files; a
// service with a file of its own may embed it too.
type KafkaSecurity struct {
	// TLS encrypts the connections, verifying the brokers against the
	// system's certificate authorities or TLSCAFile's.
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM file of the authorities that sign the brokers'
	// certificates, for a cluster with a private CA; it needs TLS.
	TLSCAFile string `yaml:"tls_ca_file"`
	// SASL authenticates the connections, when set.
	SASL *SASLLogin `yaml:"sasl"`
}

// SASLLogin is a SASL login. The password comes from an environment
// variable, never from the file.
type SASLLogin struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	// Username is the login.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
}

// envNameRe matches an environment variable's name.
var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidEnvName reports whether s may name an environment variable, for
// configuration keys that point at one (secrets stay out of files).
func ValidEnvName(s string) bool { return envNameRe.MatchString(s) }

// Validate reports the first problem of k, naming its key in the file.
func (k KafkaSecurity) Validate() error {
	if k.TLSCAFile != "" && !k.TLS {
		return errors.New("kafka.tls_ca_file is set but kafka.tls is false")
	}
	if k.SASL == nil {
		return nil
	}
	switch strings.ToUpper(k.SASL.Mechanism) {
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
	case "":
		return errors.New("kafka.sasl.mechanism is missing")
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q is not one of %s, %s, %s",
			k.SASL.Mechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
	}
	switch {
	case k.SASL.Username == "":
		return errors.New("kafka.sasl.username is missing")
	case k.SASL.PasswordEnv == "":
		return errors.New("kafka.sasl.password_env is missing")
	case !ValidEnvName(k.SASL.PasswordEnv):
		return fmt.Errorf("kafka.sasl.password_env %q is not an environment variable name", k.SASL.PasswordEnv)
	}
	return nil
}

// Build makes the TLS configuration and SASL mechanism for Config.TLS and
// Config.SASL, reading the CA file and, from env, the password.
func (k KafkaSecurity) Build(env func(string) string) (*tls.Config, sasl.Mechanism, error) {
	var tlsConfig *tls.Config
	if k.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(k.TLSCAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("kafka.tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("kafka.tls_ca_file %s holds no PEM certificate", k.TLSCAFile)
			}
			tlsConfig.RootCAs = pool
		}
	}
	if k.SASL == nil {
		return tlsConfig, nil, nil
	}
	password := env(k.SASL.PasswordEnv)
	if password == "" {
		return nil, nil, fmt.Errorf("environment variable $%s (kafka.sasl.password_env) is not set", k.SASL.PasswordEnv)
	}
	mechanism, err := SASL(k.SASL.Mechanism, k.SASL.Username, password)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka.sasl: %w", err)
	}
	return tlsConfig, mechanism, nil
}
