// Package trackers announces to HTTP (BEP 3, BEP 23 compact peers, BEP 7 peers6) and UDP (BEP 15)
// trackers, a second source of peers beside the DHT.
//
// Vocabulary: an announce is one request and its reply; a session (Session) is the life of one
// torrent at its trackers: one "started", periodic announces without an event at the tracker's
// interval, one "completed" when a download finishes, one "stopped" at the end.
//
// Trackers are hostile input like any peer. Both wire protocols are implemented here rather than by
// anacrolix/torrent's tracker package, whose HTTP client read replies whole (a reply that never ends
// grew to gigabytes) and whose reply decoder panicked the process on a peer entry of the wrong type,
// and whose UDP client could deadlock on a duplicated reply. Every announce here is bounded: one
// context deadline (Client.Timeout) covers resolving, dialling, redirects (at most httpbound.MaxRedirects),
// headers (at most 64 KiB) and the body (at most MaxReply bytes after decompression); replies are
// decoded with string lengths capped at the reply's length and at most MaxPeers peers are kept; no
// error quotes more than ~100 sanitized bytes of what a tracker sent.
package trackers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/magnetget/magnetget/internal/httpbound"
)

var (
	// ErrUnsupported is returned for tracker URLs whose scheme is neither http(s) nor udp.
	ErrUnsupported = errors.New("unsupported tracker scheme")
	// ErrTooLarge: an HTTP tracker's reply exceeded MaxReply bytes.
	ErrTooLarge = errors.New("tracker reply larger than 1 MiB")
	// ErrBadReply: a reply that is not a valid tracker reply.
	ErrBadReply = errors.New("bad tracker reply")
	// ErrFailure: the tracker answered with a failure reason (HTTP) or an error action (UDP).
	ErrFailure = errors.New("tracker failure")
)

// Bounds on what one announce may cost.
const (
	// MaxReply bounds an HTTP reply body, after decompression. Real replies are a few KiB.
	MaxReply = 1 << 20
	// MaxPeers bounds the peers taken from one reply; the rest are dropped.
	MaxPeers = 2000
	// MaxInterval bounds the interval and min interval a reply may ask for.
	MaxInterval = 24 * time.Hour
	// Timeout bounds one announce when Client.Timeout is zero.
	Timeout = 15 * time.Second

	maxQuote = 100 // bytes of a tracker's text quoted in an error or log line
)

// Event is the announce event. The values are BEP 15's.
type Event int32

const (
	None      Event = 0
	Completed Event = 1
	Started   Event = 2
	Stopped   Event = 3
)

func (e Event) String() string {
	switch e {
	case Completed:
		return "completed"
	case Started:
		return "started"
	case Stopped:
		return "stopped"
	}
	return ""
}

// Request is what we tell a tracker about ourselves.
type Request struct {
	InfoHash, PeerID           [20]byte
	Port                       uint16
	Uploaded, Downloaded, Left int64
	Event                      Event
	NumWant                    int // 0: 200
}

// Response is a tracker's reply to one announce.
type Response struct {
	Peers       []netip.AddrPort // at most MaxPeers, IPv4 ones unmapped
	Interval    time.Duration    // 0 when the tracker gave none; at most MaxInterval
	MinInterval time.Duration    // likewise
	Warning     string           // the tracker's warning message, sanitized and shortened
	Seeders     int              // -1 when unknown
	Leechers    int              // -1 when unknown
}

// Client announces. The zero value works; it must not be copied after first use.
type Client struct {
	// LocalAddr is the address announces leave from: HTTP connections and UDP sockets are bound to
	// it (port chosen by the system), so a tracker that records the source address lists the one
	// we listen on. The zero value or an unspecified address (0.0.0.0, ::) lets the system choose.
	// Trackers of the other IP family are then unreachable.
	LocalAddr netip.Addr
	// Timeout bounds one announce (resolve, dial, redirects, reply). 0: Timeout (15 s).
	Timeout time.Duration
	// UserAgent sent to HTTP trackers. "": "magnetget".
	UserAgent string
	// Logger for sessions; nil discards.
	Logger *slog.Logger
	// OnAnnounce, when set, is called after every announce with its outcome (for status lines:
	// which trackers answered), outside any lock of this package.
	OnAnnounce func(url string, r Request, res Response, err error)

	once sync.Once
	hc   *http.Client
}

