package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout is the dial + handshake deadline when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// DefaultMessageTimeout is Options.MessageTimeout's zero value: 16 KiB arrive in it at 550 B/s.
const DefaultMessageTimeout = 30 * time.Second

// Options configure Dial and Accept. The zero value works.
type Options struct {
	// PeerID is sent in our handshake; zero means a fresh NewPeerID per connection.
	PeerID [20]byte
	// ExtHandshake is the BEP 10 handshake we send when both sides support extensions. An empty
	// YourIP is filled in with the peer's address.
	ExtHandshake ExtHandshake
	// Timeout bounds dialling plus the handshake; zero means DefaultTimeout.
	Timeout time.Duration
	// DHT sets the BEP 5 reserved bit (we accept Port messages and run a DHT node).
	DHT bool
	// DisableFast clears the BEP 6 reserved bit, which is set by default.
	DisableFast bool
	// V2 sets the BEP 52 reserved bit: we speak BitTorrent v2 (hash requests) on this torrent.
	// Set it only when the handshake's infohash is a v2 one (truncated SHA-256): libtorrent
	// answers a v1 infohash of a hybrid torrent with the bit set by switching the connection
	// to the v2 infohash.
	V2 bool
	// InfoHashes lists the torrents Accept serves to peers that open with a Message Stream
	// Encryption handshake (the secret key an MSE initiator proves it knows is the infohash, so
	// the responder must try each). Nil means plaintext only: Accept refuses anything that does not
	// start with a BEP 3 handshake. It is called once per encrypted incoming connection, from
	// Accept's goroutine. Dial ignores it.
	InfoHashes func() [][20]byte
	// MessageTimeout bounds how long the rest of a message may take to arrive once its length
	// prefix has: a peer that stops mid-message is cut off after it (ReadMsg fails with a
	// timeout), however far away the deadline set with SetDeadline is. Zero means
	// DefaultMessageTimeout.
	MessageTimeout time.Duration
	// LocalAddr is the address Dial connects from (any port), so peers see the address we
	// listen on rather than whatever the kernel picks; ignored when invalid, unspecified, of
	// the other address family than the peer's, or loopback for a peer that is not (or the
	// reverse): no route could join them. Accept ignores it.
	LocalAddr netip.Addr
	// EncryptedRetry makes Dial, when a peer closes the connection in answer to our plaintext
	// handshake (clients set to require encryption do), dial again at once and open with an MSE
	// handshake offering plaintext and RC4. False means plaintext only.
	EncryptedRetry bool
	// UTP, when set, is the uTP (BEP 29) dialer Dial also tries: when TCP fails, or has not
	// connected within UTPHeadStart, or the peer hangs up on a TCP handshake (clients with
	// incoming TCP off accept and close), all within the same Timeout. The first connection
	// wins and the other is closed; the handshake runs over it unchanged. Accept ignores it.
	UTP UTPDialer
}

