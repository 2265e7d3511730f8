package trackers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/magnetget/magnetget/internal/bencscan"
	"github.com/magnetget/magnetget/internal/httpbound"
)

// announceHTTP does one BEP 3 announce. ctx carries the announce's deadline.
func (c *Client) announceHTTP(ctx context.Context, u *url.URL, r Request) (Response, error) {
	au := *u
	au.RawQuery = announceQuery(u.RawQuery, r)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, au.String(), nil)
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("User-Agent", c.userAgent())
	resp, err := c.httpClient().Do(req)
	if err != nil {
		// *url.Error repeats the whole announce URL (info_hash, peer_id...): keep its cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Response{}, err
	}
	defer resp.Body.Close()
	// A reply that never ends costs MaxReply bytes (decompressed: a gzip bomb is cut short too),
	// and the deadline in ctx ends one that trickles.
	body, err := httpbound.ReadBody(resp, MaxReply, ErrTooLarge)
	if err != nil {
		return Response{}, err
	}
	if resp.StatusCode != http.StatusOK {
		// Some trackers send their failure reason with a 4xx status.
		if res, err := parseHTTPReply(body); errors.Is(err, ErrFailure) {
			return res, err
		}
		return Response{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, quote(body))
	}
	return parseHTTPReply(body)
}

// announceQuery appends the announce parameters to the tracker URL's own query (which may hold a
// passkey). Binary values are percent-encoded byte by byte, as BEP 3 asks; url.Values would turn
// a space into '+', which some trackers read literally.
func announceQuery(base string, r Request) string {
	var b strings.Builder
	b.WriteString(base)
	if base != "" && !strings.HasSuffix(base, "&") {
		b.WriteByte('&')
	}
	b.WriteString("info_hash=")
	escapeBytes(&b, r.InfoHash[:])
	b.WriteString("&peer_id=")
	escapeBytes(&b, r.PeerID[:])
	numWant := r.NumWant
	if numWant <= 0 {
		numWant = 200
	}
	fmt.Fprintf(&b, "&port=%d&uploaded=%d&downloaded=%d&left=%d&compact=1&no_peer_id=1&numwant=%d&key=%08x",
		r.Port, max(r.Uploaded, 0), max(r.Downloaded, 0), max(r.Left, 0), numWant, key(r.PeerID))
	if ev := r.Event.String(); ev != "" {
		b.WriteString("&event=" + ev)
	}
	return b.String()
}

// key is BEP 3's "key": stable for one peer id, so a tracker can tell us apart when our IP
// changes, and not the peer id itself.
func key(peerID [20]byte) uint32 { return binary.BigEndian.Uint32(peerID[16:]) }

