package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/temporalx"
)

// kafkaNames are the LETHE_KAFKA_* variables, for kafkasec's errors.
var kafkaNames = kafkasec.Names{
	TLS:           "LETHE_KAFKA_TLS",
	CAFile:        "LETHE_KAFKA_TLS_CA",
	CertFile:      "LETHE_KAFKA_TLS_CERT",
	KeyFile:       "LETHE_KAFKA_TLS_KEY",
	ServerName:    "LETHE_KAFKA_TLS_SERVER_NAME",
	SASL:          "LETHE_KAFKA_SASL_MECHANISM",
	SASLMechanism: "LETHE_KAFKA_SASL_MECHANISM",
	Username:      "LETHE_KAFKA_SASL_USERNAME",
	Password:      "LETHE_KAFKA_SASL_PASSWORD (or LETHE_KAFKA_SASL_PASSWORD_FILE)",
}

// kafkaSettings reads the LETHE_KAFKA_TLS* and LETHE_KAFKA_SASL* settings.
// TLS is on when LETHE_KAFKA_TLS says so or, when it is empty, when any TLS
// file or server name is given; SASL is on when any SASL setting is.
func (c *config) kafkaSettings() (kafkasec.Settings, error) {
	s := kafkasec.Settings{
		CAFile:        c.KafkaTLSCA,
		CertFile:      c.KafkaTLSCert,
		KeyFile:       c.KafkaTLSKey,
		ServerName:    c.KafkaTLSServerName,
		SASLMechanism: strings.TrimSpace(c.KafkaSASLMechanism),
		Username:      c.KafkaSASLUsername,
		Password:      c.KafkaSASLPassword,
	}
	if v := strings.TrimSpace(c.KafkaTLS); v == "" {
		s.TLS = s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.ServerName != ""
	} else {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return kafkasec.Settings{}, fmt.Errorf("LETHE_KAFKA_TLS %q: want true or false", c.KafkaTLS)
		}
		s.TLS = b
	}
	if c.KafkaSASLPasswordFile != "" {
		if s.Password != "" {
			return kafkasec.Settings{}, errors.New("LETHE_KAFKA_SASL_PASSWORD and LETHE_KAFKA_SASL_PASSWORD_FILE are both set: give one")
		}
		b, err := os.ReadFile(c.KafkaSASLPasswordFile)
		if err != nil {
			return kafkasec.Settings{}, fmt.Errorf("LETHE_KAFKA_SASL_PASSWORD_FILE: %w", err)
		}
		// A Secret written by hand often ends with a newline that is not
		// part of the password.
		s.Password = strings.TrimRight(string(b), "\r\n")
	}
	s.SASL = s.SASLMechanism != "" || s.Username != "" || s.Password != ""
	return s, nil
}

// kafkaSecurity builds the security of every Kafka client of the role,
// reading its files; an error names the variable at fault.
func (c *config) kafkaSecurity() (kafkasec.Security, error) {
	s, err := c.kafkaSettings()
	if err != nil {
		return kafkasec.Security{}, err
	}
	return s.Build(kafkaNames)
}

// temporalTransport is the TEMPORAL_TLS* and TEMPORAL_API_KEY settings.
func (c *config) temporalTransport() (temporalx.Transport, error) {
	var on bool
	if v := strings.TrimSpace(c.TemporalTLS); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return temporalx.Transport{}, fmt.Errorf("TEMPORAL_TLS %q: want true or false", c.TemporalTLS)
		}
		on = b
	}
	t := temporalx.Transport{
		TLS:        on,
		CAFile:     c.TemporalTLSCA,
		CertFile:   c.TemporalTLSCert,
		KeyFile:    c.TemporalTLSKey,
		ServerName: c.TemporalTLSServerName,
		APIKey:     c.TemporalAPIKey,
	}
	if strings.TrimSpace(c.TemporalTLS) != "" && !on && t.Secured() {
		return temporalx.Transport{}, errors.New("TEMPORAL_TLS is false but TEMPORAL_TLS_* or TEMPORAL_API_KEY is set")
	}
	return t, nil
}

// temporalOptions are the options of the role's Temporal client: the
// shared ClientOptions, secured by the TEMPORAL_TLS_* settings.
func (c *config) temporalOptions(opts client.Options) (client.Options, error) {
	t, err := c.temporalTransport()
	if err != nil {
		return client.Options{}, err
	}
	if err := t.Apply(&opts); err != nil {
		return client.Options{}, err
	}
	return opts, nil
}

// transportSecured reports whether any Kafka or Temporal transport setting
// is given (a TLS switch set to false is none): `lethe dev` refuses them, since the broker and the server it
// embeds speak plaintext only.
func (c *config) transportSecured() bool {
	for _, v := range []string{c.KafkaTLS, c.KafkaTLSCA, c.KafkaTLSCert, c.KafkaTLSKey, c.KafkaTLSServerName,
		c.KafkaSASLMechanism, c.KafkaSASLUsername, c.KafkaSASLPassword, c.KafkaSASLPasswordFile,
		c.TemporalTLS, c.TemporalTLSCA, c.TemporalTLSCert, c.TemporalTLSKey, c.TemporalTLSServerName, c.TemporalAPIKey} {
		if v != "" && v != "false" {
			return true
		}
	}
	return false
}
