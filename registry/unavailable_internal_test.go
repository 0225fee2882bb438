package registry

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"bad connection", driver.ErrBadConn, true},
		{"connection done", sql.ErrConnDone, true},
		{"cut mid-message", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"connection failure", &pq.Error{Code: pqerror.Code("08006")}, true},
		{"admin shutdown", &pq.Error{Code: pqerror.AdminShutdown}, true},
		{"crash shutdown", &pq.Error{Code: pqerror.CrashShutdown}, true},
		{"starting up", &pq.Error{Code: pqerror.CannotConnectNow}, true},
		{"too many connections", fmt.Errorf("wrapped: %w", &pq.Error{Code: pqerror.TooManyConnections}), true},
		{"unique violation", &pq.Error{Code: pqerror.UniqueViolation}, false},
		{"syntax error", &pq.Error{Code: pqerror.Code("42601")}, false},
		{"no rows", sql.ErrNoRows, false},
		{"anything else", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unavailable(tt.err); got != tt.want {
				t.Errorf("unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	id := "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
	gotAt, gotID, ok := decodeCursor(encodeCursor(at, id))
	if !ok || !gotAt.Equal(at) || gotID.String() != id {
		t.Errorf("decode(encode(%v, %s)) = %v, %s, %v", at, id, gotAt, gotID, ok)
	}
}
