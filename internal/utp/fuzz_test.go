package utp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/alloctest"
)

// nullPacketConn is a socket that never receives and swallows what is sent: FuzzSocket feeds
// the datagrams itself.
type nullPacketConn struct{ closed chan struct{} }

func (p *nullPacketConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-p.closed
	return 0, nil, net.ErrClosed
}
func (p *nullPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (p *nullPacketConn) Close() error {
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	return nil
}
func (p *nullPacketConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:6881"))
}
func (p *nullPacketConn) SetDeadline(time.Time) error      { return nil }
func (p *nullPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (p *nullPacketConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzDatagrams splits b into datagrams, each prefixed with its 2-byte length and a byte that
// picks the sender (one of four addresses).
func fuzzDatagrams(b []byte, fn func(from netip.AddrPort, d []byte)) {
	for len(b) >= 3 {
		n := int(binary.BigEndian.Uint16(b)) % 2048
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2 + b[2]%4}), 6881)
		b = b[3:]
		n = min(n, len(b))
		fn(from, b[:n])
		b = b[n:]
	}
}

func frame(from byte, pkts ...[]byte) []byte {
	var out []byte
	for _, p := range pkts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, from)
		out = append(out, p...)
	}
	return out
}

// FuzzSocket feeds arbitrary datagrams from a few addresses to a listening Socket (with one
// outgoing connection too) and checks that nothing panics, the bounds hold, the allocation
// stays proportional to the input, and Close leaves no goroutine.
func FuzzSocket(f *testing.F) {
	syn := appendPacket(nil, &header{typ: stSyn, connID: 10, seq: 1, wnd: 1 << 20}, nil)
	data := appendPacket(nil, &header{typ: stData, connID: 11, seq: 2, ack: 0, wnd: 1 << 20}, []byte("hello"))
	ooo := appendPacket(nil, &header{typ: stData, connID: 11, seq: 5, wnd: 1 << 20}, []byte("later"))
	fin := appendPacket(nil, &header{typ: stFin, connID: 11, seq: 3, wnd: 1 << 20}, nil)
	sack := appendPacket(nil, &header{typ: stState, connID: 11, seq: 9, ack: 1, wnd: 1 << 20, sack: []byte{0xff, 0xff, 0xff, 0xff}}, nil)
	reset := appendPacket(nil, &header{typ: stReset, connID: 11}, nil)
	f.Add(frame(0, syn, data, ooo, fin))
	f.Add(frame(0, syn, sack, data, reset, data))
	f.Add(frame(1, syn, syn, []byte("d1:y1:qe")))
	f.Add(frame(2, data))
	f.Fuzz(func(t *testing.T, in []byte) {
		pc := &nullPacketConn{closed: make(chan struct{})}
		s, err := NewSocket(pc, Config{MaxConns: 8, MaxPending: 4, RecvWindow: 16 << 10, MaxBuffered: 32 << 10, PacketQueue: 8})
		if err != nil {
			t.Fatal(err)
		}
		s.Listen()
		// An outgoing connection in SYN-SENT whose id the input may hit.
		s.mu.Lock()
		out := newConn(s, netip.MustParseAddrPort("127.0.0.2:6881"), 11, 12)
		out.state, out.accepted = stateSynSent, true
		s.conns[out.key()] = out
		s.mu.Unlock()
		now := time.Now()
		alloc := alloctest.Bytes(func() {
			fuzzDatagrams(in, func(from netip.AddrPort, d []byte) {
				if looksUTP(d) {
					s.handlePacket(d, from, now)
				} else {
					s.queueOther(d, net.UDPAddrFromAddrPort(from))
				}
				now = now.Add(time.Millisecond)
			})
		})
		conns, pending := s.numConns()
		if conns > 8 || pending > 4 || s.buffered.Load() > 32<<10 || len(s.other) > 8 {
			t.Fatalf("bounds: %d conns, %d pending, %d buffered, %d queued", conns, pending, s.buffered.Load(), len(s.other))
		}
		// Each connection costs a few KiB once; beyond that, about the bytes received.
		if limit := uint64(64<<10 + 8*len(in)); alloc > limit {
			t.Fatalf("allocated %d bytes for %d input bytes (limit %d)", alloc, len(in), limit)
		}
		s.Close()
	})
}
