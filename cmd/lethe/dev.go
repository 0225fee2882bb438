package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// devFlags adds the flags only `lethe dev` has.
func devFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.DataDir, "data-dir", ".lethe", "folder for the embedded Temporal and Kafka data and the generated subject, payload, signing and system keys")
	fs.BoolVar(&c.Demo, "demo", false, "also run three sample services with their own data")
	fs.BoolVar(&c.Ephemeral, "ephemeral", false, "keep Temporal's and Kafka's state in memory instead of the data folder")
}

// runDev starts the whole of Lethe on this machine.
func runDev(ctx context.Context, cfg *config, log *slog.Logger, stdout io.Writer) error {
	brokers := cfg.brokers()
	if len(brokers) == 0 {
		return errors.New("LETHE_KAFKA_BROKERS is empty")
	}
	if cfg.transportSecured() {
		return errors.New("lethe dev embeds a plaintext Kafka broker and Temporal server: unset the LETHE_KAFKA_TLS*, LETHE_KAFKA_SASL*, TEMPORAL_TLS_* and TEMPORAL_API_KEY settings")
	}
	for _, p := range []struct{ what, addr string }{
		{"API", cfg.HTTPAddr}, {"Temporal", cfg.TemporalAddress}, {"Kafka", brokers[0]}, {"UI", cfg.UIAddr}, {"codec", cfg.CodecAddr},
	} {
		if err := devstack.PortFree(p.addr); err != nil {
			return fmt.Errorf("%s %w", p.what, err)
		}
	}
	if err := registry.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("PostgreSQL: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if cfg.SubjectKey == "" {
		key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "subject.key"))
		if err != nil {
			return err
		}
		cfg.SubjectKey = key
	}
	if cfg.CodecKeys == "" {
		key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "codec.key"))
		if err != nil {
			return err
		}
		cfg.CodecKeys = devCodecKeyID + ":" + key
	}
	if cfg.SigningKey == "" {
		key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "signing.key"))
		if err != nil {
			return err
		}
		cfg.SigningKey = key
	}
	if cfg.SystemKey == "" {
		key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "system.key"))
		if err != nil {
			return err
		}
		cfg.SystemKey = key
	}
	keys, err := cfg.codecKeys()
	if err != nil {
		return err
	}

	// The Web UI server logs through the standard logger, once per
	// request when its users sign in; those lines go to the debug level.
	stdlog.SetFlags(0)
	stdlog.SetOutput(debugWriter{log.With("component", "temporal-ui")})

	kafkaDir := filepath.Join(cfg.DataDir, "kafka")
	temporalDir := filepath.Join(cfg.DataDir, "temporal")
	if cfg.Ephemeral {
		kafkaDir, temporalDir = "", ""
	}
	broker, err := devstack.StartKafka(devstack.KafkaConfig{Addr: brokers[0], DataDir: kafkaDir, Partitions: cfg.TopicPartitions})
	if err != nil {
		return err
	}
	defer broker.Close()
	tserver, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{
		Address: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
		DataDir: temporalDir, Ephemeral: cfg.Ephemeral, Logger: log,
	})
	if err != nil {
		return err
	}
	defer tserver.Stop()

	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := registry.Migrate(ctx, d.store.DB()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	access, as, err := cfg.apiAccess(ctx, d.store, true, log)
	if err != nil {
		return err
	}
	d.access = access
	if err := kafkax.EnsureTopics(ctx, brokers, cfg.TopicPartitions, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic)); err != nil {
		return fmt.Errorf("create confirmation topics: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	// The codec endpoint, and the sign-in provider of the Web UI beside it,
	// answer before the UI starts: the UI reads the provider's discovery
	// document as it starts, and must be told where the codec endpoint is.
	codecLn, err := listen(cfg.CodecAddr, "codec")
	if err != nil {
		return err
	}
	codecURL := "http://" + codecLn.Addr().String()
	codecAccess := codec.Access{Log: log}
	var signIn *devstack.SignIn
	if !access.AuthOff {
		codecAccess.Verifier, codecAccess.Cookie = access.Auth, devstack.CodecCookie
		if signIn, err = devstack.NewSignIn(codecURL+signInPath, as.devToken); err != nil {
			codecLn.Close()
			return err
		}
	}
	g.Go(func() error { return serveHTTP(gctx, codecLn, devCodecHandler(keys, cfg.UIAddr, codecAccess, signIn)) })
	ui, err := devstack.StartUI(devstack.UIConfig{
		Addr: cfg.UIAddr, TemporalAddress: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
		CodecEndpoint: codecURL, SignIn: signIn,
	})
	if err != nil {
		cancel()
		_ = g.Wait()
		return err
	}
	defer ui.Stop()

	ln, err := listen(cfg.HTTPAddr, "API")
	if err != nil {
		return err
	}
	h, pruner, err := apiHandler(d)
	if err != nil {
		ln.Close()
		return err
	}
	if h, err = serveMetrics(gctx, g, d, h); err != nil {
		ln.Close()
		return err
	}
	g.Go(func() error { return serveHTTP(gctx, ln, h) })
	g.Go(func() error { return workerLoop(gctx, d) })
	g.Go(func() error { return relayLoop(gctx, d) })
	if pruner != nil {
		g.Go(func() error { return pruner.Run(gctx) })
	}
	apiURL := "http://" + ln.Addr().String()
	if cfg.Demo {
		if err := startDemo(gctx, g, d, apiURL, as.devToken); err != nil {
			return err
		}
	}
	printBanner(stdout, apiURL, "http://"+cfg.UIAddr, codecURL, as.devToken, cfg)
	return g.Wait()
}

// debugWriter turns each write into one debug log line.
type debugWriter struct{ log *slog.Logger }

func (w debugWriter) Write(b []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(b)))
	return len(b), nil
}