// UTPDialer opens uTP connections (internal/utp's Socket is one).
type UTPDialer interface {
	DialContext(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

// UTPHeadStart is how long Dial gives TCP before it also tries uTP (Options.UTP).
const UTPHeadStart = time.Second

// UTPFallbackTimeout bounds the uTP try that follows a failed TCP dial or a TCP hang-up: a uTP
// peer answers a SYN within a round trip, while a gone one (what refused TCP usually is) or
// one without uTP never does.
const UTPFallbackTimeout = 3 * time.Second

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

func (o Options) reserved() [8]byte {
	var r [8]byte
	r[reservedExtByte] |= reservedExtMask
	if !o.DisableFast {
		r[reservedFastByte] |= reservedFastMask
	}
	if o.DHT {
		r[reservedDHTByte] |= reservedDHTMask
	}
	if o.V2 {
		r[reservedV2Byte] |= reservedV2Mask
	}
	return r
}

func (o Options) peerID() [20]byte {
	if o.PeerID != ([20]byte{}) {
		return o.PeerID
	}
	return NewPeerID()
}

// Conn is a handshaken peer connection for one infohash.
//
// ReadMsg and Unread must be called from one goroutine at a time (the reader). WriteMsg, WriteMsgs,
// PeerExt, Close, SetDeadline and the getters are safe from any goroutine, concurrently with the
// reader: writes are serialised by a mutex, so one reader goroutine plus any number of writers is
// fine.
type Conn struct {
	nc       net.Conn
	br       *bufio.Reader // used only by the reader goroutine
	src      io.Reader     // what br reads: nc, or the MSE stream
	ih       [20]byte
	peerID   [20]byte
	ourRes   [8]byte
	theirRes [8]byte
	remote   netip.AddrPort
	local    ExtHandshake // what we advertised; read-only after the handshake
	crypto   Crypto

	// inner is, on an MSE connection, the buffered reader of the socket under br (br then reads the
	// negotiated stream); Buffered counts both. Nil on plain connections. Reader goroutine only.
	inner *bufio.Reader
	// encW is the RC4 writer under bw on an MSE connection that negotiated RC4; WriteMsgs then
	// never writes to nc directly. Nil otherwise.
	encW *stickyWriter

	wmu  sync.Mutex // guards bw, wbuf and iovs
	bw   *bufio.Writer
	wbuf []byte
	iovs [][]byte

	mu      sync.Mutex // guards peerExt and pending
	peerExt ExtHandshake
	pending []Message

	// msgTimeout is Options.MessageTimeout; read-only.
	msgTimeout time.Duration
	dlmu       sync.Mutex // guards rdl and short; taken around (never across) deadline changes
	rdl        time.Time  // the read deadline callers asked for (SetDeadline, SetReadDeadline)
	short      bool       // a mid-message deadline earlier than rdl is in force on nc

	closeOnce sync.Once
	closeErr  error
}

func newConn(nc net.Conn, o Options) *Conn {
	c := &Conn{
		nc: nc,
		// 64 KiB: several blocks per read syscall at full speed, still small per connection.
		br:         bufio.NewReaderSize(nc, readBufferSize),
		src:        nc,
		bw:         bufio.NewWriterSize(nc, 32<<10), // a 16 KiB block and its header in one write
		ourRes:     o.reserved(),
		local:      o.ExtHandshake,
		msgTimeout: o.MessageTimeout,
	}
	if c.msgTimeout <= 0 {
		c.msgTimeout = DefaultMessageTimeout
	}
	c.remote = addrPortOf(nc.RemoteAddr())
	if len(c.local.YourIP) == 0 && c.remote.IsValid() {
		c.local.YourIP = c.remote.Addr().Unmap().AsSlice()
	}
	return c
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// withDeadline runs fn with a deadline on nc and makes cancellation of ctx unblock it. It returns
// parent's error (not the I/O error it caused) when parent was cancelled, and a timeout error when
// only ctx's own deadline passed.
func withDeadline(parent, ctx context.Context, nc net.Conn, fn func() error) error {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	hookDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(hookDone)
		nc.SetDeadline(time.Unix(1, 0))
	})
	err := fn()
	if !stop() {
		// The hook ran or is running: wait so no goroutine of ours outlives the call, and treat
		// nc's deadline as in the past for good.
		<-hookDone
		if perr := parent.Err(); perr != nil {
			return perr
		}
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("handshake timed out: %w", err)
	}
	if err != nil {
		return err
	}
	return nc.SetDeadline(time.Time{})
}

// Dial connects to addr, exchanges BEP 3 handshakes for ih and sends our extended handshake when
// both sides support BEP 10. Cancelling ctx unblocks it and returns ctx.Err(). It opens in
// plaintext; with Options.EncryptedRetry a peer that hangs up on that is dialled once more with
// an MSE handshake, within the same Timeout.
func Dial(ctx context.Context, addr netip.AddrPort, ih [20]byte, o Options) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	c, tr, err := dialOnce(ctx, hctx, addr, ih, o, false, anyTransport)
	if err == nil || !errors.Is(err, errHungUp) || hctx.Err() != nil {
		return c, err
	}
	// The peer hung up on our plaintext handshake: it may require encryption or, when that
	// was over TCP, take only uTP.
	type attempt struct {
		encrypt bool
		tr      transport
	}
	var next []attempt
	if o.EncryptedRetry {
		next = append(next, attempt{true, tr})
	}
	if tr == tcpTransport && o.UTP != nil {
		next = append(next, attempt{false, utpTransport})
		if o.EncryptedRetry {
			next = append(next, attempt{true, utpTransport})
		}
	}
	if len(next) == 0 {
		return nil, err
	}
	first := err
	for _, a := range next {
		if c, _, err = dialOnce(ctx, hctx, addr, ih, o, a.encrypt, a.tr); err == nil {
			return c, nil
		}
		if hctx.Err() != nil || !hungUp(err) {
			break
		}
	}
	return nil, fmt.Errorf("%w (after a plaintext attempt: %w)", err, first)
}

