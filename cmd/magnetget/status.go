package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/multiformats/go-multiaddr"
)

// metric is one figure a long-running command reports, both in its status
// line and on the HTTP endpoint.
type metric struct {
	Name  string // snake_case; Prometheus name is "magnetget_" + Name
	Help  string
	Value float64
	Gauge bool // else a counter
}

// serveStatus serves figures() as JSON at / and in the Prometheus text
// format at /metrics until ctx ends. addr is a multiaddr or host:port.
func serveStatus(ctx context.Context, addr string, figures func() []metric, log *slog.Logger) (net.Addr, func(), error) {
	// A listen address may have port 0 (any free port), which
	// maddr.ParseHostPort refuses for addresses to dial.
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ma, merr := multiaddr.NewMultiaddr(addr)
		if merr != nil {
			return nil, nil, fmt.Errorf("--status-addr: %q is neither a multiaddr nor ip:port", addr)
		}
		if ap, _, err = maddr.ToAddrPort(ma); err != nil {
			return nil, nil, fmt.Errorf("--status-addr: %w", err)
		}
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return nil, nil, fmt.Errorf("--status-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for _, m := range figures() {
			typ := "counter"
			if m.Gauge {
				typ = "gauge"
			}
			fmt.Fprintf(w, "# HELP magnetget_%s %s\n# TYPE magnetget_%s %s\nmagnetget_%s %g\n", m.Name, m.Help, m.Name, typ, m.Name, m.Value)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		out := map[string]float64{}
		for _, m := range figures() {
			out[m.Name] = m.Value
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("status server", "err", err)
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}
	return ln.Addr(), stop, nil
}
