package devstack_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/devstack"
)

func get(t *testing.T, ctx context.Context, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

func TestUIServesAndProxiesTemporal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startTemporal(t, ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", Namespace: "ui-test", Ephemeral: true})

	ui, err := devstack.StartUI(devstack.UIConfig{Addr: "127.0.0.1:0", TemporalAddress: srv.Address(), Namespace: srv.Namespace()})
	if err != nil {
		t.Fatalf("StartUI: %v", err)
	}
	defer ui.Stop()

	if code, _ := get(t, ctx, ui.URL()+"/"); code != http.StatusOK {
		t.Errorf("GET / = %d, want 200", code)
	}
	code, body := get(t, ctx, ui.URL()+"/api/v1/namespaces")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/namespaces = %d: %s", code, body)
	}
	var list struct {
		Namespaces []struct {
			NamespaceInfo struct {
				Name string `json:"name"`
			} `json:"namespaceInfo"`
		} `json:"namespaces"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("namespace list is not JSON: %v: %s", err, body)
	}
	found := false
	for _, ns := range list.Namespaces {
		found = found || ns.NamespaceInfo.Name == srv.Namespace()
	}
	if !found {
		t.Errorf("namespace %s missing from the UI's list: %s", srv.Namespace(), body)
	}

	ui.Stop()
	if conn, err := net.Dial("tcp", ui.Addr()); err == nil {
		conn.Close()
		t.Error("the UI still accepts connections after Stop")
	}
}

func TestUIAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Reaching the assertions at all shows the process survived: the UI
	// server would have exited it had it tried to listen.
	ui, err := devstack.StartUI(devstack.UIConfig{Addr: ln.Addr().String()})
	if err == nil {
		ui.Stop()
		t.Fatal("StartUI on a taken address succeeded")
	}
	if want := "temporal ui address " + ln.Addr().String() + " is in use"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}
