package dht

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// The node answers every query itself (inbound.go hands them here; the library never sees one):
// ping, find_node, get_peers, announce_peer and sample_infohashes; BEP 44 and unknown methods
// get error 204. The library's answers pick "closest"
// nodes by walking its buckets from the target's bucket toward bucket 0 only, unsorted, which in
// small or young networks leaves lookups short of the nodes that hold the peers; it has no BEP 51;
// and its get_peers would send every stored peer. Here the closest nodes are chosen by XOR
// distance among nodes that answered us, values are bounded, and tokens are our own.

// reply is a KRPC response; the encoder sorts keys. Compact fields are strings of concatenated
// records, encoded by hand (krpc.CompactInfohashes.MarshalBinary panics).
type reply struct {
	IP string    `bencode:"ip,omitempty"` // BEP 42: the querier's address as we see it
	R  replyBody `bencode:"r"`
	T  string    `bencode:"t"`
	V  string    `bencode:"v,omitempty"` // client version: two letters and two bytes
	Y  string    `bencode:"y"`
}

// ClientVersion is the "v" of our KRPC replies ("MG" and version 0.1).
const ClientVersion = "MG\x00\x01"

// compactAddr is an address in KRPC's compact form: IP, then big-endian port
// (netip's MarshalBinary puts the port little-endian).
func compactAddr(ap netip.AddrPort) string {
	return string(binary.BigEndian.AppendUint16(ap.Addr().Unmap().AsSlice(), ap.Port()))
}

type replyBody struct {
	ID       string   `bencode:"id"`
	Interval *int64   `bencode:"interval,omitempty"`
	Nodes    string   `bencode:"nodes,omitempty"`
	Nodes6   string   `bencode:"nodes6,omitempty"`
	Num      *int64   `bencode:"num,omitempty"`
	Samples  *string  `bencode:"samples,omitempty"` // always present in BEP 51 replies, even empty
	Token    string   `bencode:"token,omitempty"`
	Values   []string `bencode:"values,omitempty"`
}

type errorReply struct {
	E []any  `bencode:"e"`
	T string `bencode:"t"`
	Y string `bencode:"y"`
}

// replyNodes is how many nodes a reply carries (BEP 5's K).
const replyNodes = 8

// tokenEpoch is how long a token stays current; the previous epoch's tokens are accepted too, so
// a token lives 10 to 20 minutes, like libtorrent's.
const tokenEpoch = 10 * time.Minute

// tokens issues and checks announce tokens: HMAC of the querier's IP, the infohash and the time
// epoch under a per-node secret, so no state is kept per querier and a token earned for one
// infohash cannot announce another.
type tokens struct {
	secret [20]byte
	now    func() time.Time
}

func newTokens() *tokens {
	t := &tokens{now: time.Now}
	_, _ = rand.Read(t.secret[:])
	return t
}

func (t *tokens) forEpoch(ip netip.Addr, ih [20]byte, epoch int64) string {
	m := hmac.New(sha1.New, t.secret[:])
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], uint64(epoch))
	m.Write(e[:])
	a := ip.Unmap().As16()
	m.Write(a[:])
	m.Write(ih[:])
	return string(m.Sum(nil)[:8])
}

func (t *tokens) issue(ip netip.Addr, ih [20]byte) string {
	return t.forEpoch(ip, ih, t.now().UnixNano()/int64(tokenEpoch))
}

func (t *tokens) valid(tok string, ip netip.Addr, ih [20]byte) bool {
	epoch := t.now().UnixNano() / int64(tokenEpoch)
	return hmac.Equal([]byte(tok), []byte(t.forEpoch(ip, ih, epoch))) ||
		hmac.Equal([]byte(tok), []byte(t.forEpoch(ip, ih, epoch-1)))
}

// handleQuery answers one decoded query (inbound.go has already budgeted it).
func (n *Node) handleQuery(m *krpc.Msg, from netip.AddrPort) {
	if m.A == nil {
		n.sendError(from, m.T, krpc.ErrorCodeProtocolError, "missing arguments dict")
		return
	}
	body := replyBody{ID: string(n.id[:])}
	switch m.Q {
	case "ping":
	case "find_node":
		n.setNodes(&body, m.A.Target, from)
	case "get_peers":
		ih := m.A.InfoHash
		n.emit(event{ih: ih, addr: from})
		body.Token = n.tokens.issue(from.Addr(), ih)
		values, nodes := n.replyShape(from)
		for _, p := range n.peers.get(ih, values) {
			if p.Addr().Is4() == n.isV6() {
				continue
			}
			body.Values = append(body.Values, compactAddr(p))
		}
		// Nodes too, whatever the values (as libtorrent does): the peers we hold may be long
		// gone, and a client whose only contact is us (aria2 with us as its entry point) can
		// walk on toward the nodes that know live ones only through these.
		n.setNodesN(&body, ih, from, nodes(len(body.Values)))
	case "announce_peer":
		if !n.tokens.valid(m.A.Token, from.Addr(), m.A.InfoHash) {
			n.sendError(from, m.T, krpc.ErrorCodeProtocolError, "bad token")
			return
		}
		port := 0
		if m.A.Port != nil {
			port = *m.A.Port
		}
		if m.A.ImpliedPort {
			port = int(from.Port())
		}
		if port <= 0 || port > 65535 {
			n.sendError(from, m.T, krpc.ErrorCodeProtocolError, "bad port")
			return
		}
		peer := netip.AddrPortFrom(from.Addr(), uint16(port))
		// A refused peer (this IP holds too many infohashes, or the store is full) still gets
		// a normal reply: the error would tell a flooder nothing it could use.
		if n.peers.add(m.A.InfoHash, peer) {
			n.emit(event{announce: true, ih: m.A.InfoHash, addr: peer})
		}
	case "sample_infohashes":
		samples, num := n.peers.sample(maxSamples)
		s := make([]byte, 0, 20*len(samples))
		for _, ih := range samples {
			s = append(s, ih[:]...)
		}
		str, interval, num64 := string(s), int64(SampleInterval/time.Second), int64(num)
		body.Samples, body.Interval, body.Num = &str, &interval, &num64
		n.setNodes(&body, m.A.Target, from)
	default:
		// BEP 44 get/put and anything newer: we store no items.
		n.sendError(from, m.T, krpc.ErrorCodeMethodUnknown, "Method Unknown")
		return
	}
	n.send(from, reply{IP: compactAddr(from), R: body, T: m.T, V: ClientVersion, Y: "r"})
}

