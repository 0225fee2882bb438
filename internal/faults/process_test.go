package faults_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/workflows"
)

// binDir holds the lethe binary built for the tests that run it as child
// processes; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// letheBinary builds cmd/lethe once per test run, so that the processes a
// test kills are the very program operators run.
func letheBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "lethe-faults-")
		if buildErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(binDir, "lethe")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool, "build", "-o", binPath, "github.com/lethe-dev/lethe/cmd/lethe").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/lethe: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// process is a child lethe process.
type process struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *testenv.LogBuffer
	done chan struct{}
	err  error
}

// startProcess runs `lethe <role>` with env added to this process's
// environment; it is stopped, if still running, when the test ends.
func startProcess(t *testing.T, role string, env []string) *process {
	t.Helper()
	bin := letheBinary(t)
	p := &process{t: t, name: role, out: &testenv.LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, role)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start lethe %s: %v", role, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of lethe %s:\n%s", role, tail(p.out.String(), 4000))
		}
	})
	return p
}

// awaitLog waits until the process has written substr, failing the test if
// it exits or ctx ends first.
func (p *process) awaitLog(ctx context.Context, substr string) {
	p.t.Helper()
	for !strings.Contains(p.out.String(), substr) {
		select {
		case <-p.done:
			p.t.Fatalf("lethe %s exited (%v) before logging %q:\n%s", p.name, p.err, substr, tail(p.out.String(), 4000))
		case <-ctx.Done():
			p.t.Fatalf("lethe %s never logged %q:\n%s", p.name, substr, tail(p.out.String(), 4000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitPolling waits until the Temporal server has a workflow task poll
// from the process, so that a task started now can be handed to it.
func (p *process) awaitPolling(ctx context.Context, c client.Client) {
	p.t.Helper()
	identity := fmt.Sprintf("%d@", p.cmd.Process.Pid)
	for {
		resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		if err == nil {
			for _, poller := range resp.GetPollers() {
				if strings.HasPrefix(poller.GetIdentity(), identity) {
					return
				}
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("lethe %s exited (%v) before polling:\n%s", p.name, p.err, tail(p.out.String(), 4000))
		case <-ctx.Done():
			p.t.Fatalf("lethe %s never polled for workflow tasks (%v)", p.name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and checks that the process died of it, which is the
// proof that the fault happened: no deferred cleanup, no graceful stop.
func (p *process) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill lethe %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("lethe %s did not die of SIGKILL", p.name)
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) {
		p.t.Fatalf("lethe %s ended with %v, want death by SIGKILL", p.name, p.err)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		p.t.Fatalf("lethe %s ended with %v, want death by SIGKILL", p.name, p.err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// proxy forwards TCP connections to upstream. Freeze stops the bytes from
// clients to upstream while those coming back still flow: a worker behind a
// frozen proxy still receives the tasks it polled for and runs them, but
// can never report their results, as if it died just before reporting.
type proxy struct {
	t        *testing.T
	ln       net.Listener
	upstream string

	mu sync.Mutex
	// frozen is nil until Freeze; it is never closed, so that held bytes
	// wait until the proxy itself closes.
	frozen chan struct{}
	closed chan struct{}
	conns  []net.Conn
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, upstream: upstream, closed: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is where clients dial the proxy.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Freeze holds every byte clients send from now on, until the proxy closes.
func (p *proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

func (p *proxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *proxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		return
	default:
	}
	close(p.closed)
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		c.Close()
		return false
	default:
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c) || !p.track(up) {
			c.Close()
			up.Close()
			return
		}
		go p.forward(c, up)
		go func() {
			io.Copy(c, up)
			c.Close()
		}()
	}
}

// forward copies client bytes upstream, holding them while frozen.
func (p *proxy) forward(c, up net.Conn) {
	defer up.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if g := p.gate(); g != nil {
				select {
				case <-g:
				case <-p.closed:
					return
				}
			}
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
