package roles

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/registry"
)

func TestDepsValidate(t *testing.T) {
	full := Deps{
		Store:      registry.New(nil),
		Temporal:   fakeClient{},
		Brokers:    []string{"127.0.0.1:9092"},
		Partitions: 3,
		Logger:     slog.New(slog.DiscardHandler),
	}
	cases := []struct {
		name   string
		change func(*Deps)
		want   string
	}{
		{"no store", func(d *Deps) { d.Store = nil }, "no store"},
		{"no temporal", func(d *Deps) { d.Temporal = nil }, "no temporal client"},
		{"no brokers", func(d *Deps) { d.Brokers = nil }, "no kafka brokers"},
		{"no partitions", func(d *Deps) { d.Partitions = 0 }, "partitions"},
		{"no logger", func(d *Deps) { d.Logger = nil }, "no logger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := full
			tc.change(&d)
			err := d.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if err := full.Validate(); err != nil {
		t.Errorf("Validate() of complete deps = %v", err)
	}
}

// fakeClient is a Temporal client that is never called.
type fakeClient struct{ client.Client }

// TestServeShutsDownWhenContextEnds serves a handler, answers one request,
// and returns the context's error once it ends.
func TestServeShutsDownWhenContextEnds(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	}()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("status = %d, want 418 from the handler", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestListenNamesTheRole(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = Listen(taken.Addr().String(), "API")
	if err == nil || !strings.Contains(err.Error(), "API address "+taken.Addr().String()) {
		t.Errorf("Listen on a taken port = %v, want an error naming the API address", err)
	}
}
