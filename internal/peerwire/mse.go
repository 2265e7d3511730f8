package peerwire

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/anacrolix/torrent/mse"
)

// ErrEncryptedHandshake is returned (wrapping the cause) when an incoming connection that does not
// start with a plain BEP 3 handshake fails the Message Stream Encryption handshake, or when it is
// refused because Options.InfoHashes is nil (encryption disabled).
var ErrEncryptedHandshake = errors.New("peerwire: encrypted (MSE) handshake failed")

// plainPrefix is how every plain BEP 3 handshake starts. An MSE initiator starts with its 96-byte
// Diffie-Hellman public key instead, which is random and so tells the two apart (the chance that a
// key starts with these 20 bytes is 2^-160).
var plainPrefix = []byte("\x13" + protocolString)

// mseMaxHandshakeRead bounds what the responder side of an MSE handshake may read before the
// BitTorrent handshake: Ya (96), PadA (<= 512), HASH('req1', S) and the skey hash (40), VC,
// crypto_provide and len(PadC) (14), PadC (<= 512 by the spec, but the library would discard up to
// 65535), len(IA) (2) and IA (a BT handshake plus perhaps its first messages; the library would read
// up to 65535). The limit keeps a hostile initiator from making us read and decrypt 128 KiB per
// attempt; 16 KiB of IA is far more than any client sends (libtorrent and aria2 send the 68-byte
// handshake, or nothing).
const mseMaxHandshakeRead = 96 + 512 + 40 + 14 + 512 + 2 + 16<<10

// errMSEReadLimit is the cause when an initiator sends more than mseMaxHandshakeRead bytes.
var errMSEReadLimit = errors.New("handshake longer than allowed")

// isPlainHandshake peeks at br's first bytes and reports whether they start a plain BEP 3
// handshake. It returns false as soon as a byte differs, so a peer that sends a short non-BT
// prefix and then waits is not waited for.
func isPlainHandshake(br *bufio.Reader) (bool, error) {
	for n := 1; n <= len(plainPrefix); n++ {
		b, err := br.Peek(n)
		if err != nil {
			return false, err
		}
		if b[n-1] != plainPrefix[n-1] {
			return false, nil
		}
	}
	return true, nil
}

// selectCrypto picks the method we answer an MSE initiator's crypto_provide with: plaintext
// whenever it is offered (the handshake already hid the protocol, and RC4 costs CPU on every byte),
// RC4 when that is all the peer allows, and nothing (the handshake then fails) otherwise.
func selectCrypto(provided mse.CryptoMethod) mse.CryptoMethod {
	switch {
	case provided&mse.CryptoMethodPlaintext != 0:
		return mse.CryptoMethodPlaintext
	case provided&mse.CryptoMethodRC4 != 0:
		return mse.CryptoMethodRC4
	}
	return 0
}

// limitedConn is what the MSE library talks to: reads come from the Conn's buffered reader (which
// holds the bytes we peeked at) and are capped at left while the handshake runs; writes go to the
// socket. After the handshake, set unlimited: the library's returned stream keeps reading through it.
type limitedConn struct {
	r         io.Reader
	w         io.Writer
	left      int64
	unlimited bool
}

func (l *limitedConn) Read(b []byte) (int, error) {
	if l.unlimited {
		return l.r.Read(b)
	}
	if l.left <= 0 {
		return 0, errMSEReadLimit
	}
	if int64(len(b)) > l.left {
		b = b[:l.left]
	}
	n, err := l.r.Read(b)
	l.left -= int64(n)
	return n, err
}

func (l *limitedConn) Write(b []byte) (int, error) { return l.w.Write(b) }

// stickyWriter remembers the first write error. The library's RC4 writer has advanced its key
// stream past a short write and cannot be used again (it would dereference a nil cipher), so every
// write after a failure must fail without reaching it.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(b)
	if err != nil {
		s.err = err
	}
	return n, err
}

// acceptEncrypted runs the responder side of MSE on c (whose reader has the initiator's first
// bytes buffered) with skeys as the infohashes we serve, then rewires c so that every later read
// and write goes through the negotiated stream. It returns the infohash the initiator proved it
// knows; the BT handshake that follows must name the same one.
func (c *Conn) acceptEncrypted(skeys [][20]byte) ([20]byte, error) {
	lc := &limitedConn{r: c.br, w: c.nc, left: mseMaxHandshakeRead}
	// The library stops iterating at the key that matched, so the last one offered is the one
	// the initiator used (ReceiveHandshake does not return it).
	var skey, last [20]byte
	iter := func(yield func([]byte) bool) {
		for i := range skeys {
			last = skeys[i]
			if !yield(last[:]) {
				return
			}
		}
	}
	rw, method, err := mse.ReceiveHandshake(lc, iter, selectCrypto)
	if err != nil {
		if errors.Is(err, mse.ErrNoSecretKeyMatch) {
			return skey, fmt.Errorf("%w: %w: %w", ErrEncryptedHandshake, ErrInfoHashMismatch, err)
		}
		return skey, fmt.Errorf("%w: %w", ErrEncryptedHandshake, err)
	}
	skey = last
	lc.unlimited = true
	if err := c.useStream(rw, method); err != nil {
		return skey, err
	}
	return skey, nil
}

// mseMaxInitiatorRead bounds what the initiator side reads before the peer's BT handshake: Yb
// (96), PadB (<= 512), VC (8), crypto_select and len(PadD) (6), PadD (<= 512; the library would
// discard up to 65535).
const mseMaxInitiatorRead = 96 + 512 + 8 + 6 + 512

// initiateEncrypted runs the initiator side of MSE on c with ih as the secret key and our BT
// handshake hs as initial payload, offering plaintext and RC4, and rewires c onto the stream.
func (c *Conn) initiateEncrypted(ih [20]byte, hs []byte) error {
	lc := &limitedConn{r: c.br, w: c.nc, left: mseMaxInitiatorRead}
	rw, method, err := mse.InitiateHandshake(lc, ih[:], hs, mse.AllSupportedCrypto)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrEncryptedHandshake, err)
	}
	lc.unlimited = true
	return c.useStream(rw, method)
}

// useStream makes every later read of c go through rw, the stream an MSE handshake negotiated,
// and, for RC4, every write too. With plaintext, writes go to the socket untouched, so the writev
// fast path stays; reads still go through rw, which on the responder side first returns the
// initiator's initial payload.
func (c *Conn) useStream(rw io.ReadWriter, method mse.CryptoMethod) error {
	switch method {
	case mse.CryptoMethodPlaintext:
		c.crypto = CryptoMSEPlaintext
	case mse.CryptoMethodRC4:
		c.encW = &stickyWriter{w: rw}
		c.bw = bufio.NewWriterSize(c.encW, 32<<10)
		c.crypto = CryptoMSERC4
	default:
		return fmt.Errorf("%w: method %d chosen", ErrEncryptedHandshake, method)
	}
	c.inner = c.br
	c.src = rw
	c.br = bufio.NewReaderSize(rw, readBufferSize)
	return nil
}
