package trackers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/anacrolix/torrent/bencode"

	"github.com/magnetget/magnetget/torrentfile"
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
	// The body is read through a limit: a reply that never ends costs MaxReply bytes, and the
	// deadline in ctx ends one that trickles. Go's transport decompresses gzip replies
	// transparently; the limit applies to the decompressed bytes, so a gzip bomb is cut short too.
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxReply+1))
	if err != nil {
		return Response{}, fmt.Errorf("reading reply: %w", err)
	}
	if len(body) > MaxReply {
		return Response{}, ErrTooLarge
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

// httpReply is the top-level dict of a BEP 3 reply. Every field is kept raw and decoded on its own
// with its type checked, so a field of the wrong type is ignored rather than failing (or, in
// anacrolix's tracker client, panicking over) the whole reply.
type httpReply struct {
	Failure     bencode.Bytes `bencode:"failure reason"`
	Warning     bencode.Bytes `bencode:"warning message"`
	Interval    bencode.Bytes `bencode:"interval"`
	MinInterval bencode.Bytes `bencode:"min interval"`
	Complete    bencode.Bytes `bencode:"complete"`
	Incomplete  bencode.Bytes `bencode:"incomplete"`
	Peers       bencode.Bytes `bencode:"peers"`
	Peers6      bencode.Bytes `bencode:"peers6"`
}

// dictPeer is one entry of the non-compact peer list.
type dictPeer struct {
	IP   bencode.Bytes `bencode:"ip"`
	Port bencode.Bytes `bencode:"port"`
}

// parseHTTPReply decodes a BEP 3 reply body: compact IPv4 "peers" (BEP 23) or the list of dicts,
// compact IPv6 "peers6" (BEP 7), failure reason, warning message, interval and min interval. It
// never panics, allocates a small multiple of len(b), and keeps at most MaxPeers peers. Entries
// of the wrong type and IPs that are not literals (no DNS on a tracker's say-so) are skipped.
func parseHTTPReply(b []byte) (Response, error) {
	res := Response{Seeders: -1, Leechers: -1}
	if len(b) == 0 || b[0] != 'd' {
		return res, fmt.Errorf("%w: not a bencoded dict: %s", ErrBadReply, quote(b))
	}
	var rep httpReply
	if err := torrentfile.DecodeBounded(b, &rep); err != nil {
		return res, fmt.Errorf("%w: %v: %s", ErrBadReply, err, quote(b))
	}
	if rep.Failure != nil {
		var reason []byte
		if torrentfile.DecodeBounded(rep.Failure, &reason) != nil {
			reason = rep.Failure
		}
		return res, fmt.Errorf("%w: %s", ErrFailure, quote(reason))
	}
	var w []byte
	if rep.Warning != nil && torrentfile.DecodeBounded(rep.Warning, &w) == nil {
		res.Warning = sanitize(w)
	}
	res.Interval = clampInterval(decodeInt(rep.Interval))
	res.MinInterval = clampInterval(decodeInt(rep.MinInterval))
	if n := decodeInt(rep.Complete); n >= 0 && n <= 1<<31 {
		res.Seeders = int(n)
	}
	if n := decodeInt(rep.Incomplete); n >= 0 && n <= 1<<31 {
		res.Leechers = int(n)
	}
	if len(rep.Peers) > 0 {
		if rep.Peers[0] == 'l' {
			res.Peers = dictPeers(rep.Peers)
		} else {
			var compact []byte
			if torrentfile.DecodeBounded(rep.Peers, &compact) == nil {
				res.Peers = compactPeers(res.Peers, compact, 4)
			}
		}
	}
	if len(rep.Peers6) > 0 && rep.Peers6[0] != 'l' {
		var compact []byte
		if torrentfile.DecodeBounded(rep.Peers6, &compact) == nil {
			res.Peers = compactPeers(res.Peers, compact, 16)
		}
	}
	return res, nil
}

// decodeInt decodes a raw bencoded integer; -1 when absent or not an integer.
func decodeInt(raw []byte) int64 {
	if len(raw) == 0 || raw[0] != 'i' {
		return -1
	}
	var n int64
	if torrentfile.DecodeBounded(raw, &n) != nil {
		return -1
	}
	return n
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

// dictPeers decodes the non-compact form: a list of {ip, port[, peer id]} dicts.
func dictPeers(raw []byte) []netip.AddrPort {
	var list []bencode.Bytes
	if torrentfile.DecodeBounded(raw, &list) != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, item := range list {
		if len(out) >= MaxPeers {
			break
		}
		var p dictPeer
		if len(item) == 0 || item[0] != 'd' || torrentfile.DecodeBounded(item, &p) != nil {
			continue // an integer, a string, a list: not a peer
		}
		var ipText []byte
		if len(p.IP) == 0 || p.IP[0] < '0' || p.IP[0] > '9' || torrentfile.DecodeBounded(p.IP, &ipText) != nil {
			continue
		}
		ip, err := netip.ParseAddr(string(ipText))
		if err != nil {
			continue // a host name, or garbage
		}
		port := decodeInt(p.Port)
		if port <= 0 || port > 65535 {
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
