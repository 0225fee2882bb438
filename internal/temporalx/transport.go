package temporalx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"go.temporal.io/sdk/client"
)

// Transport secures the connection to the Temporal frontend: TLS verified
// against a private CA or the system's, a client certificate for a
// frontend that requires mutual TLS, and a Temporal Cloud style API key.
// The zero value connects in plaintext, as the embedded server of
// `lethe dev` expects. Its fields are the TEMPORAL_TLS* and
// TEMPORAL_API_KEY settings, which its errors name.
type Transport struct {
	// TLS turns TLS on with the system's authorities alone; any other
	// setting implies it.
	TLS bool
	// CAFile is a PEM file of the authorities that sign the frontend's
	// certificate; empty trusts the system's authorities.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key; both
	// or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name the frontend's certificate must carry when it
	// differs from the host of TEMPORAL_ADDRESS.
	ServerName string
	// APIKey is sent as a bearer credential on every call; it implies TLS.
	APIKey string
}

// Secured reports whether t encrypts the connection: any of its settings
// does.
func (t Transport) Secured() bool {
	return t.TLS || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.APIKey != ""
}

// Validate reports the first setting that cannot work, without reading
// any file.
func (t Transport) Validate() error {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return errors.New("TEMPORAL_TLS_CERT is set without TEMPORAL_TLS_KEY")
	case t.KeyFile != "" && t.CertFile == "":
		return errors.New("TEMPORAL_TLS_KEY is set without TEMPORAL_TLS_CERT")
	}
	return nil
}

// Apply sets opts' connection TLS and credentials from t, reading its
// files; it leaves opts alone when t is the zero value. It is the one place
// every role's Temporal client is secured.
func (t Transport) Apply(opts *client.Options) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if !t.Secured() {
		return nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("TEMPORAL_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("TEMPORAL_TLS_CA %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error may describe the key's contents; only the files
			// are named.
			return errors.New("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY do not hold a PEM certificate and its private key")
		}
		c.Certificates = []tls.Certificate{cert}
	}
	opts.ConnectionOptions.TLS = c
	if t.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	}
	return nil
}
