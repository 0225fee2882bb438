package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
)

// get answers the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// startHealth serves d's health endpoints on a fresh port, and /metrics on
// another when separate is true; it answers both base URLs (the same one
// when metrics share the health listener).
func startHealth(t *testing.T, separate bool) (health, scrape string) {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	health = "http://" + hl.Addr().String()
	scrape = health
	var ml net.Listener
	if separate {
		if ml, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		scrape = "http://" + ml.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := &deps{cfg: &config{}, metrics: metrics.New()}
	go func() { done <- serveHealth(ctx, d, hl, ml) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("serveHealth: %v", err)
		}
	})
	return health, scrape
}

// Without LETHE_METRICS_ADDR, /metrics answers on the health listener as it
// always has, in a text format Prometheus parses, with the families of the
// worker and the relay.
func TestMetricsOnHealthListener(t *testing.T) {
	health, _ := startHealth(t, false)
	code, body := get(t, health+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics on the health listener = %d %q", code, body)
	}
	metricstest.Parse(t, body).Require(t, "lethe_escalations_total", "lethe_relay_lag_messages",
		"go_goroutines", "process_cpu_seconds_total")
	if code, _ := get(t, health+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d", code)
	}
}

// With LETHE_METRICS_ADDR, /metrics answers there and no longer on the
// health listener, which keeps the probes.
func TestMetricsOnOwnListener(t *testing.T) {
	health, metrics := startHealth(t, true)
	if code, body := get(t, metrics+"/metrics"); code != http.StatusOK || !strings.Contains(body, "lethe_escalations_total") {
		t.Errorf("GET /metrics on the metrics listener = %d %q", code, body)
	}
	if code, _ := get(t, health+"/metrics"); code != http.StatusNotFound {
		t.Errorf("GET /metrics on the health listener = %d, want 404", code)
	}
	if code, _ := get(t, health+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d", code)
	}
	if code, _ := get(t, metrics+"/healthz"); code != http.StatusNotFound {
		t.Errorf("GET /healthz on the metrics listener = %d, want 404", code)
	}
}

// LETHE_METRICS_ADDR is read from the environment, empty by default.
func TestMetricsAddrSetting(t *testing.T) {
	c, err := parseEnv(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddr != "" {
		t.Errorf("default LETHE_METRICS_ADDR = %q, want empty", c.MetricsAddr)
	}
	c, err = parseEnv(t, map[string]string{"LETHE_METRICS_ADDR": "0.0.0.0:9090"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddr != "0.0.0.0:9090" {
		t.Errorf("LETHE_METRICS_ADDR = %q", c.MetricsAddr)
	}
}

// The API serves /metrics beside its routes without LETHE_METRICS_ADDR, and
// only on that listener with it.
func TestAPIMetrics(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	t.Run("beside the routes", func(t *testing.T) {
		d := &deps{cfg: &config{}, metrics: metrics.New()}
		var g errgroup.Group
		h, err := serveMetrics(context.Background(), &g, d, api)
		if err != nil {
			t.Fatal(err)
		}
		metricstest.Scrape(t, h).Require(t, "lethe_escalations_total", "go_goroutines")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/systems", nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("GET /v1/systems = %d, want the API's answer", rec.Code)
		}
	})
	t.Run("own listener", func(t *testing.T) {
		d := &deps{cfg: &config{MetricsAddr: "127.0.0.1:0"}, metrics: metrics.New()}
		ctx, cancel := context.WithCancel(context.Background())
		g, gctx := errgroup.WithContext(ctx)
		h, err := serveMetrics(gctx, g, d, api)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("GET /metrics on the API listener = %d, want it left to the API", rec.Code)
		}
		cancel()
		if err := g.Wait(); !errors.Is(err, context.Canceled) {
			t.Errorf("metrics listener: %v", err)
		}
	})
}