// errHungUp marks a plaintext handshake the peer answered by closing the connection, as clients
// that require encryption do.
var errHungUp = errors.New("peer closed the connection")

// hungUp reports whether err is the peer closing or resetting the connection.
func hungUp(err error) bool {
	return errors.Is(err, errHungUp) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET)
}

// transport is how a connection is carried.
type transport int

const (
	anyTransport transport = iota // TCP, and uTP too when Options.UTP is set
	tcpTransport
	utpTransport
)

// connect opens a connection to addr over tr. With anyTransport and a uTP dialer, TCP starts
// first and uTP joins it on TCP's failure or after UTPHeadStart; the first to connect wins and
// the other is closed. It returns once both attempts have ended (no goroutine outlives it).
func (o Options) connect(ctx context.Context, addr netip.AddrPort, tr transport) (net.Conn, transport, error) {
	dialTCP := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		if la, ra := o.LocalAddr.Unmap(), addr.Addr().Unmap(); la.IsValid() && !la.IsUnspecified() &&
			la.Is4() == ra.Is4() && la.IsLoopback() == ra.IsLoopback() {
			d.LocalAddr = &net.TCPAddr{IP: la.AsSlice()}
		}
		return d.DialContext(ctx, "tcp", addr.String())
	}
	switch {
	case tr == utpTransport && o.UTP != nil:
		// After a TCP hang-up: a peer without uTP (or its DHT on the port) never answers.
		uctx, cancel := context.WithTimeout(ctx, UTPFallbackTimeout)
		defer cancel()
		nc, err := o.UTP.DialContext(uctx, addr)
		return nc, utpTransport, err
	case tr == tcpTransport || o.UTP == nil:
		nc, err := dialTCP(ctx)
		return nc, tcpTransport, err
	}
	type result struct {
		nc  net.Conn
		err error
		tr  transport
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, 2)
	go func() {
		nc, err := dialTCP(rctx)
		results <- result{nc, err, tcpTransport}
	}()
	pending, utpStarted := 1, false
	startUTP := func(limit time.Duration) {
		utpStarted = true
		pending++
		go func() {
			uctx, cancel := rctx, context.CancelFunc(func() {})
			if limit > 0 {
				uctx, cancel = context.WithTimeout(rctx, limit)
			}
			defer cancel()
			nc, err := o.UTP.DialContext(uctx, addr)
			results <- result{nc, err, utpTransport}
		}()
	}
	head := time.NewTimer(UTPHeadStart)
	defer head.Stop()
	var win result
	var errs []error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			switch {
			case r.err != nil:
				errs = append(errs, r.err)
				if !utpStarted && win.nc == nil && ctx.Err() == nil {
					// Most peers that refuse TCP are gone (a stale DHT entry), and a closed
					// UDP port does not answer: the uTP try is kept short.
					startUTP(UTPFallbackTimeout)
				}
			case win.nc == nil:
				win = r
				cancel() // the other attempt is no longer wanted
			default:
				r.nc.Close()
			}
		case <-head.C:
			if !utpStarted && win.nc == nil {
				startUTP(0)
			}
		}
	}
	if win.nc != nil {
		return win.nc, win.tr, nil
	}
	if len(errs) == 2 {
		return nil, tcpTransport, fmt.Errorf("%w (uTP: %w)", errs[0], errs[1])
	}
	return nil, tcpTransport, errors.Join(errs...)
}

