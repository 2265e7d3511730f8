package trackers

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/magnetget/magnetget/internal/alloctest"
	"github.com/magnetget/magnetget/internal/httpbound"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noLeak fails the test if goroutines started during it are still running after its cleanups.
// Call it first, so that its cleanup runs last.
func noLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines left behind:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

// hostileHTTP serves h on 127.0.0.1 and returns its announce URL.
func hostileHTTP(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/announce"
}

func serveBody(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }
}

// Row 1 of issue 9: anacrolix's tracker client panicked the whole process on these replies.
func TestHostileHTTPReplyShapes(t *testing.T) {
	noLeak(t)
	good := "d2:ip9:127.0.0.94:porti6881ee"
	for _, tc := range []struct {
		name, body string
		wantErr    error // nil: success
		wantPeers  []string
	}{
		{"integer in peers", "d8:intervali1800e5:peersli5eee", nil, nil},
		{"integer beside a good peer", "d5:peersli5e" + good + "ee", nil, []string{"127.0.0.9:6881"}},
		{"ip is an integer", "d5:peersld2:ipi5e4:porti1eeee", nil, nil},
		{"port is a string", "d5:peersld2:ip9:127.0.0.14:port4:abcdeee", nil, nil},
		{"ip is a list, port a dict", "d5:peersld2:ipl1:ae4:portdee" + good + "ee", nil, []string{"127.0.0.9:6881"}},
		{"port out of range", "d5:peersld2:ip9:127.0.0.14:porti70000eeee", nil, nil},
		{"ip is a host name", "d5:peersld2:ip11:example.com4:porti1eeee", nil, nil},
		{"peers is an integer", "d5:peersi5ee", nil, nil},
		{"peers is a dict", "d5:peersd1:ai1eee", nil, nil},
		{"peers6 is a list", "d6:peers6li1eee", nil, nil},
		{"compact peers with a partial entry", "d5:peers8:\x7f\x00\x00\x02\x1a\xe1\x00\x00e", nil, []string{"127.0.0.2:6881"}},
		{"compact peers6", "d6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e", nil, []string{"[::1]:6881"}},
		{"interval is a string", "d8:interval4:soone", nil, nil},
		{"top level is a list", "li1ee", ErrBadReply, nil},
		{"top level is an integer", "i5e", ErrBadReply, nil},
		{"empty body", "", ErrBadReply, nil},
		{"html", "<html>502 Bad Gateway</html>", ErrBadReply, nil},
		{"string longer than the reply", "d5:peers1099511627776:xe", ErrBadReply, nil},
		{"truncated", "d5:peersl", ErrBadReply, nil},
		{"trailing garbage", "d5:peers0:ee", ErrBadReply, nil},
		{"deep nesting", "d5:peers" + strings.Repeat("l", 100000) + strings.Repeat("e", 100001), ErrBadReply, nil},
		{"failure reason", "d14:failure reason12:unregisterede", ErrFailure, nil},
		{"failure reason of the wrong type", "d14:failure reasoni5ee", ErrFailure, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := hostileHTTP(t, serveBody(tc.body))
			res, err := (&Client{Timeout: 5 * time.Second}).Announce(context.Background(), url, Request{})
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var got []string
			for _, p := range res.Peers {
				got = append(got, p.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantPeers) {
				t.Fatalf("peers %v, want %v", got, tc.wantPeers)
			}
		})
	}
}

func TestHostileHTTPIntervals(t *testing.T) {
	for _, tc := range []struct {
		body      string
		want, min time.Duration
	}{
		{"d8:intervali99999999999999999e12:min intervali9223372036854775807ee", MaxInterval, MaxInterval},
		{"d8:intervali-5e12:min intervali-9223372036854775808ee", 0, 0},
		{"d8:intervali1800e12:min intervali60ee", 30 * time.Minute, time.Minute},
	} {
		res, err := (&Client{}).Announce(context.Background(), hostileHTTP(t, serveBody(tc.body)), Request{})
		if err != nil || res.Interval != tc.want || res.MinInterval != tc.min {
			t.Errorf("%q: interval %v min %v err %v; want %v, %v", tc.body, res.Interval, res.MinInterval, err, tc.want, tc.min)
		}
	}
}

