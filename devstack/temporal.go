package devstack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/workflows"
)

// Defaults of TemporalConfig, the same as the contract's TEMPORAL_ADDRESS and
// TEMPORAL_NAMESPACE defaults, so `lethe dev` and the other roles meet
// without configuration.
const (
	DefaultTemporalAddress = "127.0.0.1:7233"
	DefaultNamespace       = "default"
)

// TemporalDBFile is the name of the SQLite file inside TemporalConfig.DataDir.
const TemporalDBFile = "temporal.db"

// clusterName is the name every single-node dev server uses; the stored
// cluster metadata must keep naming the same cluster across restarts.
const clusterName = "active"

// registerTimeout bounds the search attribute registration after start, so a
// server that never answers fails the start instead of hanging it.
const registerTimeout = 30 * time.Second

// TemporalConfig says where the embedded Temporal server listens and keeps
// its state.
type TemporalConfig struct {
	// Address is the frontend gRPC host:port, DefaultTemporalAddress when
	// empty. The host must be an IP address or "localhost"; port 0 picks a
	// free port (see Temporal.Address).
	Address string
	// Namespace is created in the store before the server starts, so clients
	// can use it at once. DefaultNamespace when empty.
	Namespace string
	// DataDir holds the SQLite file, TemporalDBFile. It is created when
	// missing. Required unless Ephemeral is set; ignored when it is.
	DataDir string
	// Ephemeral keeps the whole state in memory: every start is a new,
	// empty server.
	Ephemeral bool
	// TLS, when set, makes the frontend speak mutual TLS only; nil keeps it
	// plaintext, as `lethe dev` runs it.
	TLS *TemporalTLS
	// Logger receives the server's own logs, but only when it is enabled at
	// debug level: Temporal's logs are verbose and mean little to someone
	// trying Lethe, so the server is silent otherwise. Nil means silent.
	Logger *slog.Logger
}

// TemporalTLS is the frontend's mutual TLS: it exists so that tests can run
// Lethe's roles against a server that, like a production cluster, refuses
// clients without a certificate of its CA.
type TemporalTLS struct {
	// CertFile and KeyFile are the frontend's PEM certificate and key. The
	// server's own clients (its system workers, and the registration of
	// Lethe's search attributes at start) present the same pair, so the
	// certificate must be good for client authentication too.
	CertFile, KeyFile string
	// CAFile is the PEM certificate of the CA that signs the frontend's
	// certificate and the clients' certificates it accepts.
	CAFile string
}