// dialOnce is one connection attempt of Dial, in plaintext or opening with MSE.
func dialOnce(ctx, hctx context.Context, addr netip.AddrPort, ih [20]byte, o Options, encrypt bool, tr transport) (*Conn, transport, error) {
	nc, tr, err := o.connect(hctx, addr, tr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, tr, ctx.Err()
		}
		return nil, tr, fmt.Errorf("peerwire: dial %v: %w", addr, err)
	}
	c := newConn(nc, o)
	c.ih = ih
	err = withDeadline(ctx, hctx, nc, func() error {
		hs := AppendHandshake(nil, Handshake{Reserved: c.ourRes, InfoHash: ih, PeerID: o.peerID()})
		if encrypt {
			if err := c.initiateEncrypted(ih, hs); err != nil {
				return err
			}
		} else if _, err := nc.Write(hs); err != nil {
			return err
		}
		var buf [HandshakeLen]byte
		if _, err := io.ReadFull(c.br, buf[:]); err != nil {
			if !encrypt && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
				return fmt.Errorf("%w: %w", errHungUp, err)
			}
			return err
		}
		h, err := ParseHandshake(buf[:])
		if err != nil {
			return err
		}
		if h.InfoHash != ih {
			return fmt.Errorf("%w: peer answered %x", ErrInfoHashMismatch, h.InfoHash)
		}
		c.theirRes, c.peerID = h.Reserved, h.PeerID
		return c.sendExtHandshake()
	})
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, tr, ctx.Err()
		}
		return nil, tr, fmt.Errorf("peerwire: handshake with %v over %s: %w", addr, nc.RemoteAddr().Network(), err)
	}
	return c, tr, nil
}

// Accept runs the receiving side of the handshake on nc: it reads the peer's handshake, checks with
// known that we serve its infohash, answers, and sends our extended handshake when both sides
// support BEP 10. On error nc is closed. Cancelling ctx unblocks it and returns ctx.Err().
func Accept(ctx context.Context, nc net.Conn, known func([20]byte) bool, o Options) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	c := newConn(nc, o)
	err := withDeadline(ctx, hctx, nc, func() error {
		plain, err := isPlainHandshake(c.br)
		if err != nil {
			return err
		}
		var mseIH [20]byte
		if !plain {
			if o.InfoHashes == nil {
				b, _ := c.br.Peek(min(c.br.Buffered(), len(plainPrefix)))
				return fmt.Errorf("%w: starts with %q (encrypted handshakes are off)", ErrBadHandshake, b)
			}
			if mseIH, err = c.acceptEncrypted(o.InfoHashes()); err != nil {
				return err
			}
		}
		var buf [HandshakeLen]byte
		if _, err := io.ReadFull(c.br, buf[:handshakeHeadLen]); err != nil {
			return err
		}
		h, err := parseHandshakeHead(buf[:handshakeHeadLen])
		if err != nil {
			return err
		}
		if c.crypto != CryptoNone && h.InfoHash != mseIH {
			return fmt.Errorf("%w: encrypted for %x, handshake names %x", ErrInfoHashMismatch, mseIH, h.InfoHash)
		}
		if known == nil || !known(h.InfoHash) {
			return fmt.Errorf("%w: %x is not ours", ErrInfoHashMismatch, h.InfoHash)
		}
		c.ih, c.theirRes = h.InfoHash, h.Reserved
		// Answer before reading their peer id: BEP 3 lets the initiator wait for ours.
		c.wmu.Lock()
		c.bw.Write(AppendHandshake(nil, Handshake{Reserved: c.ourRes, InfoHash: c.ih, PeerID: o.peerID()}))
		c.wmu.Unlock()
		if err := c.sendExtHandshake(); err != nil {
			return err
		}
		if _, err := io.ReadFull(c.br, buf[handshakeHeadLen:]); err != nil {
			return err
		}
		copy(c.peerID[:], buf[handshakeHeadLen:])
		return nil
	})
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("peerwire: accept from %v: %w", addrPortOf(nc.RemoteAddr()), err)
	}
	return c, nil
}

