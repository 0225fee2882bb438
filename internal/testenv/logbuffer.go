package testenv

import (
	"bytes"
	"sync"
)

// LogBuffer collects what several goroutines write (a logger shared by a
// server and its test) and lets the test read it at any time; tests search
// it for identifier values that must never be logged.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
