package devstack_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/internal/testenv"
)

// A frontend with mutual TLS admits a client whose certificate its CA
// signed, through the same temporalx.Transport every role dials with, and
// refuses a client without a certificate, one with a certificate of
// another CA, and one speaking plaintext.
func TestTemporalMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := testenv.NewCA(t, "temporal")
	serverCert, serverKey, _ := ca.Issue(t, "frontend")
	clientCert, clientKey, _ := ca.Issue(t, "lethe")
	foreign := testenv.NewCA(t, "foreign")
	foreignCert, foreignKey, _ := foreign.Issue(t, "intruder")

	srv, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{
		Address: "127.0.0.1:0", Ephemeral: true,
		TLS: &devstack.TemporalTLS{CertFile: serverCert, KeyFile: serverKey, CAFile: ca.File},
	})
	if err != nil {
		t.Fatalf("start temporal with mutual TLS: %v", err)
	}
	t.Cleanup(srv.Stop)

	dial := func(tr temporalx.Transport) (client.Client, error) {
		opts := temporalx.ClientOptions(srv.Address(), srv.Namespace(), slog.New(slog.DiscardHandler), nil)
		if err := tr.Apply(&opts); err != nil {
			t.Fatalf("apply %+v: %v", tr, err)
		}
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		return temporalx.DialOptions(dctx, opts)
	}

	c, err := dial(temporalx.Transport{CAFile: ca.File, CertFile: clientCert, KeyFile: clientKey})
	if err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		t.Errorf("check health: %v", err)
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: srv.Namespace()}); err != nil {
		t.Errorf("describe namespace: %v", err)
	}

	for name, tr := range map[string]temporalx.Transport{
		"no client certificate":            {CAFile: ca.File},
		"a certificate of another CA":      {CAFile: ca.File, CertFile: foreignCert, KeyFile: foreignKey},
		"plaintext":                        {},
		"a server certificate not trusted": {CAFile: foreign.File, CertFile: clientCert, KeyFile: clientKey},
	} {
		if c, err := dial(tr); err == nil {
			c.Close()
			t.Errorf("client with %s connected", name)
		}
	}
}