// sendExtHandshake sends our BEP 10 handshake if both sides support it, and flushes.
func (c *Conn) sendExtHandshake() error {
	if !c.SupportsExtensions() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return c.bw.Flush()
	}
	return c.WriteMsg(Message{ID: Extended, ExtID: 0, Payload: EncodeExtHandshake(c.local)})
}

// InfoHash is the torrent this connection is for.
func (c *Conn) InfoHash() [20]byte { return c.ih }

// RemoteAddr is the peer's address (IPv4-mapped addresses unmapped).
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// Transport names what carries the connection: "tcp", or "utp" (BEP 29).
func (c *Conn) Transport() string { return c.nc.RemoteAddr().Network() }

// PeerID is the id from the peer's handshake.
func (c *Conn) PeerID() [20]byte { return c.peerID }

// SupportsExtensions reports whether both sides set the BEP 10 bit.
func (c *Conn) SupportsExtensions() bool {
	return Handshake{Reserved: c.theirRes}.SupportsExtensions() && Handshake{Reserved: c.ourRes}.SupportsExtensions()
}

// SupportsFast reports whether both sides set the BEP 6 bit, so the fast-extension messages
// (HaveAll, HaveNone, Reject, AllowedFast, Suggest) are in use.
func (c *Conn) SupportsFast() bool {
	return Handshake{Reserved: c.theirRes}.SupportsFast() && Handshake{Reserved: c.ourRes}.SupportsFast()
}

// SupportsV2 reports whether both sides set the BEP 52 bit (hash request, hashes and hash reject
// messages are understood). libtorrent 2.0.8 does not set it when answering a handshake under a
// v2 infohash, though it speaks v2 there: callers also go by the infohash.
func (c *Conn) SupportsV2() bool {
	return Handshake{Reserved: c.theirRes}.SupportsV2() && Handshake{Reserved: c.ourRes}.SupportsV2()
}

// SupportsDHT reports whether the peer set the BEP 5 bit (it may send a Port message).
func (c *Conn) SupportsDHT() bool { return Handshake{Reserved: c.theirRes}.SupportsDHT() }

// PeerExt is the peer's BEP 10 handshake, zero until ReadMsg has read it. A later extended
// handshake from the peer replaces it.
func (c *Conn) PeerExt() ExtHandshake {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerExt
}

// LocalExt is the BEP 10 handshake we sent (with YourIP filled in), so a handler knows which
// extended ids it assigned (for example ut_metadata requests arrive with LocalExt().M["ut_metadata"]).
func (c *Conn) LocalExt() ExtHandshake { return c.local }

// ReadMsg returns the next pushed-back message (Unread), or reads one from the peer. Lengths are
// checked before anything is allocated: see MaxMessageLen and MaxBitfieldLen. An extended handshake
// (ID Extended, ExtID 0) is recorded for PeerExt and returned too. Deadlines come from SetDeadline.
func (c *Conn) ReadMsg() (Message, error) { return c.ReadMsgInto(nil) }

