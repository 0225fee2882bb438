package devstack

import (
	"context"
	"log/slog"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// debugging reports whether l wants debug output, the one case in which the
// embedded servers' own logs are worth showing.
func debugging(l *slog.Logger) bool {
	return l != nil && l.Enabled(context.Background(), slog.LevelDebug)
}

// serverLogger is the Temporal server's logger: silent unless l is at debug
// level, then everything the server says goes to l.
func serverLogger(l *slog.Logger) log.Logger {
	if !debugging(l) {
		return log.NewNoopLogger()
	}
	return slogServerLogger{l: l.With("component", "temporal-server")}
}

// sdkLogger is the logger for the SDK clients devstack opens itself; like the
// server, they are silent unless l is at debug level.
func sdkLogger(l *slog.Logger) *slog.Logger {
	if !debugging(l) {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// slogServerLogger bridges the server's tagged logger to slog.
type slogServerLogger struct {
	l *slog.Logger
}

var (
	_ log.Logger     = slogServerLogger{}
	_ log.WithLogger = slogServerLogger{}
)

func (s slogServerLogger) Debug(msg string, tags ...tag.Tag) { s.log(slog.LevelDebug, msg, tags) }
func (s slogServerLogger) Info(msg string, tags ...tag.Tag)  { s.log(slog.LevelInfo, msg, tags) }
func (s slogServerLogger) Warn(msg string, tags ...tag.Tag)  { s.log(slog.LevelWarn, msg, tags) }
func (s slogServerLogger) Error(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// DPanic, Panic and Fatal only log: a dev tool's embedded server must not
// end the process behind the caller's back, exactly as with the no-op logger
// used when not debugging.
func (s slogServerLogger) DPanic(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }
func (s slogServerLogger) Panic(msg string, tags ...tag.Tag)  { s.log(slog.LevelError, msg, tags) }
func (s slogServerLogger) Fatal(msg string, tags ...tag.Tag)  { s.log(slog.LevelError, msg, tags) }

// With keeps tags on a derived logger without re-converting them per line.
func (s slogServerLogger) With(tags ...tag.Tag) log.Logger {
	return slogServerLogger{l: slog.New(s.l.Handler().WithAttrs(attrs(tags)))}
}

func (s slogServerLogger) log(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.LogAttrs(ctx, level, msg, attrs(tags)...)
}

func attrs(tags []tag.Tag) []slog.Attr {
	out := make([]slog.Attr, 0, len(tags))
	for _, t := range tags {
		out = append(out, slog.Any(t.Key(), t.Value()))
	}
	return out
}