// Reply size. A get_peers query is about 100 bytes; values are 8 bytes each on IPv4 (a 6-byte
// compact string with its "6:" prefix) and 21 on IPv6; nodes 26 and 38.
const (
	// maxReplyValues keeps a reply to a source whose address is proven (it answered one of our
	// queries), values and replyNodes nodes together, under about 1 KiB, inside any MTU:
	// libtorrent's figure of 50 for IPv4.
	maxReplyValues4, maxReplyValues6 = 50, 24
	// unverifiedValues bounds values to any other source, whose address may be spoofed, to
	// about 3x the query. Values and nodes share that budget: nodes fill what values leave.
	unverifiedValues4, unverifiedValues6 = 16, 8
	valueBytes4, valueBytes6             = 8, 21
	nodeBytes4, nodeBytes6               = 26, 38
)

// replyShape is how many peers a get_peers reply to from may carry, and how many nodes beside
// the values it found.
func (n *Node) replyShape(from netip.AddrPort) (values int, nodes func(values int) int) {
	verified := n.nodes.answered(from)
	if verified {
		if n.isV6() {
			return maxReplyValues6, func(int) int { return replyNodes }
		}
		return maxReplyValues4, func(int) int { return replyNodes }
	}
	budget, vb, nb := unverifiedValues4*valueBytes4, valueBytes4, nodeBytes4
	if n.isV6() {
		budget, vb, nb = unverifiedValues6*valueBytes6, valueBytes6, nodeBytes6
	}
	return budget / vb, func(v int) int { return min(replyNodes, (budget-v*vb)/nb) }
}

// setNodes fills the nodes (or nodes6) field with the good nodes nearest target (questionable
// ones only when good ones are too few; never bad ones: see tracker.go).
func (n *Node) setNodes(body *replyBody, target [20]byte, exclude netip.AddrPort) {
	n.setNodesN(body, target, exclude, replyNodes)
}

// setNodesN is setNodes with at most k nodes.
func (n *Node) setNodesN(body *replyBody, target [20]byte, exclude netip.AddrPort, k int) {
	if k <= 0 {
		return
	}
	v6 := n.isV6()
	ns := n.nodes.serve(target, k, func(ap netip.AddrPort) bool { return ap.Addr().Is4() != v6 && ap != exclude })
	entries := make([]nodeEntry, len(ns))
	for i, tn := range ns {
		entries[i] = nodeEntry{tn.ID, tn.Addr}
	}
	if v6 {
		body.Nodes6 = compactNodes(entries, true)
	} else {
		body.Nodes = compactNodes(entries, false)
	}
}

type nodeEntry struct {
	id   [20]byte
	addr netip.AddrPort
}

// compactNodes encodes BEP 5 / BEP 32 compact node info: id, address, port; nodes of the other
// family are skipped.
func compactNodes(ns []nodeEntry, v6 bool) string {
	b := make([]byte, 0, 38*len(ns))
	for _, ne := range ns {
		a := ne.addr.Addr().Unmap()
		if a.Is4() == v6 {
			continue
		}
		b = append(b, ne.id[:]...)
		b = append(b, a.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, ne.addr.Port())
	}
	return string(b)
}

func (n *Node) sendError(to netip.AddrPort, t string, code int, msg string) {
	n.send(to, errorReply{E: []any{code, msg}, T: t, Y: "e"})
}

// send encodes and writes one reply. Its budget was taken before the query was decoded
// (inbound.go); replies never draw on the limiter our own queries wait for.
func (n *Node) send(to netip.AddrPort, v any) {
	b, err := bencode.Marshal(v)
	if err != nil {
		n.log.Debug("dht: encoding reply", "err", err)
		return
	}
	n.repliesSent.Add(1)
	if _, err := n.conn.PacketConn.WriteTo(b, net.UDPAddrFromAddrPort(to)); err != nil {
		n.log.Debug("dht: sending reply", "to", to, "err", err)
	}
}
