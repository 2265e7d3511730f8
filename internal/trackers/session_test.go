package trackers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// announceLog records what a test tracker was told.
type announceLog struct {
	mu   sync.Mutex
	recs []announceRec
}

type announceRec struct {
	event string
	left  int64
	from  netip.Addr // the packet's or connection's source
	port  uint16     // the port we said we listen on
}

func (l *announceLog) add(r announceRec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
}

func (l *announceLog) get() []announceRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

func (l *announceLog) events() []string {
	var out []string
	for _, r := range l.get() {
		out = append(out, r.event)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordingHTTP is an HTTP tracker that records announces and lists one peer.
func recordingHTTP(t *testing.T, log *announceLog) string {
	return hostileHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var left int64
		var port uint16
		fmt.Sscan(q.Get("left"), &left)
		fmt.Sscan(q.Get("port"), &port)
		from, _ := netip.ParseAddrPort(r.RemoteAddr)
		log.add(announceRec{event: q.Get("event"), left: left, from: from.Addr(), port: port})
		_, _ = w.Write([]byte("d8:intervali1800e12:min intervali60e5:peers6:\x7f\x00\x00\x05\x15\xb3e"))
	})
}

// recordingUDP is a UDP tracker that records announces and lists one peer.
func recordingUDP(t *testing.T, log *announceLog) string {
	return udpTracker(t, func(pc net.PacketConn, from net.Addr, req []byte) {
		switch {
		case len(req) == 16 && binary.BigEndian.Uint32(req[8:]) == actionConnect:
			_, _ = pc.WriteTo(connectReply(req), from)
		case len(req) >= 98 && binary.BigEndian.Uint32(req[8:]) == actionAnnounce:
			src := from.(*net.UDPAddr).AddrPort().Addr().Unmap()
			log.add(announceRec{event: Event(binary.BigEndian.Uint32(req[80:])).String(), left: int64(binary.BigEndian.Uint64(req[64:])), from: src, port: binary.BigEndian.Uint16(req[96:])})
			_, _ = pc.WriteTo(announceReply(req, 1800, "127.0.0.5:5555"), from)
		}
	})
}

// Issue 10: announces leave from the --listen address, and each tracker gets exactly one
// "started", one "completed" and one "stopped" over a torrent's life.
func TestSessionEvents(t *testing.T) {
	noLeak(t)
	local := netip.MustParseAddr("127.0.231.7")
	var hl, ul announceLog
	httpURL, udpURL := recordingHTTP(t, &hl), recordingUDP(t, &ul)
	var left atomic.Int64
	left.Store(1000)
	var found sync.Map
	s := (&Client{LocalAddr: local}).Session([]string{httpURL, udpURL, httpURL}, func() Request {
		return Request{InfoHash: [20]byte{1}, PeerID: [20]byte{2}, Port: 51413, Left: left.Load()}
	}, func(p netip.AddrPort) { found.Store(p, true) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()

	waitFor(t, "the first announces", func() bool { return len(hl.get()) == 1 && len(ul.get()) == 1 })
	s.Update() // nothing new to say and the min interval has not passed: no announce
	left.Store(0)
	s.Update() // completed: announced at once
	waitFor(t, "completed", func() bool { return len(hl.get()) == 2 && len(ul.get()) == 2 })
	s.Update() // completed already sent, min interval not passed: no announce
	cancel()
	<-done

	for name, l := range map[string]*announceLog{"http": &hl, "udp": &ul} {
		if got, want := l.events(), []string{"started", "completed", "stopped"}; !slices.Equal(got, want) {
			t.Errorf("%s tracker saw events %q, want %q", name, got, want)
		}
		for _, r := range l.get() {
			if r.from != local || r.port != 51413 {
				t.Errorf("%s tracker: announce from %v for port %d, want from %v for 51413", name, r.from, r.port, local)
			}
		}
	}
	if _, ok := found.Load(netip.MustParseAddrPort("127.0.0.5:5555")); !ok {
		t.Error("the trackers' peer was not delivered")
	}
}

// A seed's session: started (with left=0), never completed, stopped.
func TestSessionSeedNeverCompletes(t *testing.T) {
	var hl announceLog
	url := recordingHTTP(t, &hl)
	s := (&Client{}).Session([]string{url}, func() Request { return Request{Port: 1} }, func(netip.AddrPort) {})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	waitFor(t, "started", func() bool { return len(hl.get()) == 1 })
	s.Update()
	cancel()
	<-done
	if got := hl.events(); !slices.Equal(got, []string{"started", "stopped"}) {
		t.Fatalf("events %q", got)
	}
}

// The schedule in fake time: "started" repeated only while it fails (15 s, then 30 s back-off),
// then plain announces at the tracker's interval, "completed" at once when the download ends, an
// early announce on Update no sooner than the min interval, and "stopped" at the end.
func TestSessionSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type rec struct {
			at time.Duration
			ev Event
		}
		var mu sync.Mutex
		var recs []rec
		start := time.Now()
		fails := 2
		var left atomic.Int64
		left.Store(1)
		s := (&Client{}).Session([]string{"udp://tracker.invalid:1"}, func() Request { return Request{Left: left.Load()} }, func(netip.AddrPort) {})
		s.announce = func(ctx context.Context, url string, r Request) (Response, error) {
			mu.Lock()
			defer mu.Unlock()
			recs = append(recs, rec{time.Since(start), r.Event})
			if fails > 0 {
				fails--
				return Response{}, errors.New("unreachable")
			}
			return Response{Interval: 30 * time.Minute, MinInterval: 2 * time.Minute}, nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()

		time.Sleep(45*time.Second + 30*time.Minute + time.Second)
		left.Store(0)
		s.Update()
		synctest.Wait()
		s.Update() // a wish for peers: announced as soon as the min interval (2 min) allows
		synctest.Wait()
		time.Sleep(3 * time.Minute)
		cancel()
		<-done

		t0 := 45*time.Second + 30*time.Minute + time.Second
		want := []rec{
			{0, Started}, {15 * time.Second, Started}, {45 * time.Second, Started},
			{45*time.Second + 30*time.Minute, None},
			{t0, Completed},
			{t0 + 2*time.Minute, None},
			{t0 + 3*time.Minute, Stopped},
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(recs, want) {
			t.Fatalf("announces\n got %v\nwant %v", recs, want)
		}
	})
}
