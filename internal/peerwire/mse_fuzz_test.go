package peerwire

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// scriptConn is a net.Conn that reads a fixed byte stream and discards writes, so Accept can be
// driven without sockets.
type scriptConn struct {
	r *bytes.Reader
}

func (c scriptConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c scriptConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c scriptConn) Close() error                     { return nil }
func (c scriptConn) LocalAddr() net.Addr              { return nil }
func (c scriptConn) RemoteAddr() net.Addr             { return nil }
func (c scriptConn) SetDeadline(time.Time) error      { return nil }
func (c scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzAcceptDetect feeds arbitrary first bytes to Accept with encryption on: it must return (the
// stream ends), never panic, and succeed only for a plain handshake naming the torrent we serve
// (an MSE handshake cannot be completed without answering our fresh Diffie-Hellman key).
func FuzzAcceptDetect(f *testing.F) {
	ih := [20]byte{'f', 'u', 'z', 'z'}
	var res [8]byte
	res[reservedExtByte] |= reservedExtMask
	plain := AppendHandshake(nil, Handshake{Reserved: res, InfoHash: ih, PeerID: [20]byte{'p'}})
	f.Add(plain)
	f.Add(append(plain, AppendMessage(nil, Message{ID: Extended, Payload: EncodeExtHandshake(ExtHandshake{V: "x"})})...))
	f.Add(plain[:30])
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(bytes.Repeat([]byte{0xff}, 96))
	f.Add(bytes.Repeat([]byte{0x13}, 700))
	f.Add(append(bytes.Repeat([]byte{2}, 96), make([]byte, 600)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return // longer than any handshake can use: the read limits are tested with sockets
		}
		o := Options{InfoHashes: func() [][20]byte { return [][20]byte{{1}, ih} }, Timeout: time.Minute}
		var c *Conn
		var err error
		// A Conn's read and write buffers (96 KiB) plus the MSE state, whatever the input.
		allocBound(t, len(b), 256<<10, 64, func() {
			c, err = Accept(context.Background(), scriptConn{bytes.NewReader(b)}, func(h [20]byte) bool { return h == ih }, o)
		})
		if err != nil {
			return
		}
		if c.Crypto() != CryptoNone || !bytes.HasPrefix(b, plainPrefix) || !bytes.Equal(b[28:48], ih[:]) {
			t.Fatalf("Accept succeeded (crypto %v) on %q", c.Crypto(), b)
		}
	})
}
