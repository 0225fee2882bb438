package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/internal/testenv"
)

// The Kafka transport settings build the security they describe, and a
// mistake names the variable at fault.
func TestKafkaTransportConfig(t *testing.T) {
	ca := testenv.NewCA(t, "kafka")
	cert, key, _ := ca.Issue(t, "lethe")
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name          string
		env           map[string]string
		tlsOn, saslOn bool
	}{
		{"nothing", map[string]string{}, false, false},
		{"a CA file implies TLS", map[string]string{"LETHE_KAFKA_TLS_CA": ca.File}, true, false},
		{"TLS with system CAs", map[string]string{"LETHE_KAFKA_TLS": "true"}, true, false},
		{"mutual TLS", map[string]string{"LETHE_KAFKA_TLS_CA": ca.File, "LETHE_KAFKA_TLS_CERT": cert, "LETHE_KAFKA_TLS_KEY": key,
			"LETHE_KAFKA_TLS_SERVER_NAME": "kafka.internal"}, true, false},
		{"SCRAM", map[string]string{"LETHE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "LETHE_KAFKA_SASL_USERNAME": "lethe",
			"LETHE_KAFKA_SASL_PASSWORD": "s3cret"}, false, true},
		{"password file", map[string]string{"LETHE_KAFKA_SASL_MECHANISM": "scram-sha-256", "LETHE_KAFKA_SASL_USERNAME": "lethe",
			"LETHE_KAFKA_SASL_PASSWORD_FILE": pwFile, "LETHE_KAFKA_TLS": "1"}, true, true},
	} {
		c, err := parseEnv(t, tt.env)
		if err != nil {
			t.Fatal(err)
		}
		sec, err := c.kafkaSecurity()
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if tlsOn, saslOn := sec.Secured(); tlsOn != tt.tlsOn || saslOn != tt.saslOn {
			t.Errorf("%s: tls %v sasl %v, want %v %v", tt.name, tlsOn, saslOn, tt.tlsOn, tt.saslOn)
		}
		sec.Close()
	}
	s, _ := parseEnv(t, map[string]string{"LETHE_KAFKA_SASL_USERNAME": "lethe", "LETHE_KAFKA_SASL_PASSWORD_FILE": pwFile,
		"LETHE_KAFKA_SASL_MECHANISM": "PLAIN"})
	if settings, err := s.kafkaSettings(); err != nil || settings.Password != "s3cret" {
		t.Errorf("password file: %q, %v; want the file's first line without its newline", settings.Password, err)
	}

	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LETHE_KAFKA_TLS": "maybe"}, "LETHE_KAFKA_TLS"},
		{map[string]string{"LETHE_KAFKA_TLS": "false", "LETHE_KAFKA_TLS_CA": ca.File}, "LETHE_KAFKA_TLS_CA"},
		{map[string]string{"LETHE_KAFKA_TLS_CA": filepath.Join(dir, "missing.pem")}, "LETHE_KAFKA_TLS_CA"},
		{map[string]string{"LETHE_KAFKA_TLS_CA": pwFile}, "LETHE_KAFKA_TLS_CA"},
		{map[string]string{"LETHE_KAFKA_TLS_CERT": cert}, "LETHE_KAFKA_TLS_KEY"},
		{map[string]string{"LETHE_KAFKA_TLS_KEY": key}, "LETHE_KAFKA_TLS_CERT"},
		{map[string]string{"LETHE_KAFKA_TLS_CERT": cert, "LETHE_KAFKA_TLS_KEY": pwFile}, "LETHE_KAFKA_TLS_CERT"},
		{map[string]string{"LETHE_KAFKA_SASL_USERNAME": "lethe", "LETHE_KAFKA_SASL_PASSWORD": "x"}, "LETHE_KAFKA_SASL_MECHANISM"},
		{map[string]string{"LETHE_KAFKA_SASL_MECHANISM": "GSSAPI", "LETHE_KAFKA_SASL_USERNAME": "lethe", "LETHE_KAFKA_SASL_PASSWORD": "x"}, "LETHE_KAFKA_SASL_MECHANISM"},
		{map[string]string{"LETHE_KAFKA_SASL_MECHANISM": "PLAIN", "LETHE_KAFKA_SASL_PASSWORD": "x"}, "LETHE_KAFKA_SASL_USERNAME"},
		{map[string]string{"LETHE_KAFKA_SASL_MECHANISM": "PLAIN", "LETHE_KAFKA_SASL_USERNAME": "lethe"}, "LETHE_KAFKA_SASL_PASSWORD"},
		{map[string]string{"LETHE_KAFKA_SASL_PASSWORD": "x", "LETHE_KAFKA_SASL_PASSWORD_FILE": pwFile}, "LETHE_KAFKA_SASL_PASSWORD_FILE"},
		{map[string]string{"LETHE_KAFKA_SASL_PASSWORD_FILE": filepath.Join(dir, "missing")}, "LETHE_KAFKA_SASL_PASSWORD_FILE"},
	} {
		c, err := parseEnv(t, tt.env)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.kafkaSecurity()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want one naming %s", tt.env, err, tt.want)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: err %q quotes the password", tt.env, err)
		}
	}
}

