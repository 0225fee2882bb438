package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a benchmark ran: its figures mean little without it.
type Machine struct {
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	GoVersion   string `json:"go_version"`
}

// ThisMachine describes the machine the process runs on. The memory is 0
// where /proc/meminfo cannot be read (outside Linux).
func ThisMachine() Machine {
	mem, _ := procField("/proc/meminfo", "MemTotal")
	return Machine{
		CPUs:        runtime.NumCPU(),
		MemoryBytes: mem,
		OS:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		GoVersion:   runtime.Version(),
	}
}

// PeakRSS is the process's peak resident set size (VmHWM) in bytes. With the
// whole stack in one process it bounds what `lethe dev` needs under the same
// load.
func PeakRSS() (int64, error) {
	return procField("/proc/self/status", "VmHWM")
}

// procField reads a "Name:   1234 kB" line of a /proc file, in bytes.
func procField(path, name string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return parseProcField(b, name)
}

func parseProcField(b []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != name {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s line", name)
}

// LoadAverage is the system's load averages over 1, 5 and 15 minutes as
// /proc/loadavg gives them, "" where it cannot be read. The report quotes
// it before and after a run: on a shared machine it says how much else
// competed for the CPUs.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
