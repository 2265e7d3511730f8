package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/utp"
	"github.com/magnetget/magnetget/torrentfile"
)

// TestSeedTakesUTPOnAdvertisedPort: peers reach us over uTP at the port we advertise (the TCP
// listener's, in x.pe, tracker announces and the DHT). When the wanted port is taken on UDP or
// on TCP, or is 0, the TCP listener and the DHT/uTP socket still end up on one port number,
// named in one warning. Before, each fell back to its own random port: the x.pe port had no
// uTP socket behind it and incoming uTP never arrived.
func TestSeedTakesUTPOnAdvertisedPort(t *testing.T) {
	src := t.TempDir()
	mi, _ := payload(t, src, "port.bin", 64<<10, torrentfile.Options{})
	tf := writeTorrentFile(t, mi, "port.torrent")
	ih := mi.HashInfoBytes()
	for i, tc := range []string{"udp-taken", "tcp-taken", "port-0"} {
		t.Run(tc, func(t *testing.T) {
			ip := fmt.Sprintf("127.0.240.%d", 1+i)
			var port uint16
			switch tc {
			case "udp-taken":
				pc, err := net.ListenPacket("udp4", ip+":0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				port = uint16(pc.LocalAddr().(*net.UDPAddr).Port)
			case "tcp-taken":
				ln, err := net.Listen("tcp4", ip+":0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				port = uint16(ln.Addr().(*net.TCPAddr).Port)
			}
			p := startIn(t, args("seed", "--torrent", tf, src, "--print-peer", "--bootstrap-file", "/dev/null",
				"--data-dir", t.TempDir(), "--listen", fmt.Sprintf("/ip4/%s/udp/%d", ip, port))...)
			u, err := url.Parse(magnetLine(t, p))
			if err != nil {
				t.Fatal(err)
			}
			pe, err := netip.ParseAddrPort(u.Query().Get("x.pe"))
			if err != nil {
				t.Fatalf("x.pe of %s: %v", u, err)
			}
			if port != 0 && pe.Port() == port {
				t.Fatalf("x.pe %v names the port whose UDP or TCP side another program holds", pe)
			}
			warned := strings.Count(p.stderr.String(), "is taken")
			if want := map[bool]int{true: 1, false: 0}[port != 0]; warned != want {
				t.Errorf("%d warnings of a taken port, want %d:\n%s", warned, want, p.stderr.String())
			}
			handshakeOverUTP(t, pe, ih)
		})
	}
}

// handshakeOverUTP dials addr over uTP and exchanges BitTorrent handshakes for ih.
func handshakeOverUTP(t *testing.T, addr netip.AddrPort, ih [20]byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.240.99:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := utp.NewSocket(pc, utp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := s.DialContext(ctx, addr)
	if err != nil {
		t.Fatalf("uTP dial of the advertised %v: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: ih, PeerID: peerwire.NewPeerID()})); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, peerwire.HandshakeLen)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("no handshake back over uTP from %v: %v", addr, err)
	}
	h, err := peerwire.ParseHandshake(buf)
	if err != nil || h.InfoHash != ih {
		t.Fatalf("handshake back: %+v, %v", h, err)
	}
}
