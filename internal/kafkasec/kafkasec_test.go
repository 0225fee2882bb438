package kafkasec_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/testenv"
)

var names = kafkasec.Names{
	TLS: "TLS", CAFile: "CA", CertFile: "CERT", KeyFile: "KEY", ServerName: "NAME",
	SASL: "SASL", SASLMechanism: "MECH", Username: "USER", Password: "PASS",
}

func TestSettingsValidate(t *testing.T) {
	sasl := func(mech, user string) kafkasec.Settings {
		return kafkasec.Settings{SASL: true, SASLMechanism: mech, Username: user, Password: "pw"}
	}
	for _, tt := range []struct {
		name string
		s    kafkasec.Settings
		want string // "" for valid
	}{
		{"plaintext", kafkasec.Settings{}, ""},
		{"TLS alone", kafkasec.Settings{TLS: true}, ""},
		{"CA without TLS", kafkasec.Settings{CAFile: "ca.pem"}, "CA is set but TLS is false"},
		{"certificate without TLS", kafkasec.Settings{CertFile: "c", KeyFile: "k"}, "CERT is set but TLS"},
		{"server name without TLS", kafkasec.Settings{ServerName: "kafka"}, "NAME is set but TLS"},
		{"certificate without key", kafkasec.Settings{TLS: true, CertFile: "c"}, "CERT is set without KEY"},
		{"key without certificate", kafkasec.Settings{TLS: true, KeyFile: "k"}, "KEY is set without CERT"},
		{"PLAIN", sasl("PLAIN", "u"), ""},
		{"scram in lower case", sasl("scram-sha-256", "u"), ""},
		{"no mechanism", sasl("", "u"), "MECH is missing"},
		{"unknown mechanism", sasl("GSSAPI", "u"), `MECH "GSSAPI" is not one of`},
		{"no user", sasl("SCRAM-SHA-512", ""), "USER is missing"},
	} {
		err := tt.s.Validate(names)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := (kafkasec.Settings{SASL: true, SASLMechanism: "PLAIN", Username: "u"}).Build(names); err == nil ||
		!strings.Contains(err.Error(), "PASS is not set") {
		t.Errorf("Build without a password: %v, want PASS named", err)
	}
}

// Brokers that require client certificates admit a client built from
// Settings with a certificate of their CA, and refuse one without.
func TestMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := testenv.NewCA(t, "kafka")
	_, _, serverPair := ca.Issue(t, "broker")
	clientCert, clientKey, _ := ca.Issue(t, "lethe")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{serverPair}, ClientCAs: ca.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	good, err := kafkasec.Settings{TLS: true, CAFile: ca.File, CertFile: clientCert, KeyFile: clientKey, ServerName: "localhost"}.Build(names)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := kafkasec.EnsureTopics(ctx, brokers, good, 1, "lethe.erasure.orders"); err != nil {
		t.Errorf("client with a certificate: %v", err)
	}

	bare, err := kafkasec.Settings{TLS: true, CAFile: ca.File}.Build(names)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	short, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := kafkasec.EnsureTopics(short, brokers, bare, 1, "lethe.erasure.billing"); err == nil {
		t.Errorf("client without a certificate was admitted")
	}
}