// Row 2 of issue 9: a reply that never ends was read whole (2.7 GB RSS).
func TestHostileHTTPEndlessBody(t *testing.T) {
	noLeak(t)
	url := hostileHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("d5:peersl"), 4096)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	var err error
	n := alloctest.Bytes(func() { _, err = (&Client{Timeout: 10 * time.Second}).Announce(context.Background(), url, Request{}) })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if len(err.Error()) > 300 {
		t.Fatalf("the error quotes the body: %d bytes", len(err.Error()))
	}
	if n > 16<<20 {
		t.Fatalf("an endless reply allocated %d MiB", n>>20)
	}
	t.Logf("endless reply: %d KiB allocated", n>>10)
}

// A Content-Length above the limit is refused before reading.
func TestHostileHTTPHugeContentLength(t *testing.T) {
	noLeak(t)
	url := hostileHTTP(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "2000000000")
		_, _ = w.Write([]byte("de"))
	})
	if _, err := (&Client{}).Announce(context.Background(), url, Request{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// A gzip bomb: 64 MiB of zeros in 64 KiB. Go's transport asks for gzip and inflates it;
// the 1 MiB limit applies to what it inflates.
func TestHostileHTTPGzipBomb(t *testing.T) {
	noLeak(t)
	var z bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, _ = gz.Write(zeros)
	}
	_ = gz.Close()
	url := hostileHTTP(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(z.Bytes())
	})
	var err error
	n := alloctest.Bytes(func() { _, err = (&Client{}).Announce(context.Background(), url, Request{}) })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if n > 16<<20 {
		t.Fatalf("a %d KiB gzip bomb allocated %d MiB", z.Len()>>10, n>>20)
	}
}

func TestHostileHTTPRedirects(t *testing.T) {
	noLeak(t)
	var hits atomic.Int32
	loop := hostileHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, r.URL.String(), http.StatusFound)
	})
	_, err := (&Client{}).Announce(context.Background(), loop, Request{})
	if err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("redirect loop: err = %v", err)
	}
	if h := hits.Load(); h > httpbound.MaxRedirects+1 {
		t.Fatalf("followed %d redirects", h-1)
	}
	toFile := hostileHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	if _, err := (&Client{}).Announce(context.Background(), toFile, Request{}); err == nil {
		t.Fatal("followed a redirect to file://")
	}
}

// Slow-loris: headers that never end, a body that trickles. The announce ends at its timeout.
func TestHostileHTTPSlowLoris(t *testing.T) {
	noLeak(t)
	for name, h := range map[string]http.HandlerFunc{
		"body": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for r.Context().Err() == nil {
				if _, err := w.Write([]byte("l")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
		},
		"headers": func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		},
	} {
		t.Run(name, func(t *testing.T) {
			url := hostileHTTP(t, h)
			done := make(chan error, 1)
			go func() {
				_, err := (&Client{Timeout: 300 * time.Millisecond}).Announce(context.Background(), url, Request{})
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a slow tracker gave a reply")
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Announce did not end at its timeout")
			}
		})
	}
}

func TestHostileHTTPHugeHeaders(t *testing.T) {
	noLeak(t)
	url := hostileHTTP(t, func(w http.ResponseWriter, _ *http.Request) {
		for i := range 200 {
			w.Header().Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("a", 4000))
		}
		_, _ = w.Write([]byte("de"))
	})
	if _, err := (&Client{}).Announce(context.Background(), url, Request{}); err == nil {
		t.Fatal("800 KB of headers accepted")
	}
}

// Errors and warnings quote at most ~100 bytes of a tracker's text, with control characters
// escaped (a terminal must never receive a tracker's escape sequences).
func TestHostileHTTPTextIsQuotedShortAndSafe(t *testing.T) {
	nasty := strings.Repeat("\x1b[2J\x07evil", 1000)
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"500 page", 500, nasty},
		{"failure reason", 200, fmt.Sprintf("d14:failure reason%d:%se", len(nasty), nasty)},
		{"not bencode", 200, nasty},
	} {
		url := hostileHTTP(t, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		})
		_, err := (&Client{}).Announce(context.Background(), url, Request{})
		if err == nil || len(err.Error()) > 400 || strings.ContainsAny(err.Error(), "\x1b\x07") {
			t.Errorf("%s: err = %q", tc.name, err)
		}
	}
	body := fmt.Sprintf("d15:warning message%d:%se", len(nasty), nasty)
	res, err := (&Client{}).Announce(context.Background(), hostileHTTP(t, serveBody(body)), Request{})
	if err != nil || len(res.Warning) > 200 || strings.ContainsAny(res.Warning, "\x1b\x07") || res.Warning == "" {
		t.Errorf("warning = %q, %v", res.Warning, err)
	}
}