// BlockBuffer chooses where ReadMsgInto puts a Piece message's block of n bytes for piece index
// at offset begin. It returns a slice of exactly n bytes to read the block into, or nil to have
// the block skipped: the Message then comes back with Block nil and Length n, and nothing is
// allocated for it.
type BlockBuffer func(index, begin uint32, n int) []byte

// ReadMsgInto is ReadMsg, except that a Piece message's block is read straight into the slice
// dst returns (when dst is not nil), so a downloader can reuse its buffers instead of
// allocating 16 KiB per block, and can refuse blocks it never asked for without reading them
// into anything. The returned Message's Block then aliases that slice. dst runs on the reader
// goroutine, once the whole block has arrived and sits in the connection's read buffer: a
// buffer dst hands out (possibly one shared with other connections) is never held while
// waiting for the network. Blocks larger than the read buffer (64 KiB) are not offered to dst;
// they are read into a fresh slice, grown as their bytes arrive.
func (c *Conn) ReadMsgInto(dst BlockBuffer) (Message, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending[0] = Message{}
		c.pending = c.pending[1:]
		c.mu.Unlock()
		return m, nil
	}
	c.mu.Unlock()

	if c.br.Buffered() < 4 {
		// Waiting for a new message: the caller's (idle) deadline applies, not a mid-message one.
		c.endMessageDeadline()
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return Message{}, fmt.Errorf("peerwire: read: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return Message{Keepalive: true}, nil
	}
	if n > MaxMessageLen {
		// Only a Bitfield or a BEP 52 Hashes message may be longer; look at its ID only when the
		// length could be one, so a 4 GiB prefix fails at once.
		if n > MaxBitfieldLen+1 {
			return Message{}, fmt.Errorf("%w: length prefix %d", ErrMessageTooLarge, n)
		}
		if err := c.await(1); err != nil {
			return Message{}, err
		}
		id, _ := c.br.Peek(1)
		if n > maxLenFor(id[0]) {
			return Message{}, fmt.Errorf("%w: id %d with length %d", ErrMessageTooLarge, id[0], n)
		}
	}
	if dst != nil && n > pieceHeaderLen {
		if err := c.await(1); err != nil {
			return Message{}, err
		}
		if id, _ := c.br.Peek(1); id[0] == Piece {
			return c.readPiece(n, dst)
		}
	}
	buf, err := c.readBody(int(n))
	if err != nil {
		return Message{}, err
	}
	m, err := DecodeMessage(buf)
	if err != nil {
		return Message{}, err
	}
	if m.ID == Extended && m.ExtID == 0 {
		h, err := DecodeExtHandshake(m.Payload)
		if err != nil {
			return Message{}, err
		}
		c.mu.Lock()
		c.peerExt = h
		c.mu.Unlock()
	}
	return m, nil
}

// pieceHeaderLen is a Piece message's ID, index and begin.
const pieceHeaderLen = 9

// readPiece reads a Piece message of length n (already checked against MaxMessageLen) whose
// block goes where dst says.
func (c *Conn) readPiece(n uint32, dst BlockBuffer) (Message, error) {
	size := int(n - pieceHeaderLen)
	if int(n) > c.br.Size() {
		buf, err := c.readBody(int(n))
		if err != nil {
			return Message{}, err
		}
		return DecodeMessage(buf)
	}
	// The whole message is in memory before dst is asked for a buffer.
	if err := c.await(int(n)); err != nil {
		return Message{}, err
	}
	h, _ := c.br.Peek(pieceHeaderLen)
	m := Message{ID: Piece, Index: binary.BigEndian.Uint32(h[1:]), Begin: binary.BigEndian.Uint32(h[5:])}
	c.br.Discard(pieceHeaderLen)
	b := dst(m.Index, m.Begin, size)
	if b == nil || len(b) != size {
		c.br.Discard(size)
		m.Length = uint32(size)
		return m, nil
	}
	io.ReadFull(c.br, b) // buffered: cannot fail
	m.Block = b
	return m, nil
}