// signInPath is where `lethe dev` serves its Web UI's sign-in provider,
// beside the codec endpoint.
const signInPath = "/sign-in"

// devCodecHandler serves the codec endpoint and, when signIn is set, the
// Web UI's sign-in provider under signInPath.
func devCodecHandler(keys *codec.Keyring, uiAddr string, access codec.Access, signIn *devstack.SignIn) http.Handler {
	h := codec.Handler(keys, uiOrigins(uiAddr), access)
	if signIn == nil {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle(signInPath+"/", http.StripPrefix(signInPath, signIn.Handler()))
	mux.Handle("/", h)
	return mux
}

// startDemo seeds the demo services' data, registers them through the API
// and runs their connectors in g.
func startDemo(ctx context.Context, g *errgroup.Group, d *deps, apiURL, token string) error {
	db := d.store.DB()
	if err := demo.Migrate(ctx, db); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if _, err := demo.Seed(ctx, db); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, sys := range demo.Systems() {
		body := map[string]any{
			"identifiers": sys.Identifiers, "produces": sys.Produces, "topic": sys.Topic,
			"owner": sys.Owner, "description": sys.Description, "confirm_within": sys.ConfirmWithin,
		}
		if err := putSystem(ctx, apiURL, token, sys.Name, body); err != nil {
			return fmt.Errorf("demo: register %s: %w", sys.Name, err)
		}
	}
	for name, h := range demo.Handlers(db) {
		cfg := connectors.Config{Brokers: d.cfg.brokers(), System: name, Logger: d.log.With("demo", name)}
		g.Go(func() error { return connectors.Run(ctx, cfg, h) })
	}
	return nil
}

// putSystem registers a system through the public API, as a service team would.
func putSystem(ctx context.Context, apiURL, token, name string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, apiURL+"/v1/systems/"+name, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	var resp *http.Response
	for try := 0; ; try++ {
		resp, err = http.DefaultClient.Do(req.Clone(ctx))
		if err == nil || try == 20 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("PUT /v1/systems/%s answered %s: %s", name, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// devCodecKeyID names the payload key `lethe dev` generates. Operators who
// move to their own keys keep it behind theirs in LETHE_CODEC_KEYS to read
// older histories.
const devCodecKeyID = "dev"

// uiOrigins are the origins a browser may show the UI listening on addr
// under: loopback is reached as localhost or 127.0.0.1 alike, and the
// codec endpoint must answer both.
func uiOrigins(addr string) []string {
	origins := []string{"http://" + addr}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return origins
	}
	switch host {
	case "127.0.0.1", "localhost", "::1", "", "0.0.0.0", "::":
		origins = nil
		for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
			origins = append(origins, "http://"+h+":"+port)
		}
	}
	return origins
}

// loadOrCreateKey reads the hex key kept in path (the subject key, the
// payload key, the Ed25519 seed that signs certificates, the system key
// credentials derive from), creating a random 32-byte one on first use.
func loadOrCreateKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("key file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	key := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	return key, nil
}

// printBanner tells the person at the terminal where everything is and
// how to call the API with the dev token (empty when LETHE_AUTH=off).
func printBanner(w io.Writer, apiURL, uiURL, codecURL, token string, cfg *config) {
	fmt.Fprintf(w, "\nLethe is ready.\n  API:         %s\n  Temporal UI: %s/namespaces/%s/workflows\n", apiURL, uiURL, cfg.TemporalNamespace)
	fmt.Fprintf(w, "  Codec:       %s (the UI decrypts workflow payloads through it)\n", codecURL)
	auth := ""
	if token != "" {
		fmt.Fprintf(w, "  Dev token:   %s (every scope; the commands below carry it)\n", token)
		auth = ` -H 'Authorization: Bearer ` + token + `'`
	}
	if !cfg.Demo {
		fmt.Fprintln(w, "\nRegister a system with PUT /v1/systems/{name}, then POST /v1/erasures (see README.md).")
		return
	}
	fmt.Fprintf(w, `
Demo services running: accounts, orders, analytics. Erase the demo subject:

  curl -s -X POST %[1]s/v1/erasures%[2]s -H 'Content-Type: application/json' \
    -d '{"subject":{"user_id":"u-demo-1","email":"ada@example.com"},"reason":"gdpr_art17","requested_by":"demo"}'

Then read its status with the "id" it answers:

  curl -s%[2]s %[1]s/v1/erasures/<id>

`, apiURL, auth)
}