// The Temporal transport settings set the client's TLS and credentials,
// and a mistake names the variable at fault.
func TestTemporalTransportConfig(t *testing.T) {
	ca := testenv.NewCA(t, "temporal")
	cert, key, _ := ca.Issue(t, "lethe")
	c, _ := parseEnv(t, map[string]string{})
	opts, err := c.temporalOptions(clientOptions())
	if err != nil || opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Errorf("no settings: TLS %v, credentials %v, err %v; want plaintext", opts.ConnectionOptions.TLS, opts.Credentials, err)
	}
	c, _ = parseEnv(t, map[string]string{"TEMPORAL_TLS_CA": ca.File, "TEMPORAL_TLS_CERT": cert, "TEMPORAL_TLS_KEY": key,
		"TEMPORAL_TLS_SERVER_NAME": "temporal.internal"})
	opts, err = c.temporalOptions(clientOptions())
	if err != nil {
		t.Fatal(err)
	}
	if tc := opts.ConnectionOptions.TLS; tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "temporal.internal" {
		t.Errorf("mutual TLS: %+v", tc)
	}
	c, _ = parseEnv(t, map[string]string{"TEMPORAL_TLS": "true"})
	if opts, err = c.temporalOptions(clientOptions()); err != nil || opts.ConnectionOptions.TLS == nil || opts.ConnectionOptions.TLS.RootCAs != nil {
		t.Errorf("TEMPORAL_TLS=true: TLS %+v, err %v; want TLS with the system's CAs", opts.ConnectionOptions.TLS, err)
	}
	c, _ = parseEnv(t, map[string]string{"TEMPORAL_API_KEY": "key-123"})
	opts, err = c.temporalOptions(clientOptions())
	if err != nil || opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Errorf("API key: credentials %v, TLS %v, err %v; want both", opts.Credentials, opts.ConnectionOptions.TLS, err)
	}
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TEMPORAL_TLS_CERT": cert}, "TEMPORAL_TLS_KEY"},
		{map[string]string{"TEMPORAL_TLS_KEY": key}, "TEMPORAL_TLS_CERT"},
		{map[string]string{"TEMPORAL_TLS_CA": cert + ".missing"}, "TEMPORAL_TLS_CA"},
		{map[string]string{"TEMPORAL_TLS_CA": key}, "TEMPORAL_TLS_CA"},
		{map[string]string{"TEMPORAL_TLS_CERT": cert, "TEMPORAL_TLS_KEY": ca.File}, "TEMPORAL_TLS_CERT"},
		{map[string]string{"TEMPORAL_TLS": "yes please"}, "TEMPORAL_TLS"},
		{map[string]string{"TEMPORAL_TLS": "false", "TEMPORAL_API_KEY": "k"}, "TEMPORAL_TLS"},
	} {
		c, _ := parseEnv(t, tt.env)
		if _, err := c.temporalOptions(clientOptions()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want one naming %s", tt.env, err, tt.want)
		}
	}
}

// lethe dev refuses transport settings its embedded servers cannot honour.
func TestDevRefusesTransportConfig(t *testing.T) {
	for _, env := range []map[string]string{
		{"LETHE_KAFKA_SASL_USERNAME": "lethe"}, {"TEMPORAL_API_KEY": "k"}, {"LETHE_KAFKA_TLS": "true"},
	} {
		c, _ := parseEnv(t, env)
		if !c.transportSecured() {
			t.Errorf("%v: not seen as a transport setting", env)
		}
	}
	c, _ := parseEnv(t, map[string]string{"LETHE_KAFKA_TLS": "false"})
	if c.transportSecured() {
		t.Errorf("LETHE_KAFKA_TLS=false counted as a transport setting")
	}
}

func clientOptions() client.Options { return client.Options{HostPort: "127.0.0.1:7233"} }