func escapeBytes(b *strings.Builder, p []byte) {
	const hex = "0123456789ABCDEF"
	for _, c := range p {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
}

// maxReplyKeys bounds the keys of a reply's dict, and maxPeerKeys those of a peer's dict, that
// are looked at: real ones have a handful.
const (
	maxReplyKeys = 64
	maxPeerKeys  = 8
)

// parseHTTPReply decodes a BEP 3 reply body: compact IPv4 "peers" (BEP 23) or the list of dicts,
// compact IPv6 "peers6" (BEP 7), failure reason, warning message, interval and min interval.
//
// It never panics and allocates a small multiple of len(b) at most: the body is checked once by a
// scan that allocates nothing (nesting depth, string lengths within the body), then read in place
// through sub-slices, each field's type checked on its own, so that a field of the wrong type is
// ignored rather than failing (or, in anacrolix's tracker client, panicking over) the whole reply.
// At most MaxPeers peer entries are looked at. Entries of the wrong shape and IPs that are not
// literals (no DNS on a tracker's say-so) are skipped.
func parseHTTPReply(b []byte) (Response, error) {
	res := Response{Seeders: -1, Leechers: -1}
	if len(b) == 0 || b[0] != 'd' {
		return res, fmt.Errorf("%w: not a bencoded dict: %s", ErrBadReply, quote(b))
	}
	if err := bencscan.Check(b); err != nil {
		return res, fmt.Errorf("%w: %v: %s", ErrBadReply, err, quote(b))
	}
	kv, err := bencscan.Items(b, 2*maxReplyKeys)
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	var peers, peers6 []byte
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := bencscan.Str(kv[i])
		v := kv[i+1]
		switch string(k) {
		case "failure reason":
			reason, ok := bencscan.Str(v)
			if !ok {
				reason = v
			}
			return Response{}, fmt.Errorf("%w: %s", ErrFailure, quote(reason))
		case "warning message":
			if w, ok := bencscan.Str(v); ok {
				res.Warning = sanitize(w)
			}
		case "interval":
			res.Interval = clampInterval(intOr(v, -1))
		case "min interval":
			res.MinInterval = clampInterval(intOr(v, -1))
		case "complete":
			if n := intOr(v, -1); n >= 0 && n <= 1<<31 {
				res.Seeders = int(n)
			}
		case "incomplete":
			if n := intOr(v, -1); n >= 0 && n <= 1<<31 {
				res.Leechers = int(n)
			}
		case "peers":
			peers = v
		case "peers6":
			peers6 = v
		}
	}
	if len(peers) > 0 && peers[0] == 'l' {
		res.Peers = dictPeers(peers)
	} else if compact, ok := bencscan.Str(peers); ok {
		res.Peers = compactPeers(nil, compact, 4)
	}
	if compact, ok := bencscan.Str(peers6); ok {
		res.Peers = compactPeers(res.Peers, compact, 16)
	}
	return res, nil
}

// intOr decodes a bencoded integer, or returns def for anything else.
func intOr(raw []byte, def int64) int64 {
	if n, ok := bencscan.Int(raw); ok {
		return n
	}
	return def
}

// compactPeers appends the peers of a compact list (ipLen 4 or 16, then a 2-byte port) to out, up
// to MaxPeers in all. A trailing partial entry is ignored.
func compactPeers(out []netip.AddrPort, b []byte, ipLen int) []netip.AddrPort {
	n := len(b) / (ipLen + 2)
	if room := MaxPeers - len(out); n > room {
		n = room
	}
	if n <= 0 {
		return out
	}
	out = append(make([]netip.AddrPort, 0, len(out)+n), out...)
	for i := range n {
		e := b[i*(ipLen+2):]
		ip, _ := netip.AddrFromSlice(e[:ipLen])
		if ap := netip.AddrPortFrom(ip.Unmap(), binary.BigEndian.Uint16(e[ipLen:])); usable(ap) {
			out = append(out, ap)
		}
	}
	return out
}

// dictPeers decodes the non-compact form: a list of {ip, port[, peer id]} dicts. At most
// MaxPeers entries are examined, good or not: a list of a million empty dicts costs no more than
// one of MaxPeers.
func dictPeers(raw []byte) []netip.AddrPort {
	list, _ := bencscan.Items(raw, MaxPeers)
	var out []netip.AddrPort
	for _, item := range list {
		if item[0] != 'd' {
			continue // an integer, a string, a list: not a peer
		}
		kv, _ := bencscan.Items(item, 2*maxPeerKeys)
		var ip netip.Addr
		var port int64
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := bencscan.Str(kv[i])
			switch string(k) {
			case "ip":
				if text, ok := bencscan.Str(kv[i+1]); ok && len(text) <= 64 {
					ip, _ = netip.ParseAddr(string(text)) // a host name or garbage: invalid
				}
			case "port":
				port = intOr(kv[i+1], 0)
			}
		}
		if !ip.IsValid() || port <= 0 || port > 65535 {
			continue
		}
		if ap := netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port)); usable(ap) {
			out = append(out, ap)
		}
	}
	return out
}

// usable rejects addresses no peer can have.
func usable(ap netip.AddrPort) bool {
	ip := ap.Addr()
	return ap.Port() != 0 && ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast()
}
