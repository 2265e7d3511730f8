package realclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Tracker is a minimal HTTP tracker (BEP 3, compact replies per BEP 23) on a
// loopback address. aria2 ignores x.pe peer hints and finds DHT peers only
// on its slow timers; a tracker URL in the magnet (tr=) is its fastest way
// to a peer. Peers that announce are remembered (bounded); Add registers a
// peer that does not announce itself (a libtorrent seeder without
// trackers, a magnetget swarm under test).
type Tracker struct {
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	logger *slog.Logger

	mu    sync.Mutex // guards peers
	peers map[[20]byte][]netip.AddrPort
}

// Tracker bounds: a test tracker never needs more.
const (
	trackerMaxTorrents = 1024
	trackerMaxPeers    = 256 // per infohash
	trackerMaxQuery    = 4096
)

// ErrBadAnnounce: an announce request the tracker refuses.
var ErrBadAnnounce = errors.New("bad announce")

// StartTracker listens on ip:0 (zero ip: 127.0.0.1) and serves /announce
// until Close.
func StartTracker(ip netip.Addr, logger *slog.Logger) (*Tracker, error) {
	if !ip.IsValid() {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	if err := checkLoopbackAddr(ip); err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	t := &Tracker{ln: ln, done: make(chan struct{}), logger: orDiscard(logger), peers: make(map[[20]byte][]netip.AddrPort)}
	mux := http.NewServeMux()
	mux.HandleFunc("/announce", t.announce)
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		defer close(t.done)
		_ = t.srv.Serve(ln)
	}()
	return t, nil
}

// URL is the announce URL to put in a magnet (tr=) or torrent.
func (t *Tracker) URL() string { return "http://" + t.ln.Addr().String() + "/announce" }

// Add registers peer for ih as if it had announced.
func (t *Tracker) Add(ih [20]byte, peer netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(ih, peer)
}

func (t *Tracker) addLocked(ih [20]byte, peer netip.AddrPort) {
	ps, ok := t.peers[ih]
	if !ok && len(t.peers) >= trackerMaxTorrents {
		return
	}
	if slices.Contains(ps, peer) || len(ps) >= trackerMaxPeers {
		return
	}
	t.peers[ih] = append(ps, peer)
}

// Peers returns the peers known for ih, in order of arrival.
func (t *Tracker) Peers(ih [20]byte) []netip.AddrPort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.peers[ih])
}

// Close stops the server and waits for it.
func (t *Tracker) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := t.srv.Shutdown(ctx)
	if err != nil {
		err = t.srv.Close()
	}
	<-t.done
	return err
}

// Announce is one parsed announce request.
type Announce struct {
	InfoHash [20]byte
	Peer     netip.AddrPort // remote IP (or a loopback ip= parameter) and port
	Event    string
}

// ParseAnnounce parses an announce query string from remote. A loopback
// ip= parameter overrides the remote address (clients behind --interface
// report their bound address); anything else is ignored.
func ParseAnnounce(rawQuery string, remote netip.Addr) (Announce, error) {
	if len(rawQuery) > trackerMaxQuery {
		return Announce{}, fmt.Errorf("%w: query of %d bytes", ErrBadAnnounce, len(rawQuery))
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Announce{}, fmt.Errorf("%w: %w", ErrBadAnnounce, err)
	}
	var a Announce
	ih := q.Get("info_hash")
	if len(ih) != 20 {
		return Announce{}, fmt.Errorf("%w: info_hash of %d bytes", ErrBadAnnounce, len(ih))
	}
	copy(a.InfoHash[:], ih)
	port, err := strconv.ParseUint(q.Get("port"), 10, 16)
	if err != nil || port == 0 {
		return Announce{}, fmt.Errorf("%w: port %q", ErrBadAnnounce, q.Get("port"))
	}
	ip := remote.Unmap()
	if s := q.Get("ip"); s != "" {
		if x, err := netip.ParseAddr(s); err == nil && x.Unmap().IsLoopback() {
			ip = x.Unmap()
		}
	}
	if !ip.IsValid() {
		return Announce{}, fmt.Errorf("%w: no peer address", ErrBadAnnounce)
	}
	a.Peer = netip.AddrPortFrom(ip, uint16(port))
	a.Event = q.Get("event")
	return a, nil
}

func (t *Tracker) announce(w http.ResponseWriter, r *http.Request) {
	var remote netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = ap.Addr()
	}
	a, err := ParseAnnounce(r.URL.RawQuery, remote)
	if err != nil {
		t.logger.Debug("tracker: refused announce", "from", r.RemoteAddr, "err", err)
		w.Write(bencodeDict("failure reason", err.Error()))
		return
	}
	t.mu.Lock()
	var others []netip.AddrPort
	for _, p := range t.peers[a.InfoHash] {
		if p != a.Peer {
			others = append(others, p)
		}
	}
	if a.Event == "stopped" {
		t.peers[a.InfoHash] = slices.DeleteFunc(t.peers[a.InfoHash], func(p netip.AddrPort) bool { return p == a.Peer })
	} else {
		t.addLocked(a.InfoHash, a.Peer)
	}
	t.mu.Unlock()
	t.logger.Debug("tracker: announce", "from", a.Peer, "event", a.Event, "peers", len(others))
	var compact, compact6 []byte
	for _, p := range others {
		ip := p.Addr().Unmap()
		if ip.Is4() {
			b := ip.As4()
			compact = append(compact, b[:]...)
		} else {
			b := ip.As16()
			compact6 = append(compact6, b[:]...)
		}
		pt := p.Port()
		if ip.Is4() {
			compact = append(compact, byte(pt>>8), byte(pt))
		} else {
			compact6 = append(compact6, byte(pt>>8), byte(pt))
		}
	}
	// Keys in sorted order, as bencode requires.
	var buf bytes.Buffer
	buf.WriteString("d8:intervali5e12:min intervali1e5:peers")
	buf.WriteString(strconv.Itoa(len(compact)) + ":")
	buf.Write(compact)
	buf.WriteString("6:peers6")
	buf.WriteString(strconv.Itoa(len(compact6)) + ":")
	buf.Write(compact6)
	buf.WriteString("e")
	w.Header().Set("Content-Type", "text/plain")
	w.Write(buf.Bytes())
}

func bencodeDict(k, v string) []byte {
	return []byte("d" + strconv.Itoa(len(k)) + ":" + k + strconv.Itoa(len(v)) + ":" + v + "e")
}
