package webhook_test

import (
	"context"
	"io"
	"testing"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/wire"
)

// TestConformance runs the conformance kit against the webhook connector
// forwarding to an in-memory service that follows the protocol: the same
// checks every service team's connector passes, through the SDK on a real
// Kafka-protocol broker.
func TestConformance(t *testing.T) {
	svc, srv := newService(t)
	connectortest.Run(t, kitConfig(t, svc, srv.URL))
	if p := svc.problemsSeen(); len(p) > 0 {
		t.Errorf("the service found problems with the connector's requests: %v", p)
	}
}

// TestConformanceSeesThroughTheConnector breaks the service behind the
// connector: the kit must find it, so the connector hides nothing.
func TestConformanceSeesThroughTheConnector(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	svc, srv := newService(t)
	svc.ignoreDryRun = true
	failures := connectortest.Check(ctx, kitConfig(t, svc, srv.URL))
	found := false
	for _, f := range failures {
		found = found || f.Check == connectortest.CheckDryRun
	}
	if !found {
		t.Errorf("the kit did not report a service that erases on dry_run; failures: %v", failures)
	}
}

func kitConfig(t *testing.T, svc *service, url string) connectortest.Config {
	t.Helper()
	cfg := testConfig(url, io.Discard)
	return connectortest.Config{
		System:  cfg.System,
		Handler: newConnector(t, cfg),
		NewSubject: func() connectortest.Subject {
			id := uuid.NewString()
			return connectortest.Subject{
				Identifiers: []wire.Identifier{{Type: "email", Value: id + "@example.com"}, {Type: "user_id", Value: "u-" + id}},
				Derived:     []wire.Identifier{{Type: "device_id", Value: "d-" + id}},
			}
		},
		Seed: func(_ context.Context, s connectortest.Subject) error {
			svc.seed(s.Identifiers, s.Derived, 3)
			return nil
		},
		Remaining: func(_ context.Context, s connectortest.Subject) (int64, error) {
			return svc.remaining(s.Identifiers), nil
		},
		RevealsDerived: true,
	}
}