// transport is how the server's own clients reach a frontend with t.
func (t *TemporalTLS) transport() temporalx.Transport {
	if t == nil {
		return temporalx.Transport{}
	}
	return temporalx.Transport{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
}

// apply turns on c's frontend TLS, requiring client certificates.
func (t *TemporalTLS) apply(c *config.Config) {
	if t == nil {
		return
	}
	c.Global.TLS.Frontend.Server = config.ServerTLS{
		CertFile: t.CertFile, KeyFile: t.KeyFile,
		ClientCAFiles: []string{t.CAFile}, RequireClientAuth: true,
	}
	c.Global.TLS.Frontend.Client = config.ClientTLS{RootCAFiles: []string{t.CAFile}}
	c.Global.TLS.SystemWorker = config.WorkerTLS{
		CertFile: t.CertFile, KeyFile: t.KeyFile,
		Client: config.ClientTLS{RootCAFiles: []string{t.CAFile}},
	}
}

func (c *TemporalConfig) setDefaults() {
	if c.Address == "" {
		c.Address = DefaultTemporalAddress
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work.
func (c TemporalConfig) Validate() error {
	if !c.Ephemeral && c.DataDir == "" {
		return errors.New("temporal: a data folder is required unless the state is ephemeral")
	}
	return nil
}

// Temporal is a running embedded Temporal server.
type Temporal struct {
	server    temporal.Server
	address   string
	namespace string
	logger    *slog.Logger
	dc        *dynamicconfig.MemoryClient
	transport temporalx.Transport
	stopOnce  sync.Once
}

// StartTemporal starts a Temporal server in this process, backed by SQLite
// (a file in cfg.DataDir, or memory), creates cfg.Namespace and registers
// Lethe's search attributes in it. It fails before starting anything when the
// frontend address is taken.
func StartTemporal(ctx context.Context, cfg TemporalConfig) (*Temporal, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, err := splitAddr("temporal", cfg.Address)
	if err != nil {
		return nil, err
	}
	bindIP, err := bindableIP(host)
	if err != nil {
		return nil, fmt.Errorf("temporal address %q: %w", cfg.Address, err)
	}
	if err := PortFree(net.JoinHostPort(bindIP.String(), strconv.Itoa(port))); err != nil {
		return nil, fmt.Errorf("temporal %w", err)
	}

	// Four more ports: frontend HTTP, history, matching, worker (and the
	// frontend's own when none was given). Static hosts replace ringpop
	// membership, so no membership ports are needed.
	n := 4
	if port == 0 {
		n = 5
	}
	ports, err := freePorts(bindIP.String(), n)
	if err != nil {
		return nil, fmt.Errorf("temporal: %w", err)
	}
	if port == 0 {
		port = ports[4]
	}
	l := layout{
		bindIP:   bindIP.String(),
		dialIP:   dialableIP(bindIP),
		frontend: port,
		http:     ports[0],
		history:  ports[1],
		matching: ports[2],
		worker:   ports[3],
	}

	sqlCfg, err := prepareStore(cfg)
	if err != nil {
		return nil, err
	}
	dc := dynamicConfig()
	serverCfg := l.serverConfig(sqlCfg)
	cfg.TLS.apply(serverCfg)
	srv, err := temporal.NewServer(
		temporal.WithConfig(serverCfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(l.staticHosts()),
		temporal.WithLogger(serverLogger(cfg.Logger)),
		temporal.WithDynamicConfigClient(dc),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal: build server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporal: start server: %w", err)
	}
	t := &Temporal{
		server:    srv,
		address:   net.JoinHostPort(l.dialIP, strconv.Itoa(l.frontend)),
		namespace: cfg.Namespace,
		logger:    cfg.Logger,
		dc:        dc,
		transport: cfg.TLS.transport(),
	}
	if err := t.registerSearchAttributes(ctx); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

// Address is the frontend's host:port as clients should dial it.
func (t *Temporal) Address() string { return t.address }

// Namespace is the namespace created at start.
func (t *Temporal) Namespace() string { return t.namespace }

// Stop stops the server and waits for it; calling it again does nothing.
// The SQLite file stays, so the next start on the same folder resumes every
// running workflow.
func (t *Temporal) Stop() {
	t.stopOnce.Do(func() {
		if err := t.server.Stop(); err != nil {
			t.logger.Warn("temporal server did not stop cleanly", "err", err)
		}
	})
}

// registerSearchAttributes runs at every start: a namespace created by an
// older Lethe, or by hand, lacks them, and a workflow that upserts an
// unregistered attribute gets stuck. Repeating it changes nothing.
//
// When the namespace already held every one of them as the server started
// (prepareStore puts them into a namespace it creates), the server's caches
// know them, and reading them through on every use is switched off: it
// costs a read of the namespace under a process-wide lock for each search
// attribute a workflow start, upsert or visibility record touches. When
// some were missing, this run keeps reading through, so that the ones just
// added work at once; the next start finds them all.
func (t *Temporal) registerSearchAttributes(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	// Registering search attributes carries no payloads: no codec needed.
	opts := temporalx.ClientOptions(t.address, t.namespace, sdkLogger(t.logger), nil)
	if err := t.transport.Apply(&opts); err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	c, err := temporalx.DialOptions(ctx, opts)
	if err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	defer c.Close()
	known, err := temporalx.SearchAttributesRegistered(ctx, c, t.namespace)
	if err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	if known {
		t.dc.OverrideSetting(dynamicconfig.ForceSearchAttributesCacheRefreshOnRead, false)
		return nil
	}
	if err := temporalx.RegisterSearchAttributes(ctx, c, t.namespace); err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	return nil
}

// SearchAttributesCached reports whether the server reads search
// attributes from its caches rather than through to the store on every
// use; see registerSearchAttributes.
func (t *Temporal) SearchAttributesCached() bool {
	return !dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Get(
		dynamicconfig.NewCollection(t.dc, log.NewNoopLogger()))()
}

// prepareStore builds the SQLite settings, creates the schema in a new file
// and the namespace in the store. The namespace must exist before the server
// starts: the frontend caches namespaces and would answer "not found" for a
// while if it were created later through the API.
func prepareStore(cfg TemporalConfig) (*config.SQL, error) {
	sqlCfg := &config.SQL{
		PluginName: sqliteplugin.PluginName,
		// Pragmas are attribute keys without a leading underscore: the
		// plugin turns unknown keys into pragmas and ignores "_journal_mode".
		// WAL with synchronous=normal more than doubles throughput over the
		// default journal and stays durable across process crashes.
		ConnectAttributes: map[string]string{
			"journal_mode": "wal",
			"synchronous":  "normal",
		},
	}
	if cfg.Ephemeral {
		// Shared cache lets the server's many connections see one database;
		// a unique name keeps two servers in one process (tests) apart.
		sqlCfg.ConnectAttributes["mode"] = "memory"
		sqlCfg.ConnectAttributes["cache"] = "shared"
		sqlCfg.DatabaseName = "lethe-" + uuid.NewString()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("temporal: data folder: %w", err)
		}
		file := filepath.Join(cfg.DataDir, TemporalDBFile)
		sqlCfg.ConnectAttributes["mode"] = "rwc"
		sqlCfg.DatabaseName = file
		_, err := os.Stat(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Only a new file gets the schema: the setup statements fail on
			// an existing one.
			if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
				// A file without its full schema would make every later start
				// panic; remove it so the next start begins afresh.
				os.Remove(file)
				return nil, fmt.Errorf("temporal: create schema in %s: %w", file, err)
			}
		case err != nil:
			return nil, fmt.Errorf("temporal: %w", err)
		}
	}
	// A namespace created here holds Lethe's search attributes from the
	// start, so the server loads them with it.
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, cfg.Namespace, false, workflows.SearchAttributeTypes)
	if err != nil {
		return nil, fmt.Errorf("temporal: namespace %s: %w", cfg.Namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("temporal: create namespace %s: %w", cfg.Namespace, err)
	}
	return sqlCfg, nil
}

// layout is where each of the server's services listens.
type layout struct {
	bindIP   string // what the frontend binds
	dialIP   string // how this process reaches it
	frontend int
	http     int
	history  int
	matching int
	worker   int
}

func (l layout) dial(port int) string { return net.JoinHostPort(l.dialIP, strconv.Itoa(port)) }

// serverConfig is the static configuration of a single-node dev server.
func (l layout) serverConfig(sqlCfg *config.SQL) *config.Config {
	const store = "sqlite-default"
	internal := func(port int) config.Service {
		var s config.Service
		s.RPC.GRPCPort = port
		s.RPC.BindOnIP = l.dialIP
		return s
	}
	frontend := internal(l.frontend)
	frontend.RPC.BindOnIP = l.bindIP
	frontend.RPC.HTTPPort = l.http

	var c config.Config
	c.Global.Membership.MaxJoinDuration = 30 * time.Second
	c.Global.Membership.BroadcastAddress = l.dialIP
	c.Persistence = config.Persistence{
		DefaultStore:     store,
		VisibilityStore:  store,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{store: {SQL: sqlCfg}},
	}
	// On restart the metadata stored in the file wins over this, so a new
	// cluster ID each start is harmless and the ports may change freely.
	c.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             l.dial(l.frontend),
				HTTPAddress:            l.dial(l.http),
				ClusterID:              uuid.NewString(),
			},
		},
	}
	c.DCRedirectionPolicy.Policy = "noop"
	c.Services = map[string]config.Service{
		string(primitives.FrontendService): frontend,
		string(primitives.HistoryService):  internal(l.history),
		string(primitives.MatchingService): internal(l.matching),
		string(primitives.WorkerService):   internal(l.worker),
	}
	c.Archival.History.State = "disabled"
	c.Archival.Visibility.State = "disabled"
	c.NamespaceDefaults.Archival.History.State = "disabled"
	c.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The server's own system workers dial the frontend through this.
	c.PublicClient.HostPort = l.dial(l.frontend)
	return &c
}

