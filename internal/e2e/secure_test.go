package e2e_test

import (
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/wire"
)

// TestErasureUnderLeastPrivilege erases a subject on a broker that
// requires SASL/SCRAM and enforces docs/security.md's ACLs: Lethe's API,
// worker and relay log in as "lethe", each demo connector as its own
// system, and the request completes with every row gone. The principals
// are as narrow as the docs say: the same broker refuses a connector that
// reaches for another system's commands.
func TestErasureUnderLeastPrivilege(t *testing.T) {
	s := newStack(t, stackOptions{Secure: true})
	subject := startDemo(t, s)
	all := subject.AllIdentifiers()
	e := s.submit(subjectMap(subject.Identifiers()))
	done := s.await(e.ID, 60*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("status = %s, want completed (%s)", done.Status, describe(done))
	}
	for _, sys := range []string{demo.SystemAccounts, demo.SystemOrders, demo.SystemAnalytics} {
		if p := systemByName(t, done, sys); p.Status != lethe.SystemErased {
			t.Errorf("%s status = %s, want erased", sys, p.Status)
		}
		if got := remaining(t, s, sys, all); got != 0 {
			t.Errorf("%s still holds %d rows of the subject", sys, got)
		}
	}

	// The orders connector's principal may not read the accounts commands.
	orders, err := kafkasec.Settings{SASL: true, SASLMechanism: kafkasec.SASLSCRAMSHA512,
		Username: demo.SystemOrders, Password: kafkaPassword(demo.SystemOrders)}.Build(kafkasec.Names{})
	if err != nil {
		t.Fatal(err)
	}
	defer orders.Close()
	conn, err := orders.Dialer().DialContext(s.ctx, "tcp", s.Brokers[0])
	if err != nil {
		t.Fatalf("orders logs in: %v", err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(wire.DefaultTopic(demo.SystemAccounts))
	if err == nil && len(parts) > 0 {
		t.Errorf("orders sees %d partitions of the accounts commands, want none", len(parts))
	}
}