// The announce carries what BEP 3 asks for, binary values percent-encoded byte by byte, and keeps
// the tracker URL's own query (a passkey).
func TestHTTPAnnounceQuery(t *testing.T) {
	got := make(chan *http.Request, 1)
	url := hostileHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r
		_, _ = w.Write([]byte("d8:intervali60e5:peers0:e"))
	})
	r := Request{InfoHash: [20]byte{' ', '+', 0xff}, PeerID: [20]byte{'-', 'M', 'G'}, Port: 51413, Left: 7, Event: Started}
	if _, err := (&Client{}).Announce(context.Background(), url+"?passkey=abc", r); err != nil {
		t.Fatal(err)
	}
	req := <-got
	q := req.URL.Query()
	if q.Get("info_hash") != string(r.InfoHash[:]) || q.Get("peer_id") != string(r.PeerID[:]) || q.Get("passkey") != "abc" ||
		q.Get("port") != "51413" || q.Get("left") != "7" || q.Get("event") != "started" || q.Get("compact") != "1" {
		t.Fatalf("query %q", req.URL.RawQuery)
	}
	if strings.Contains(req.URL.RawQuery, "+") || req.UserAgent() != "magnetget" {
		t.Fatalf("query %q, user agent %q", req.URL.RawQuery, req.UserAgent())
	}
}

// --- UDP ---

// udpTracker runs script for every datagram a real UDP socket on 127.0.0.1 receives, until the
// test ends, and returns the tracker's udp:// URL.
func udpTracker(t *testing.T, script func(pc net.PacketConn, from net.Addr, req []byte)) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			script(pc, from, append([]byte(nil), buf[:n]...))
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return "udp://" + pc.LocalAddr().String() + "/announce"
}

func udpHeader(action, tid uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, action), tid)
}

func connectReply(req []byte) []byte {
	return binary.BigEndian.AppendUint64(udpHeader(actionConnect, binary.BigEndian.Uint32(req[12:])), 0xc0ffee)
}

func announceReply(req []byte, interval uint32, peers ...string) []byte {
	p := udpHeader(actionAnnounce, binary.BigEndian.Uint32(req[12:]))
	p = binary.BigEndian.AppendUint32(p, interval)
	p = binary.BigEndian.AppendUint64(p, 0)
	for _, s := range peers {
		ap := netip.MustParseAddrPort(s)
		p = append(p, ap.Addr().AsSlice()...)
		p = binary.BigEndian.AppendUint16(p, ap.Port())
	}
	return p
}

// wellBehaved answers connect and announce correctly, through send (which may misbehave).
func wellBehaved(send func(pc net.PacketConn, to net.Addr, p []byte)) func(net.PacketConn, net.Addr, []byte) {
	return func(pc net.PacketConn, from net.Addr, req []byte) {
		if len(req) < 16 {
			return
		}
		switch binary.BigEndian.Uint32(req[8:]) {
		case actionConnect:
			send(pc, from, connectReply(req))
		case actionAnnounce:
			if binary.BigEndian.Uint64(req) != 0xc0ffee {
				return
			}
			send(pc, from, announceReply(req, 1800, "127.0.0.5:5555"))
		}
	}
}