var defaultClient Client

// Announce makes one announce with a default Client and returns the peers and the interval the
// tracker asks for.
func Announce(ctx context.Context, url string, r Request) ([]netip.AddrPort, time.Duration, error) {
	res, err := defaultClient.Announce(ctx, url, r)
	return res.Peers, res.Interval, err
}

// Announce makes one announce to the tracker at rawURL (http, https or udp), bounded by
// c.Timeout. Errors name the tracker; a cancelled ctx gives ctx.Err().
func (c *Client) Announce(ctx context.Context, rawURL string, r Request) (res Response, err error) {
	if c.OnAnnounce != nil {
		defer func() { c.OnAnnounce(rawURL, r, res, err) }() // registered first: runs after the recover below
	}
	// Last line of defence: the decoders below are written not to panic on any input, and the
	// fuzz tests hold them to it; a bug there must still not take the process down.
	defer func() {
		if p := recover(); p != nil {
			res, err = Response{}, fmt.Errorf("tracker %s: %w: internal error: %v", showURL(rawURL), ErrBadReply, p)
		}
	}()
	u, err := url.Parse(rawURL)
	if err != nil {
		return Response{}, fmt.Errorf("tracker %s: %w", showURL(rawURL), ErrUnsupported)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = Timeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch u.Scheme {
	case "http", "https":
		res, err = c.announceHTTP(actx, u, r)
	case "udp":
		res, err = c.announceUDP(actx, u, r)
	default:
		return Response{}, fmt.Errorf("tracker %s: %w", showURL(rawURL), ErrUnsupported)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Response{}, ctx.Err()
		}
		if actx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (no reply within %v)", err, timeout)
		}
		return Response{}, fmt.Errorf("tracker %s: %w", showURL(rawURL), err)
	}
	return res, nil
}

// local returns the address to bind to, or the zero Addr for none.
func (c *Client) local() netip.Addr {
	if !c.LocalAddr.IsValid() || c.LocalAddr.IsUnspecified() {
		return netip.Addr{}
	}
	return c.LocalAddr.Unmap()
}

func (c *Client) userAgent() string {
	if c.UserAgent == "" {
		return "magnetget"
	}
	return c.UserAgent
}

func (c *Client) httpClient() *http.Client {
	c.once.Do(func() {
		d := &net.Dialer{Timeout: 10 * time.Second}
		if l := c.local(); l.IsValid() {
			// The dialer then only tries the tracker's addresses of l's family.
			d.LocalAddr = &net.TCPAddr{IP: l.AsSlice(), Zone: l.Zone()}
		}
		tr := &http.Transport{
			// No proxy: the tracker must see the address we listen on.
			Proxy:                  nil,
			DialContext:            d.DialContext,
			TLSHandshakeTimeout:    10 * time.Second,
			MaxResponseHeaderBytes: httpbound.MaxHeaderBytes,
			// An announce per tracker every minute or more: keeping connections gains nothing
			// and would leave idle-connection goroutines behind every announce.
			DisableKeepAlives: true,
		}
		c.hc = &http.Client{Transport: tr, CheckRedirect: httpbound.CheckRedirect}
	})
	return c.hc
}

// quote renders up to maxQuote bytes of untrusted text for an error or a log line: control
// characters and invalid UTF-8 escaped, an ellipsis when cut.
func quote(b []byte) string {
	cut := len(b) > maxQuote
	if cut {
		b = b[:maxQuote]
		// Do not split a UTF-8 sequence.
		for i := 0; i < 3 && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	s := strconv.Quote(string(b))
	if cut {
		s += "..."
	}
	return s
}

// sanitize is quote without the quotes, for text shown as such (a warning message).
func sanitize(b []byte) string {
	s := quote(b)
	if strings.HasSuffix(s, "...") {
		return s[1:len(s)-4] + "..."
	}
	return s[1 : len(s)-1]
}

// showURL renders a tracker URL (from a magnet: untrusted) for errors and logs.
func showURL(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			return strconv.Quote(s)
		}
	}
	return s
}

func clampInterval(secs int64) time.Duration {
	if secs <= 0 {
		return 0
	}
	if secs > int64(MaxInterval/time.Second) {
		return MaxInterval
	}
	return time.Duration(secs) * time.Second
}
