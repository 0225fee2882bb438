package connectors_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

const (
	saslUser     = "orders-connector"
	saslPassword = "correct-horse-battery"
)

func TestSASL(t *testing.T) {
	for _, name := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "scram-sha-512"} {
		m, err := connectors.SASL(name, saslUser, saslPassword)
		if err != nil {
			t.Errorf("SASL(%q) = %v", name, err)
			continue
		}
		if m.Name() != strings.ToUpper(name) {
			t.Errorf("SASL(%q) gives mechanism %q", name, m.Name())
		}
	}
	for _, tt := range []struct{ mechanism, user, password string }{
		{"GSSAPI", saslUser, saslPassword},
		{"", saslUser, saslPassword},
		{"PLAIN", "", saslPassword},
		{"PLAIN", saslUser, ""},
	} {
		_, err := connectors.SASL(tt.mechanism, tt.user, tt.password)
		if err == nil {
			t.Errorf("SASL(%q, %q, password) = nil error, want one", tt.mechanism, tt.user)
		} else if strings.Contains(err.Error(), saslPassword) {
			t.Errorf("SASL error %q quotes the password", err)
		}
	}
}

// secureKafka starts a kfake broker that requires SASL (a user per
// mechanism, all named saslUser), with TLS when serverTLS is set.
func secureKafka(t *testing.T, serverTLS *tls.Config) []string {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(3, topic, wire.ConfirmationsTopic),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", saslUser, saslPassword),
		kfake.Superuser("SCRAM-SHA-256", saslUser, saslPassword),
		kfake.Superuser("SCRAM-SHA-512", saslUser, saslPassword),
	}
	if serverTLS != nil {
		opts = append(opts, kfake.TLS(serverTLS))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs()
}

// selfSigned returns a server configuration with a certificate for
// 127.0.0.1 and a client configuration that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kfake"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

func TestRunOverSASLAndTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := selfSigned(t)
	tests := []struct {
		name      string
		mechanism string
		tls       bool
	}{
		{"PLAIN over TLS", "PLAIN", true},
		{"SCRAM-SHA-256", "SCRAM-SHA-256", false},
		{"SCRAM-SHA-512 over TLS", "SCRAM-SHA-512", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			var server, client *tls.Config
			if tt.tls {
				server, client = serverTLS, clientTLS
			}
			brokers := secureKafka(t, server)
			mechanism, err := connectors.SASL(tt.mechanism, saslUser, saslPassword)
			if err != nil {
				t.Fatal(err)
			}
			cfg := config(brokers, nil)
			cfg.SASL, cfg.TLS = mechanism, client
			h := newRecorder(nil)
			start(t, cfg, h)

			cmd := commandFor()
			w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
				Transport: &kafka.Transport{SASL: mechanism, TLS: client}}
			defer w.Close()
			if err := w.WriteMessages(ctx, commandMessage(t, cmd)); err != nil {
				t.Fatalf("produce: %v", err)
			}
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers: brokers, Topic: wire.ConfirmationsTopic, GroupID: "test", StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
				Dialer: &kafka.Dialer{Timeout: 10 * time.Second, SASLMechanism: mechanism, TLS: client},
			})
			defer r.Close()
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("read the confirmation: %v", err)
			}
			c, err := wire.DecodeConfirmation(m.Value)
			if err != nil || c.CommandID != cmd.CommandID || c.Outcome != wire.OutcomeErased {
				t.Errorf("confirmation = %+v, %v; want the command erased", c, err)
			}
		})
	}
}

func TestRunRefusedCredentials(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers := secureKafka(t, nil)
	tests := []struct {
		name      string
		mechanism sasl.Mechanism
	}{
		{"wrong password", mustSASL(t, "SCRAM-SHA-256", saslUser, "wrong-password")},
		{"unknown user", mustSASL(t, "PLAIN", "intruder", "wrong-password")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(brokers, nil)
			cfg.SASL = tt.mechanism
			err := connectors.Run(ctx, cfg, newRecorder(nil))
			if err == nil {
				t.Fatal("Run = nil with refused credentials, want an error")
			}
			if !errors.Is(err, kafka.SASLAuthenticationFailed) || !strings.Contains(err.Error(), "SASL credentials") {
				t.Errorf("Run = %q, want an error saying the SASL credentials were refused", err)
			}
			if strings.Contains(err.Error(), "wrong-password") {
				t.Errorf("Run's error %q quotes the password", err)
			}
		})
	}
	if ctx.Err() != nil {
		t.Errorf("Run took until the test's deadline to give up: %v", ctx.Err())
	}
}

func mustSASL(t *testing.T, mechanism, user, password string) sasl.Mechanism {
	t.Helper()
	m, err := connectors.SASL(mechanism, user, password)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A connector's file names a client certificate, its key and the brokers'
// certificate name; Build turns them into the TLS configuration of mutual
// TLS, and a broken pair is named by its keys.
func TestKafkaSecurityMutualTLS(t *testing.T) {
	ca := testenv.NewCA(t, "kafka")
	cert, key, _ := ca.Issue(t, "orders")
	k := connectors.KafkaSecurity{TLS: true, TLSCAFile: ca.File, TLSCertFile: cert, TLSKeyFile: key, TLSServerName: "kafka.internal",
		SASL: &connectors.SASLLogin{Mechanism: "SCRAM-SHA-512", Username: "orders", PasswordEnv: "ORDERS_KAFKA_PASSWORD"}}
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	tc, m, err := k.Build(func(string) string { return saslPassword })
	if err != nil {
		t.Fatal(err)
	}
	if tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "kafka.internal" || m == nil {
		t.Errorf("Build = %+v, %v; want a client certificate, the CA, the server name and a SASL mechanism", tc, m)
	}
	k.TLSKeyFile = ca.File
	if _, _, err := k.Build(func(string) string { return saslPassword }); err == nil || !strings.Contains(err.Error(), "kafka.tls_cert_file") {
		t.Errorf("Build with a certificate as key: %v, want an error naming kafka.tls_cert_file", err)
	}
	k.TLSKeyFile = key
	if _, _, err := k.Build(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "$ORDERS_KAFKA_PASSWORD") {
		t.Errorf("Build without the password: %v, want an error naming the variable", err)
	}
}