// await waits until k bytes (at most the read buffer's size) of the current message are
// buffered, under the mid-message deadline when they are not there yet.
func (c *Conn) await(k int) error {
	if c.br.Buffered() >= k {
		return nil
	}
	c.startMessageDeadline()
	if _, err := c.br.Peek(k); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("peerwire: read: %w", err)
	}
	return nil
}

// readBody returns the next n bytes in a fresh slice, allocated only as the bytes arrive: a
// length prefix followed by silence costs nothing.
func (c *Conn) readBody(n int) ([]byte, error) {
	if n <= c.br.Size() {
		if err := c.await(n); err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		io.ReadFull(c.br, buf) // buffered: cannot fail
		return buf, nil
	}
	var buf []byte
	for len(buf) < n {
		k := min(n-len(buf), c.br.Size())
		if err := c.await(k); err != nil {
			return nil, err
		}
		buf = slices.Grow(buf, k)
		buf = buf[:len(buf)+k]
		io.ReadFull(c.br, buf[len(buf)-k:])
	}
	return buf, nil
}

// startMessageDeadline brings the read deadline forward to MessageTimeout from now (unless
// the caller's is earlier): the reader is about to wait for the rest of a message.
func (c *Conn) startMessageDeadline() {
	c.dlmu.Lock()
	defer c.dlmu.Unlock()
	d := time.Now().Add(c.msgTimeout)
	if !c.rdl.IsZero() && !c.rdl.After(d) {
		return
	}
	c.short = true
	_ = c.nc.SetReadDeadline(d)
}

// endMessageDeadline puts the caller's read deadline back after a mid-message one.
func (c *Conn) endMessageDeadline() {
	c.dlmu.Lock()
	defer c.dlmu.Unlock()
	if c.short {
		c.short = false
		_ = c.nc.SetReadDeadline(c.rdl)
	}
}

// MsgBuffered reports whether the next ReadMsg is served from memory: a message was pushed
// back, or a whole one is in the read buffer. When it is false the next ReadMsg may wait on
// the network. Reader goroutine only.
func (c *Conn) MsgBuffered() bool {
	c.mu.Lock()
	pending := len(c.pending) > 0
	c.mu.Unlock()
	if pending {
		return true
	}
	b, err := c.br.Peek(min(4, c.br.Buffered()))
	if err != nil || len(b) < 4 {
		return false
	}
	n := int64(binary.BigEndian.Uint32(b))
	return int64(c.br.Buffered()) >= 4+n
}

// readBufferSize is a connection's read buffer to begin with: handshakes and control messages
// need little, and half-open connections must cost little. GrowReadBuffer enlarges it.
const readBufferSize = 64 << 10

// GrowReadBuffer enlarges the read buffer to n bytes (keeping what it holds), for a peer that
// sends us blocks: more whole blocks per read then arrive together, so a downloader can write
// them in longer runs. Reader goroutine only.
func (c *Conn) GrowReadBuffer(n int) {
	if n <= c.br.Size() {
		return
	}
	held, _ := c.br.Peek(c.br.Buffered())
	var r io.Reader = c.src
	if len(held) > 0 {
		r = io.MultiReader(bytes.NewReader(append([]byte(nil), held...)), c.src)
	}
	c.br = bufio.NewReaderSize(r, n)
}

// Buffered reports how many bytes already received are waiting to be parsed: when it is zero
// (and nothing was pushed back), the next ReadMsg will block on the network. Reader goroutine only.
func (c *Conn) Buffered() int {
	if c.inner != nil {
		return c.br.Buffered() + c.inner.Buffered()
	}
	return c.br.Buffered()
}

// Crypto says how a connection's bytes travel.
type Crypto uint8

const (
	// CryptoNone is a plain BEP 3 connection.
	CryptoNone Crypto = iota
	// CryptoMSEPlaintext is a connection that opened with a Message Stream Encryption handshake
	// and then agreed to continue unencrypted.
	CryptoMSEPlaintext
	// CryptoMSERC4 is a Message Stream Encryption connection whose stream is RC4-encrypted.
	CryptoMSERC4
)

