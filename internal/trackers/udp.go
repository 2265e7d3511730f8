package trackers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"time"
)

// BEP 15 constants and our bounds on one UDP announce.
const (
	udpProtocolID  = 0x41727101980
	actionConnect  = 0
	actionAnnounce = 1
	actionError    = 3

	// The retransmit schedule: BEP 15's 15 s * 2^n would allow one try inside Timeout; a shorter
	// first wait, doubling, with at most udpMaxSends packets per exchange, all inside the
	// announce's deadline.
	udpFirstRTO = 2 * time.Second
	udpMaxSends = 4
	// udpMaxBad bounds the packets that are not our reply (wrong transaction, wrong action, too
	// short) one exchange reads before giving up.
	udpMaxBad = 64
	// udpBufSize bounds a reply: 200 IPv6 peers take 3,620 bytes. Longer datagrams are cut by the
	// kernel; the peers that fit are used.
	udpBufSize = 8192
	// maxURLData bounds the BEP 41 request string we send.
	maxURLData = 1024
)

// announceUDP does one BEP 15 exchange: connect, then announce, on a connected socket, so the
// kernel drops datagrams from any address but the tracker's. A fresh connection id is obtained
// for every announce (they come a minute or more apart, BEP 15 ids live one minute).
func (c *Client) announceUDP(ctx context.Context, u *url.URL, r Request) (Response, error) {
	local := c.local()
	addr, err := resolveUDP(ctx, u.Host, local)
	if err != nil {
		return Response{}, err
	}
	var d net.Dialer
	if local.IsValid() {
		d.LocalAddr = &net.UDPAddr{IP: local.AsSlice(), Zone: local.Zone()}
	}
	nc, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return Response{}, err
	}
	defer nc.Close()
	// Cancellation unblocks a read at once.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, udpBufSize)
	tid := rand.Uint32()
	reply, err := udpExchange(ctx, nc, connectPacket(tid), actionConnect, tid, buf)
	if err != nil {
		return Response{}, fmt.Errorf("connect: %w", err)
	}
	connID, err := parseConnectReply(reply)
	if err != nil {
		return Response{}, err
	}
	tid = rand.Uint32()
	reply, err = udpExchange(ctx, nc, announcePacket(connID, tid, r, urlData(u)), actionAnnounce, tid, buf)
	if err != nil {
		return Response{}, fmt.Errorf("announce: %w", err)
	}
	return parseUDPAnnounce(reply, addr.Addr().Is6())
}

// resolveUDP picks the tracker's address: an IP literal, or the first address its name resolves
// to of local's family (any family when local is zero).
func resolveUDP(ctx context.Context, hostport string, local netip.Addr) (netip.AddrPort, error) {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: bad port %s", ErrUnsupported, quote([]byte(portText)))
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return netip.AddrPort{}, err
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		if !local.IsValid() || local.Is4() == ip.Is4() {
			return netip.AddrPortFrom(ip, uint16(port)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no address of %v's family", local)
}

func connectPacket(tid uint32) []byte {
	p := binary.BigEndian.AppendUint64(nil, udpProtocolID)
	p = binary.BigEndian.AppendUint32(p, actionConnect)
	return binary.BigEndian.AppendUint32(p, tid)
}

func announcePacket(connID uint64, tid uint32, r Request, urlData []byte) []byte {
	p := make([]byte, 0, 98+len(urlData)+len(urlData)/255*2+2)
	p = binary.BigEndian.AppendUint64(p, connID)
	p = binary.BigEndian.AppendUint32(p, actionAnnounce)
	p = binary.BigEndian.AppendUint32(p, tid)
	p = append(p, r.InfoHash[:]...)
	p = append(p, r.PeerID[:]...)
	p = binary.BigEndian.AppendUint64(p, uint64(max(r.Downloaded, 0)))
	p = binary.BigEndian.AppendUint64(p, uint64(max(r.Left, 0)))
	p = binary.BigEndian.AppendUint64(p, uint64(max(r.Uploaded, 0)))
	p = binary.BigEndian.AppendUint32(p, uint32(r.Event))
	p = binary.BigEndian.AppendUint32(p, 0) // IP: the packet's source
	p = binary.BigEndian.AppendUint32(p, key(r.PeerID))
	numWant := r.NumWant
	if numWant <= 0 {
		numWant = 200
	}
	p = binary.BigEndian.AppendUint32(p, uint32(numWant))
	p = binary.BigEndian.AppendUint16(p, r.Port)
	// BEP 41: the URL's path and query (a passkey may live there), in chunks of at most 255.
	for rest := urlData; len(rest) > 0; {
		n := min(len(rest), 255)
		p = append(p, 0x2, byte(n))
		p = append(p, rest[:n]...)
		rest = rest[n:]
	}
	return p
}

// urlData is the BEP 41 request string: path and query, nothing when absent or too long.
func urlData(u *url.URL) []byte {
	s := u.EscapedPath()
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	if len(s) > maxURLData {
		return nil
	}
	return []byte(s)
}

// udpExchange sends req and waits for the reply with the transaction id tid, resending on the
// schedule above. Datagrams that are not that reply are skipped, at most udpMaxBad of them. The
// reply is a slice of buf.
func udpExchange(ctx context.Context, nc net.Conn, req []byte, action, tid uint32, buf []byte) ([]byte, error) {
	rto, bad := udpFirstRTO, 0
	for sends := 0; sends < udpMaxSends; sends++ {
		if _, err := nc.Write(req); err != nil {
			return nil, ctxOr(ctx, err)
		}
		deadline := time.Now().Add(rto)
		rto *= 2
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if err := nc.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		// Checked after setting the deadline: a cancellation from now on moves it to the past.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for {
			n, err := nc.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
					break // resend
				}
				return nil, ctxOr(ctx, err)
			}
			p := buf[:n]
			if n >= 8 && binary.BigEndian.Uint32(p[4:]) == tid {
				switch binary.BigEndian.Uint32(p) {
				case action:
					return p, nil
				case actionError:
					return nil, fmt.Errorf("%w: %s", ErrFailure, quote(bytes.TrimRight(p[8:], "\x00")))
				}
			}
			if bad++; bad > udpMaxBad {
				return nil, fmt.Errorf("%w: more than %d stray datagrams", ErrBadReply, udpMaxBad)
			}
		}
	}
	return nil, fmt.Errorf("no reply to %d datagrams", udpMaxSends)
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// parseConnectReply returns the connection id of a connect reply (action and transaction id
// already checked).
func parseConnectReply(p []byte) (uint64, error) {
	if len(p) < 16 {
		return 0, fmt.Errorf("%w: connect reply of %d bytes", ErrBadReply, len(p))
	}
	return binary.BigEndian.Uint64(p[8:]), nil
}

// parseUDPAnnounce decodes an announce reply (action and transaction id already checked): 20
// bytes of header, then compact peers of 6 bytes (18 when the tracker was reached over IPv6).
func parseUDPAnnounce(p []byte, v6 bool) (Response, error) {
	if len(p) < 20 {
		return Response{}, fmt.Errorf("%w: announce reply of %d bytes", ErrBadReply, len(p))
	}
	res := Response{
		Interval: clampInterval(int64(binary.BigEndian.Uint32(p[8:]))),
		Leechers: int(min(binary.BigEndian.Uint32(p[12:]), 1<<31)),
		Seeders:  int(min(binary.BigEndian.Uint32(p[16:]), 1<<31)),
	}
	ipLen := 4
	if v6 {
		ipLen = 16
	}
	res.Peers = compactPeers(nil, p[20:], ipLen)
	return res, nil
}
