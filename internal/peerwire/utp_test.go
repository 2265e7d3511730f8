package peerwire_test

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/anacrolix/torrent/mse"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/utp"
)

// utpSocket opens a uTP socket on ip (port 0: any), listening when listen is set.
func utpSocket(t *testing.T, ip string, port uint16, listen bool) *utp.Socket {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), port)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := utp.NewSocket(pc, utp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if listen {
		s.Listen()
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// servePeer accepts on ln and runs the BitTorrent handshake for testIH on each connection,
// then sends a Have so the dialler can tell the connection works end to end.
// utpWithTCP is a listening uTP socket on 127.0.0.1 and a TCP listener on the same port (a few
// tries: something else may hold the TCP twin of a free UDP port), closed at cleanup.
func utpWithTCP(t *testing.T) (*utp.Socket, net.Listener) {
	t.Helper()
	for try := 0; ; try++ {
		peer := utpSocket(t, "127.0.0.1", 0, true)
		ln, err := net.Listen("tcp", peer.LocalAddrPort().String())
		if err == nil {
			t.Cleanup(func() { ln.Close() })
			return peer, ln
		}
		if try == 20 {
			t.Fatalf("no UDP port with its TCP twin free: %v", err)
		}
	}
}

func servePeer(t *testing.T, ln net.Listener) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c, err := peerwire.Accept(testCtx(t), nc, func(ih [20]byte) bool { return ih == testIH }, peerwire.Options{PeerID: accID})
			if err != nil {
				continue
			}
			c.WriteMsg(peerwire.Message{ID: peerwire.Have, Index: 7})
			t.Cleanup(func() { c.Close() })
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

func checkHave(t *testing.T, c *peerwire.Conn, transport string) {
	t.Helper()
	if got := c.Transport(); got != transport {
		t.Errorf("connected over %s, want %s", got, transport)
	}
	m, err := c.ReadMsg()
	for err == nil && m.ID == peerwire.Extended { // the BEP 10 handshake
		m, err = c.ReadMsg()
	}
	if err != nil || m.ID != peerwire.Have || m.Index != 7 {
		t.Fatalf("ReadMsg = %+v, %v", m, err)
	}
}

// A peer that takes only uTP (nothing listens on its TCP port: refused) is reached over uTP.
func TestDialUTPOnlyPeer(t *testing.T) {
	peer := utpSocket(t, "127.0.0.1", 0, true)
	servePeer(t, peer)
	us := utpSocket(t, "127.0.0.1", 0, false)
	c, err := peerwire.Dial(testCtx(t), peer.LocalAddrPort(), testIH, peerwire.Options{PeerID: dialerID, UTP: us})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	checkHave(t, c, "utp")
	// Without a uTP dialler the same peer cannot be reached.
	if _, err := peerwire.Dial(testCtx(t), peer.LocalAddrPort(), testIH, peerwire.Options{PeerID: dialerID}); err == nil {
		t.Fatal("Dial without uTP reached a uTP-only peer")
	}
}

// A peer whose TCP port accepts and hangs up (libtorrent with incoming TCP off) is reached
// over uTP on the same port.
func TestDialUTPWhenTCPHangsUp(t *testing.T) {
	peer, ln := utpWithTCP(t)
	servePeer(t, peer)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.Close()
		}
	}()
	defer ln.Close()
	us := utpSocket(t, "127.0.0.1", 0, false)
	c, err := peerwire.Dial(testCtx(t), peer.LocalAddrPort(), testIH, peerwire.Options{PeerID: dialerID, UTP: us, EncryptedRetry: true})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	checkHave(t, c, "utp")
}

// A peer listening on both is reached over TCP: uTP only joins when TCP fails or is slow.
func TestDialPrefersTCP(t *testing.T) {
	peer, ln := utpWithTCP(t)
	servePeer(t, peer)
	servePeer(t, ln)
	us := utpSocket(t, "127.0.0.1", 0, false)
	c, err := peerwire.Dial(testCtx(t), peer.LocalAddrPort(), testIH, peerwire.Options{PeerID: dialerID, UTP: us})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	checkHave(t, c, "tcp")
}

// The encrypted retry works over uTP: a uTP-only peer that requires encryption.
func TestDialUTPEncryptedRetry(t *testing.T) {
	peer := utpSocket(t, "127.0.0.1", 0, true)
	_, conns, errc := requireEncryptionOn(t, peer, func(mse.CryptoMethod) mse.CryptoMethod { return mse.CryptoMethodRC4 })
	us := utpSocket(t, "127.0.0.1", 0, false)
	c, err := peerwire.Dial(testCtx(t), peer.LocalAddrPort(), testIH, peerwire.Options{PeerID: dialerID, UTP: us, EncryptedRetry: true})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if c.Crypto() != peerwire.CryptoMSERC4 || c.Transport() != "utp" {
		t.Fatalf("crypto %v over %s, want RC4 over utp", c.Crypto(), c.Transport())
	}
	checkRetried(t, c, peer, conns, errc)
}
