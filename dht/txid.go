package dht

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"strconv"

	"github.com/magnetget/magnetget/internal/bencscan"
)

// Transaction ids. The library numbers its queries with one process-wide counter (a varint:
// "\x00", "\x01", ...), so anyone who sees one of our queries, or makes us send one (any query
// from a new address earns a verification ping), can predict the next ids; and it matches an
// answer by the queried address and that id alone. A sender that can forge the queried node's
// source address (off path, on any network without source filtering) could then inject nodes and
// peers into our lookups. So every query the library writes leaves with its id extended by a
// keyed MAC of the id and the address it goes to, and an answer reaches the library only when
// its id carries the right MAC for the address it came from: then the MAC is cut off again and
// the library sees its own id. Stateless: nothing to bound or expire, and a resent query carries
// the same id as the first send, so a late answer to either is accepted.

// txMACLen is the MAC's length in bytes: a blind guess succeeds once in 2^48.
const txMACLen = 6

// maxLibTxID bounds the library's own id (a uvarint of at most 10 bytes).
const maxLibTxID = 10

// txids signs and checks transaction ids with a per-node secret.
type txids struct {
	secret [32]byte
}

func newTxids() *txids {
	x := &txids{}
	_, _ = rand.Read(x.secret[:])
	return x
}

// mac is SHA-256 over the secret, the address and the library's id, truncated. A keyed prefix
// hash is enough here: only txMACLen bytes of any digest are ever revealed, so the length
// extension that makes a prefix hash a poor MAC in general has no state to extend. It allocates
// nothing, which matters on the packet path.
func (x *txids) mac(to netip.AddrPort, lib []byte) [txMACLen]byte {
	var buf [32 + 16 + 2 + maxLibTxID]byte
	n := copy(buf[:], x.secret[:])
	a := normAddrPort(to).Addr().As16()
	n += copy(buf[n:], a[:])
	buf[n], buf[n+1] = byte(to.Port()>>8), byte(to.Port())
	n += 2
	n += copy(buf[n:], lib)
	sum := sha256.Sum256(buf[:n])
	return [txMACLen]byte(sum[:txMACLen])
}

// tField finds the "t" value of the top-level dict in b: the offsets of its length prefix and
// the bounds of its content, plus the "y" value. ok is false for anything that is not a
// well-formed dict with a string "t".
func tField(b []byte) (prefix, start, end int, y []byte, ok bool) {
	if len(b) == 0 || b[0] != 'd' {
		return 0, 0, 0, nil, false
	}
	i := 1
	found := false
	for i < len(b) && b[i] != 'e' {
		ks, ke, err := bencscan.String(b, i)
		if err != nil {
			return 0, 0, 0, nil, false
		}
		ve, err := bencscan.Scan(b, ke, maxPacketDepth-1)
		if err != nil {
			return 0, 0, 0, nil, false
		}
		switch string(b[ks:ke]) {
		case "t":
			s, e, err := bencscan.String(b, ke)
			if err != nil {
				return 0, 0, 0, nil, false
			}
			prefix, start, end, found = ke, s, e, true
		case "y":
			y = b[ke:ve]
		}
		i = ve
	}
	if i >= len(b) || !found {
		return 0, 0, 0, nil, false
	}
	return prefix, start, end, y, true
}

// spliceT returns b with the "t" value (length prefix at prefix, content start:end) replaced by
// t, written into dst (which may be b's own array only when it does not grow).
func spliceT(dst, b []byte, prefix, start, end int, t []byte) []byte {
	out := append(dst[:0], b[:prefix]...)
	out = strconv.AppendInt(out, int64(len(t)), 10)
	out = append(out, ':')
	out = append(out, t...)
	return append(out, b[end:]...)
}

// outgoing returns the packet to write for b, a packet the library sends to to: a query gets
// its id extended by the MAC; anything else is returned unchanged.
func (x *txids) outgoing(b []byte, to netip.AddrPort) []byte {
	prefix, start, end, y, ok := tField(b)
	if !ok || string(y) != "1:q" || end == start || end-start > maxLibTxID {
		return b
	}
	lib := b[start:end]
	sum := x.mac(to, lib)
	t := append(append(make([]byte, 0, len(lib)+txMACLen), lib...), sum[:]...)
	return spliceT(make([]byte, 0, len(b)+txMACLen+2), b, prefix, start, end, t)
}

// incoming checks an answer (y "r" or "e") from from in b[:n] and, when its id carries the MAC
// for from, rewrites b in place to carry the library's own id and returns the new length.
// ok is false for an answer to no query of ours (forged, misdirected or malformed).
func (x *txids) incoming(b []byte, from netip.AddrPort) (int, bool) {
	prefix, start, end, _, ok := tField(b)
	if !ok || end-start <= txMACLen || end-start > maxLibTxID+txMACLen {
		return 0, false
	}
	t := b[start:end]
	lib, sum := t[:len(t)-txMACLen], t[len(t)-txMACLen:]
	if want := x.mac(from, lib); subtle.ConstantTimeCompare(sum, want[:]) != 1 {
		return 0, false
	}
	// The new packet is shorter (the id loses txMACLen bytes and its length prefix no more than
	// one digit), so it is built in place: copy the id first, since the copies overlap.
	var libCopy [maxLibTxID]byte
	k := copy(libCopy[:], lib)
	out := spliceT(b[:0:len(b)], b, prefix, start, end, libCopy[:k])
	return len(out), true
}