// staticHosts tells each service where the others are, which replaces
// ringpop's gossip for a server that is alone by definition.
func (l layout) staticHosts() map[primitives.ServiceName]static.Hosts {
	return map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(l.dial(l.frontend)),
		primitives.HistoryService:  static.SingleLocalHost(l.dial(l.history)),
		primitives.MatchingService: static.SingleLocalHost(l.dial(l.matching)),
		primitives.WorkerService:   static.SingleLocalHost(l.dial(l.worker)),
	}
}

// dynamicConfig is what the Temporal CLI's dev server sets, for the same
// reasons: list queries are not throttled at 10/s (the UI polls them), the
// mutable-state cache fits a laptop, and search attributes registered at
// start are visible at once, which costs persistence reads, hence the higher
// QPS limits. The last one is switched off once the search attributes are
// known to be cached (registerSearchAttributes), hence a client whose
// values can change while the server runs.
func dynamicConfig() *dynamicconfig.MemoryClient {
	dc := dynamicconfig.NewMemoryClient()
	dc.OverrideSetting(dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance, 100)
	dc.OverrideSetting(dynamicconfig.HistoryCacheHostLevelMaxSize, 8096)
	dc.OverrideSetting(dynamicconfig.FrontendPersistenceMaxQPS, 10000)
	dc.OverrideSetting(dynamicconfig.HistoryPersistenceMaxQPS, 45000)
	dc.OverrideSetting(dynamicconfig.ForceSearchAttributesCacheRefreshOnRead, true)
	return dc
}

// bindableIP turns the host of an address into the IP the server binds:
// Temporal's services want an IP, and "localhost" or an empty host mean the
// loopback interface here, never every interface.
func bindableIP(host string) (net.IP, error) {
	if host == "" || host == "localhost" {
		return net.IPv4(127, 0, 0, 1), nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, errors.New("the host must be an IP address or localhost")
	}
	return ip, nil
}

// dialableIP is the IP this process uses to reach a server bound to ip: an
// unspecified address (0.0.0.0) accepts loopback connections, and the
// internal services never need to be reachable from elsewhere.
func dialableIP(ip net.IP) string {
	if ip.IsUnspecified() {
		if ip.To4() == nil {
			return "::1"
		}
		return "127.0.0.1"
	}
	return ip.String()
}
