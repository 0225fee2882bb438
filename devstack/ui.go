package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	"github.com/temporalio/ui-server/v2/server/server_options"
)

// DefaultUIAddress is where the Temporal Web UI listens by default, the
// contract's LETHE_UI_ADDR default.
const DefaultUIAddress = "127.0.0.1:8233"

// uiStartTimeout bounds how long StartUI waits for the UI to answer. It
// normally answers within milliseconds; the bound only turns a UI that never
// comes up into an error.
const uiStartTimeout = 15 * time.Second

// UIConfig says where the Temporal Web UI listens and which server it shows.
type UIConfig struct {
	// Addr is the UI's host:port, DefaultUIAddress when empty; port 0 picks
	// a free port (see UI.Addr).
	Addr string
	// TemporalAddress is the frontend gRPC host:port the UI's API proxies to,
	// DefaultTemporalAddress when empty.
	TemporalAddress string
	// Namespace is the one the UI opens on, DefaultNamespace when empty.
	Namespace string
	// CodecEndpoint, when set, points the browser at a codec server that
	// decodes payloads for display.
	CodecEndpoint string
	// SignIn, when set, makes the UI sign its users in at this provider and
	// pass their access token to the codec endpoint, as a deployed UI does
	// behind SSO. Its callback must be this UI's /auth/sso/callback.
	SignIn *SignIn
}

func (c *UIConfig) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultUIAddress
	}
	if c.TemporalAddress == "" {
		c.TemporalAddress = DefaultTemporalAddress
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
}

// UI is a running Temporal Web UI.
type UI struct {
	server *uiserver.Server
	addr   string
	done   chan struct{}
}

// StartUI starts the Temporal Web UI in this process and returns once it
// answers HTTP. It checks the port first: the UI server ends the whole
// process when it cannot listen, so that case must never reach it.
func StartUI(cfg UIConfig) (*UI, error) {
	cfg.setDefaults()
	host, port, err := splitAddr("temporal ui", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		ports, err := freePorts(host, 1)
		if err != nil {
			return nil, fmt.Errorf("temporal ui: %w", err)
		}
		port = ports[0]
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if err := PortFree(addr); err != nil {
		return nil, fmt.Errorf("temporal ui %w", err)
	}
	uiCfg := &uiconfig.Config{
		Host:                host,
		Port:                port,
		TemporalGRPCAddress: cfg.TemporalAddress,
		EnableUI:            true,
		DefaultNamespace:    cfg.Namespace,
		Codec:               uiconfig.Codec{Endpoint: cfg.CodecEndpoint},
		// The UI is served over plain HTTP on loopback: a Secure cookie
		// would never come back and every write action would fail CSRF.
		CORS:             uiconfig.CORS{CookieInsecure: true},
		HideLogs:         true,
		DisableNewsFetch: true,
	}
	if si := cfg.SignIn; si != nil {
		si.setCallback("http://" + addr + "/auth/sso/callback")
		// The UI hands access tokens to https codec endpoints only; an
		// http one gets the sign-in's cookie (see SignIn) instead.
		if strings.HasPrefix(cfg.CodecEndpoint, "https://") {
			uiCfg.Codec.PassAccessToken = true
		} else {
			uiCfg.Codec.IncludeCredentials = true
		}
		uiCfg.Auth.Enabled = true
		uiCfg.Auth.RedirectToProvider = true
		uiCfg.Auth.Providers = []uiconfig.AuthProvider{{
			Label: "lethe dev", Type: "oidc", ProviderURL: si.Issuer(),
			ClientID: DevClientID, ClientSecret: si.ClientSecret(),
			Scopes: []string{"openid"}, CallbackURL: si.Callback(),
		}}
	}
	srv, err := newUIServer(uiCfg)
	if err != nil {
		return nil, err
	}
	u := &UI{server: srv, addr: addr, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		// Start blocks until Stop and then returns nil.
		srv.Start()
	}()
	if err := u.waitReady(); err != nil {
		u.Stop()
		return nil, err
	}
	return u, nil
}

// newUIServer builds the UI server, turning its panics on bad configuration
// into an error.
func newUIServer(cfg *uiconfig.Config) (srv *uiserver.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("temporal ui: %v", r)
		}
	}()
	return uiserver.NewServer(server_options.WithConfigProvider(cfg)), nil
}

// waitReady polls the UI's health route until it answers 200.
func (u *UI) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), uiStartTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	url := u.URL() + "/healthz"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("temporal ui: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-u.done:
			return errors.New("temporal ui: the server stopped while starting")
		case <-ctx.Done():
			return fmt.Errorf("temporal ui did not answer on %s within %s", u.addr, uiStartTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Addr is the host:port the UI listens on.
func (u *UI) Addr() string { return u.addr }

// URL is the UI's base URL, for the banner `lethe dev` prints.
func (u *UI) URL() string { return "http://" + u.addr }

// Stop closes the UI's listener and connections and waits for it to end.
// Calling it again does nothing.
func (u *UI) Stop() {
	select {
	case <-u.done:
		return
	default:
	}
	u.server.Stop()
	<-u.done
}
