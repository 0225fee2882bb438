package connectors

import (
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"

	"github.com/segmentio/kafka-go/sasl"

	"github.com/lethe-dev/lethe/internal/kafkasec"
)

// KafkaSecurity is the `kafka:` block of a connector's configuration file:
// TLS (mutual TLS too) and a SASL login for a real cluster. The reference
// connectors share it, so one cluster's settings can be copied between
// their files; a service with a file of its own may embed it too. Lethe's
// own processes take the same settings from LETHE_KAFKA_* variables and
// validate them with the same code.
type KafkaSecurity struct {
	// TLS encrypts the connections, verifying the brokers against the
	// system's certificate authorities or TLSCAFile's.
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM file of the authorities that sign the brokers'
	// certificates, for a cluster with a private CA; it needs TLS.
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSCertFile and TLSKeyFile are the connector's PEM certificate and
	// key, for brokers that authenticate clients by certificate; both or
	// neither, and they need TLS.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSServerName is the name the brokers' certificates must carry when
	// it differs from the address dialled; it needs TLS.
	TLSServerName string `yaml:"tls_server_name"`
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

// settings are k in kafkasec's terms, with the password read through env
// (nil reads none, for validation before the environment matters), and the
// names of k's keys for its errors.
func (k KafkaSecurity) settings(env func(string) string) (kafkasec.Settings, kafkasec.Names) {
	s := kafkasec.Settings{
		TLS:        k.TLS,
		CAFile:     k.TLSCAFile,
		CertFile:   k.TLSCertFile,
		KeyFile:    k.TLSKeyFile,
		ServerName: k.TLSServerName,
	}
	n := kafkasec.Names{
		TLS:           "kafka.tls",
		CAFile:        "kafka.tls_ca_file",
		CertFile:      "kafka.tls_cert_file",
		KeyFile:       "kafka.tls_key_file",
		ServerName:    "kafka.tls_server_name",
		SASL:          "kafka.sasl",
		SASLMechanism: "kafka.sasl.mechanism",
		Username:      "kafka.sasl.username",
		Password:      "kafka.sasl.password_env",
	}
	if k.SASL != nil {
		s.SASL, s.SASLMechanism, s.Username = true, k.SASL.Mechanism, k.SASL.Username
		n.Password = fmt.Sprintf("environment variable $%s (kafka.sasl.password_env)", k.SASL.PasswordEnv)
		if env != nil {
			s.Password = env(k.SASL.PasswordEnv)
		}
	}
	return s, n
}

// Validate reports the first problem of k, naming its key in the file.
func (k KafkaSecurity) Validate() error {
	s, n := k.settings(nil)
	if err := s.Validate(n); err != nil {
		return err
	}
	if k.SASL == nil {
		return nil
	}
	switch {
	case k.SASL.PasswordEnv == "":
		return errors.New("kafka.sasl.password_env is missing")
	case !ValidEnvName(k.SASL.PasswordEnv):
		return fmt.Errorf("kafka.sasl.password_env %q is not an environment variable name", k.SASL.PasswordEnv)
	}
	return nil
}

// Build makes the TLS configuration and SASL mechanism for Config.TLS and
// Config.SASL, reading the certificate files and, from env, the password.
func (k KafkaSecurity) Build(env func(string) string) (*tls.Config, sasl.Mechanism, error) {
	if err := k.Validate(); err != nil {
		return nil, nil, err
	}
	s, n := k.settings(env)
	return s.Load(n)
}