// String names the method for logs.
func (m Crypto) String() string {
	switch m {
	case CryptoNone:
		return "plain"
	case CryptoMSEPlaintext:
		return "mse-plaintext"
	case CryptoMSERC4:
		return "mse-rc4"
	}
	return fmt.Sprintf("Crypto(%d)", uint8(m))
}

// Crypto reports whether the peer opened with an MSE handshake and what it negotiated.
func (c *Conn) Crypto() Crypto { return c.crypto }

// Unread pushes messages back: the next ReadMsg calls return ms in order, before any message
// pushed back earlier and before anything on the wire.
func (c *Conn) Unread(ms ...Message) {
	if len(ms) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(append([]Message(nil), ms...), c.pending...)
}

// WriteMsg sends one message and flushes it.
func (c *Conn) WriteMsg(m Message) error {
	return c.WriteMsgs(m)
}

// WriteMsgs sends messages with one flush at the end (for example a batch of Requests). Large
// payloads (blocks) are not copied: they go to the socket with the headers in one writev.
func (c *Conn) WriteMsgs(ms ...Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	big := 0
	for _, m := range ms {
		if err := m.checkSendable(); err != nil {
			return err
		}
		// writev goes to the socket, so an RC4 stream must take the copying path through bw.
		if _, tail := m.appendHeader(nil); len(tail) >= writevMin && c.encW == nil {
			big++
		}
	}
	if big == 0 {
		for _, m := range ms {
			var tail []byte
			c.wbuf, tail = m.appendHeader(c.wbuf[:0])
			c.bw.Write(c.wbuf)
			c.bw.Write(tail)
		}
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("peerwire: write: %w", err)
		}
		return nil
	}
	// Headers go into wbuf back to back; iovecs point into it, so size it first (it must not
	// move while iovs reference it).
	hlen := 0
	for _, m := range ms {
		hlen += maxHeaderLen
		if _, tail := m.appendHeader(nil); len(tail) < writevMin {
			hlen += len(tail)
		}
	}
	if cap(c.wbuf) < hlen {
		c.wbuf = make([]byte, 0, hlen)
	}
	if err := c.bw.Flush(); err != nil { // anything buffered earlier goes first
		return fmt.Errorf("peerwire: write: %w", err)
	}
	w := c.wbuf[:0]
	iovs := c.iovs[:0]
	start := 0
	for _, m := range ms {
		var tail []byte
		w, tail = m.appendHeader(w)
		if len(tail) < writevMin {
			w = append(w, tail...)
			continue
		}
		iovs = append(iovs, w[start:], tail)
		start = len(w)
	}
	if start < len(w) {
		iovs = append(iovs, w[start:])
	}
	c.wbuf = w[:0]
	bufs := net.Buffers(iovs)
	_, err := bufs.WriteTo(c.nc)
	clear(iovs) // do not keep blocks alive
	c.iovs = iovs[:0]
	if err != nil {
		return fmt.Errorf("peerwire: write: %w", err)
	}
	return nil
}

// writevMin is the payload size from which WriteMsgs hands a payload to writev instead of
// copying it; maxHeaderLen is the longest header appendHeader produces.
const (
	writevMin    = 4 << 10
	maxHeaderLen = 4 + 1 + 12
)

// Close closes the connection; it is safe to call more than once and from any goroutine, and
// unblocks a pending ReadMsg or WriteMsg.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.nc.Close() })
	return c.closeErr
}

// SetDeadline sets the read and write deadline of the underlying connection. While ReadMsg
// waits for the rest of a message, the read deadline is the earlier of this one and
// Options.MessageTimeout from when the wait began.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.nc.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline of the underlying connection (see SetDeadline).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dlmu.Lock()
	defer c.dlmu.Unlock()
	c.rdl = t
	c.short = false
	return c.nc.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline of the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
