// Package devstack holds what `lethe dev` embeds so that one command runs all
// of Lethe on a laptop: a Temporal server on SQLite, the Temporal Web UI and a
// Kafka-protocol broker. Each part is a value with a start function and a
// Stop or Close method, so cmd/lethe composes them with the API, the worker
// and the relay and tears them down in reverse order.
package devstack

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// InUseError says that an address another process (or another part of this
// one) already listens on. Every start function checks its address first and
// returns this before starting anything, because a half-started stack is
// harder to explain than one line naming the port.
type InUseError struct {
	Addr string
}

// Error reads "address 127.0.0.1:7233 is in use"; callers prefix the role,
// giving "temporal address 127.0.0.1:7233 is in use".
func (e *InUseError) Error() string { return "address " + e.Addr + " is in use" }

// PortFree reports whether addr (host:port) can be listened on right now. It
// returns an *InUseError when something already listens there and another
// error when the address cannot be listened on at all.
func PortFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return &InUseError{Addr: addr}
		}
		return fmt.Errorf("address %s cannot be listened on: %w", addr, err)
	}
	return ln.Close()
}

// freePorts asks the kernel for n distinct free ports on host. The listeners
// stay open until all n are chosen so that no port is handed out twice; a
// process could still take one before we bind it, which is the accepted cost
// of choosing ports ahead of the servers that use them.
func freePorts(host string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("choose a free port on %s: %w", host, err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// splitAddr splits host:port and reads the port, naming the role in errors.
func splitAddr(role, addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s address %q: %w", role, addr, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s address %q: port must be a number from 0 to 65535", role, addr)
	}
	return host, port, nil
}
