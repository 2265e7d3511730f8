package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// lineHandler writes slog records in the CLI's own voice, so a warning
// reads like the errors beside it:
//
//	magnetget: warning: DHT port 6881 is taken; using 40123 instead
//	magnetget: warning: bootstrap: node=/ip4/1.2.3.4/udp/6881 err="no node responded (1 queried)"
//
// Errors among the attributes are shortened as user errors are
// (userMessage), values with spaces or control characters are quoted, and
// with --debug each line starts with the time.
type lineHandler struct {
	mu     *sync.Mutex // guards w, shared by handlers derived with With*
	w      io.Writer
	level  slog.Level
	times  bool
	attrs  []slog.Attr
	groups string
}

func newLineHandler(w io.Writer, level slog.Level) *lineHandler {
	return &lineHandler{mu: &sync.Mutex{}, w: w, level: level, times: level <= slog.LevelDebug}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if h.times {
		b.WriteString(r.Time.Format(time.TimeOnly + ".000 "))
	}
	b.WriteString("magnetget: ")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	case r.Level >= slog.LevelInfo:
		b.WriteString("info: ")
	default:
		b.WriteString("debug: ")
	}
	b.WriteString(esc(r.Message))
	first := true
	add := func(a slog.Attr) bool {
		if a.Equal(slog.Attr{}) {
			return true
		}
		if first {
			b.WriteString(":")
			first = false
		}
		b.WriteByte(' ')
		b.WriteString(h.groups + a.Key)
		b.WriteByte('=')
		b.WriteString(formatValue(a.Value))
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func formatValue(v slog.Value) string {
	v = v.Resolve()
	var s string
	switch v.Kind() {
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			s = userMessage(err)
		} else {
			s = fmt.Sprint(v.Any())
		}
	case slog.KindGroup:
		var parts []string
		for _, a := range v.Group() {
			parts = append(parts, a.Key+"="+formatValue(a.Value))
		}
		return "{" + strings.Join(parts, " ") + "}"
	default:
		s = v.String()
	}
	if s == "" || strings.ContainsAny(s, " \"=") || esc(s) != s {
		return strconv.Quote(s)
	}
	return s
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.groups = h.groups + name + "."
	return &n
}
