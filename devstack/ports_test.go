package devstack_test

import (
	"errors"
	"net"
	"testing"

	"github.com/lethe-dev/lethe/devstack"
)

func TestPortFree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := ln.Addr().String()

	err = devstack.PortFree(taken)
	var inUse *devstack.InUseError
	if !errors.As(err, &inUse) || inUse.Addr != taken {
		t.Fatalf("PortFree(%s) while listening = %v, want an *InUseError for it", taken, err)
	}
	if want := "address " + taken + " is in use"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	ln.Close()
	if err := devstack.PortFree(taken); err != nil {
		t.Errorf("PortFree(%s) after closing = %v, want nil", taken, err)
	}

	err = devstack.PortFree("no-port-here")
	if err == nil || errors.As(err, &inUse) {
		t.Errorf("PortFree of a malformed address = %v, want an error other than in use", err)
	}
}