func TestHostileUDP(t *testing.T) {
	noLeak(t)
	ok := []string{"127.0.0.5:5555"}
	for _, tc := range []struct {
		name      string
		script    func(net.PacketConn, net.Addr, []byte)
		wantErr   error
		wantPeers []string
	}{
		// anacrolix's UDP client deadlocked here: the second reply blocked its reader while
		// holding the lock the first one's transaction needed to end.
		{"every reply twice", wellBehaved(func(pc net.PacketConn, to net.Addr, p []byte) {
			_, _ = pc.WriteTo(p, to)
			_, _ = pc.WriteTo(p, to)
		}), nil, ok},
		{"wrong transaction ids first", wellBehaved(func(pc net.PacketConn, to net.Addr, p []byte) {
			bad := bytes.Clone(p)
			bad[7]++
			_, _ = pc.WriteTo(bad, to)
			_, _ = pc.WriteTo(p[:5], to)
			_, _ = pc.WriteTo(p, to)
		}), nil, ok},
		{"a flood of stray datagrams", wellBehaved(func(pc net.PacketConn, to net.Addr, p []byte) {
			for i := range 200 {
				_, _ = pc.WriteTo([]byte{byte(i)}, to)
			}
		}), ErrBadReply, nil},
		{"short connect reply", func(pc net.PacketConn, from net.Addr, req []byte) {
			_, _ = pc.WriteTo(connectReply(req)[:12], from)
		}, ErrBadReply, nil},
		{"short announce reply", wellBehaved(func(pc net.PacketConn, to net.Addr, p []byte) {
			if binary.BigEndian.Uint32(p) == actionAnnounce {
				p = p[:19]
			}
			_, _ = pc.WriteTo(p, to)
		}), ErrBadReply, nil},
		{"error action", func(pc net.PacketConn, from net.Addr, req []byte) {
			msg := append(udpHeader(actionError, binary.BigEndian.Uint32(req[12:])), strings.Repeat("\x1b[31mno", 500)+"\x00"...)
			_, _ = pc.WriteTo(msg, from)
		}, ErrFailure, nil},
		{"partial peer entry and a zero port", wellBehaved(func(pc net.PacketConn, to net.Addr, p []byte) {
			if binary.BigEndian.Uint32(p) == actionAnnounce {
				p = append(p, 127, 0, 0, 6, 0, 0, 1, 2, 3)
			}
			_, _ = pc.WriteTo(p, to)
		}), nil, ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := udpTracker(t, tc.script)
			res, err := (&Client{Timeout: 5 * time.Second}).Announce(context.Background(), url, Request{})
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && (len(err.Error()) > 400 || strings.Contains(err.Error(), "\x1b")) {
				t.Fatalf("error quotes the tracker unsafely: %q", err)
			}
			var got []string
			for _, p := range res.Peers {
				got = append(got, p.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantPeers) {
				t.Fatalf("peers %v, want %v", got, tc.wantPeers)
			}
		})
	}
}

func TestHostileUDPHugeInterval(t *testing.T) {
	url := udpTracker(t, func(pc net.PacketConn, from net.Addr, req []byte) {
		if binary.BigEndian.Uint32(req[8:]) == actionConnect {
			_, _ = pc.WriteTo(connectReply(req), from)
		} else {
			_, _ = pc.WriteTo(announceReply(req, 0xffffffff), from)
		}
	})
	res, err := (&Client{}).Announce(context.Background(), url, Request{})
	if err != nil || res.Interval != MaxInterval {
		t.Fatalf("interval %v, %v; want %v", res.Interval, err, MaxInterval)
	}
}

// A silent tracker, or one that stops after connect: the announce ends at its timeout, and at
// once when ctx is cancelled.
func TestHostileUDPSilence(t *testing.T) {
	noLeak(t)
	var sent atomic.Int32
	silent := udpTracker(t, func(net.PacketConn, net.Addr, []byte) { sent.Add(1) })
	if _, err := (&Client{Timeout: 300 * time.Millisecond}).Announce(context.Background(), silent, Request{}); err == nil {
		t.Fatal("a silent tracker gave a reply")
	}
	if n := sent.Load(); n > udpMaxSends {
		t.Fatalf("%d datagrams sent to a silent tracker", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := (&Client{}).Announce(ctx, silent, Request{}); done <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled announce kept waiting")
	}
}

// Datagrams from any address but the tracker's are never read: a spoofer that knows our
// transaction id still cannot inject peers.
func TestHostileUDPSpoofedSource(t *testing.T) {
	spoofer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	url := udpTracker(t, func(pc net.PacketConn, from net.Addr, req []byte) {
		if binary.BigEndian.Uint32(req[8:]) == actionConnect {
			_, _ = spoofer.WriteTo(connectReply(req), from)
			_, _ = pc.WriteTo(connectReply(req), from)
			return
		}
		_, _ = spoofer.WriteTo(announceReply(req, 60, "10.6.6.6:666"), from)
		time.Sleep(20 * time.Millisecond)
		_, _ = pc.WriteTo(announceReply(req, 60, "127.0.0.5:5555"), from)
	})
	res, err := (&Client{}).Announce(context.Background(), url, Request{})
	if err != nil || len(res.Peers) != 1 || res.Peers[0].String() != "127.0.0.5:5555" {
		t.Fatalf("peers %v, %v", res.Peers, err)
	}
}
