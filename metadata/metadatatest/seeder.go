// Package metadatatest runs in-process BitTorrent peers on loopback that serve an info dict with
// BEP 9, for tests of metadata fetching (and of code that continues on the same connections). A
// Behavior makes a peer misbehave in one chosen way. Only tests import this package.
package metadatatest

import (
	"context"
	"crypto/sha1"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
)

// Behavior selects how a Seeder deviates from an honest BEP 9 peer. The zero value is honest.
type Behavior struct {
	// InfoHash, when non-zero, is the infohash the seeder answers for instead of SHA-1(info):
	// e.g. the truncated v2 (SHA-256) infohash of a hybrid torrent.
	InfoHash [20]byte
	// WrongBytes serves a copy of the same size with one byte changed (fails the hash).
	WrongBytes bool
	// MetadataSize, when non-zero, is announced instead of the real size, and a copy of that
	// size (the real bytes, truncated or zero-padded) is served consistently with it.
	MetadataSize int
	// NoExtension clears the BEP 10 reserved bit; NoMetadata announces no ut_metadata.
	NoExtension, NoMetadata bool
	// Silent reads requests and never answers them.
	Silent bool
	// RejectAll rejects every request.
	RejectAll bool
	// Raw bytes written right after a BEP 3 handshake that sets the extension bit, in place of
	// the extended handshake (garbage, a 4 GiB length prefix, ...); the peer then reads and
	// discards until the connection closes.
	Raw []byte
	// Before is sent after the handshakes and before anything else (a bitfield, have messages):
	// what a fetcher must hand on to the swarm.
	Before []peerwire.Message
}

// Raw byte sequences for Behavior.Raw.
var (
	// Huge4GiBPrefix is a message length prefix of 4 GiB - 1 followed by a few bytes.
	Huge4GiBPrefix = []byte{0xff, 0xff, 0xff, 0xff, 20, 0, 'd'}
	// Garbage is text that is not peer wire framing ("HTTP" as a length prefix is about 1.2 GB).
	Garbage = []byte("HTTP/1.1 400 Bad Request\r\n\r\nthis is not bittorrent")
)

// Seeder is one serving peer on loopback.
type Seeder struct {
	Addr     netip.AddrPort
	InfoHash [20]byte

	ln       net.Listener
	info     []byte
	b        Behavior
	wg       sync.WaitGroup
	mu       sync.Mutex // guards conns and closed
	conns    map[net.Conn]struct{}
	closed   bool
	accepted atomic.Int64
	served   atomic.Int64
	requests atomic.Int64
}

// Accepted is how many connections completed the handshake.
func (s *Seeder) Accepted() int { return int(s.accepted.Load()) }

// Requests is how many ut_metadata messages arrived (answered or not).
func (s *Seeder) Requests() int { return int(s.requests.Load()) }

// Served is how many data messages were sent.
func (s *Seeder) Served() int { return int(s.served.Load()) }

// NewSeeder starts a peer on 127.0.0.1:0 serving info (its infohash is SHA-1 of info) with
// behaviour b. t.Cleanup stops it and waits for its goroutines.
func NewSeeder(t testing.TB, info []byte, b Behavior) *Seeder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Seeder{
		Addr:     ln.Addr().(*net.TCPAddr).AddrPort(),
		InfoHash: sha1.Sum(info),
		ln:       ln,
		info:     info,
		b:        b,
		conns:    map[net.Conn]struct{}{},
	}
	if b.InfoHash != ([20]byte{}) {
		s.InfoHash = b.InfoHash
	}
	if b.WrongBytes {
		s.info = append([]byte(nil), info...)
		s.info[len(s.info)/2] ^= 0xff
	}
	if b.MetadataSize > 0 {
		s.info = make([]byte, b.MetadataSize)
		copy(s.info, info)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

// Seeders starts n honest seeders of info.
func Seeders(t testing.TB, info []byte, n int) []*Seeder {
	ss := make([]*Seeder, n)
	for i := range ss {
		ss[i] = NewSeeder(t, info, Behavior{})
	}
	return ss
}

// Close stops accepting, closes every connection and waits for the seeder's goroutines.
func (s *Seeder) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Seeder) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				nc.Close()
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
			}()
			s.serve(nc)
		}()
	}
}

func (s *Seeder) serve(nc net.Conn) {
	ext := metadata.LocalExtHandshake(len(s.info))
	if s.b.NoMetadata {
		ext = peerwire.ExtHandshake{M: map[string]int{}, V: "metadatatest"}
	}
	o := peerwire.Options{ExtHandshake: ext, Timeout: 10 * time.Second}
	if s.b.NoExtension || len(s.b.Raw) > 0 {
		// Hand-written handshake: peerwire always sets the BEP 10 bit and sends its extended
		// handshake right after.
		var buf [peerwire.HandshakeLen]byte
		if _, err := readFull(nc, buf[:]); err != nil {
			return
		}
		h, err := peerwire.ParseHandshake(buf[:])
		if err != nil || h.InfoHash != s.InfoHash {
			return
		}
		out := peerwire.Handshake{InfoHash: s.InfoHash, PeerID: [20]byte{'x'}}
		if !s.b.NoExtension {
			out.Reserved[5] |= 0x10 // BEP 10
		}
		nc.Write(peerwire.AppendHandshake(nil, out))
		nc.Write(s.b.Raw)
		s.accepted.Add(1)
		discard(nc)
		return
	}
	c, err := peerwire.Accept(context.Background(), nc, func(ih [20]byte) bool { return ih == s.InfoHash }, o)
	if err != nil {
		return
	}
	s.accepted.Add(1)
	if len(s.b.Before) > 0 {
		if err := c.WriteMsgs(s.b.Before...); err != nil {
			return
		}
	}
	for {
		m, err := c.ReadMsg()
		if err != nil {
			return
		}
		if m.ID != peerwire.Extended || m.ExtID == 0 || int(m.ExtID) != c.LocalExt().M[metadata.ExtName] {
			continue
		}
		s.requests.Add(1)
		switch {
		case s.b.Silent:
			continue
		case s.b.RejectAll:
			err = metadata.Serve(c, nil, m)
		default:
			err = metadata.Serve(c, s.info, m)
			if err == nil {
				s.served.Add(1)
			}
		}
		if err != nil {
			return
		}
	}
}

func readFull(nc net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := nc.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func discard(nc net.Conn) {
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			return
		}
	}
}

// Peers returns a closed channel holding the seeders' addresses, for metadata.Fetch.
func Peers(addrs ...netip.AddrPort) <-chan netip.AddrPort {
	ch := make(chan netip.AddrPort, len(addrs))
	for _, a := range addrs {
		ch <- a
	}
	close(ch)
	return ch
}

// Addrs lists the seeders' addresses.
func Addrs(ss ...*Seeder) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ss))
	for i, s := range ss {
		out[i] = s.Addr
	}
	return out
}

// DeadAddr returns a loopback address where nothing listens (connections are refused at once).
func DeadAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}
