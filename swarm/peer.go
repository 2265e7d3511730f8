package swarm

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/swarm/pex"
	"github.com/magnetget/magnetget/swarm/picker"
)

// Errors that end one peer connection (they are logged, not returned by Run).
var (
	errProtocol     = errors.New("protocol violation")
	errBanned       = errors.New("peer banned")
	errSnubbed      = errors.New("peer stopped sending")
	errBothComplete = errors.New("both sides complete")
)

const (
	maxBlockRequest = 128 << 10 // largest block a peer may request from us
	maxWasted       = 16 << 20  // unrequested piece bytes tolerated before disconnecting
	minOutstanding  = 16
	maxOutstanding  = 512
	initOutstanding = defaultReqq
	defaultReqq     = 250
	uploadBatch     = 8  // blocks read and sent per flush
	refillBatch     = 16 // free request slots that trigger a refill after a block
	maxAllowedFast  = 64
	pexMaxAdd       = 50
	pexMinInterval  = 45 * time.Second
)

type blockKey struct{ piece, begin uint32 }

type request struct {
	length uint32
	at     time.Time
}

// peer is one connection. Fields under "guarded by s.mu" belong to the swarm's lock; the
// outbound queue has its own small lock (always taken after s.mu, never before).
type peer struct {
	s        *Swarm
	c        *peerwire.Conn
	addr     netip.AddrPort
	outgoing bool // we dialled it
	adopted  bool // handed in by AddConn (usually dialled by metadata.Fetch)
	fast     bool
	ctx      context.Context
	done     chan struct{} // closed when the reader ends

	// guarded by s.mu
	has            picker.Bitfield
	hasCount       int
	gotHas         bool          // a bitfield, have_all or have_none arrived
	staleHas       int           // later ones that added no piece
	staleHave      int           // have messages for pieces already announced
	rejects        int           // requests rejected since the last block
	flips          *rate.Limiter // chokes we accept from the peer
	useful         int           // pieces it has that we want and lack
	peerChoking    bool
	peerInterested bool
	amChoking      bool
	amInterested   bool
	optimistic     bool
	pieces         []int // pieces this peer is downloading for us, in pick order
	outstanding    map[blockKey]request
	allowedFast    map[int]bool  // pieces it lets us request while it chokes us
	fastOut        map[int]bool  // pieces we let it request while we choke it
	maxOut         int           // requests we keep outstanding: see pipeline.go
	slowStart      bool          // maxOut grows with each block received (pipeline.go)
	minRTT         time.Duration // least time from a request to its block seen yet
	lastRate       float64       // downRate at the previous update, for leaving slow start
	reqq           int           // the requests the peer queues (its extended handshake); 0 = unknown
	lastBlock      time.Time
	lastPayload    time.Time // a block received or sent (connection time until then)
	evicting       bool      // closed to make room for another peer
	wasted         int64
	downBytes      int64
	upBytes        int64
	lastDownBytes  int64
	lastUpBytes    int64
	downRate       float64
	upRate         float64
	pexID          int // their id for ut_pex; 0 = none
	ourPexID       int // our id for ut_pex on this conn
	pexSent        map[netip.AddrPort]bool
	lastPexIn      time.Time
	removed        bool
	banned         bool // its sender is banned: closed as soon as the lock is let go; ask it nothing more
	hashOut        int  // our hash requests it has not answered (v2.go)
	hashRejects    int  // our hash requests it rejected or let time out

	// reader goroutine only
	recv   blockRun // received blocks not yet handed to the disk goroutine
	runErr error    // an error from inside blockDst

	diskq    chan blockRun // runs for the disk goroutine; closed by run when the reader ends
	diskDone chan struct{} // closed when the disk goroutine ends
	diskErr  error         // why the disk goroutine stopped early; read after diskDone

	qmu     sync.Mutex // guards the following
	q       []peerwire.Message
	uploads []peerwire.Message
	qsig    chan struct{}
}

// startPeer registers c and starts its goroutines; adopted marks a conn we did not
// handshake ourselves (its extended handshake may lack ut_pex).
func (s *Swarm) startPeer(c *peerwire.Conn, adopted bool) {
	s.startPeerDir(c, adopted, false)
}

func (s *Swarm) startPeerDir(c *peerwire.Conn, adopted, outgoing bool) {
	addr := c.RemoteAddr()
	var closing []*peerwire.Conn
	defer func() { closeAll(closing) }()
	s.mu.Lock()
	reason := ""
	switch {
	case s.stopped || s.ctx == nil:
		reason = "swarm not running"
	case s.bans.banned(addr.Addr(), time.Now()):
		reason = "banned"
	case c.PeerID() == s.cfg.PeerID:
		reason = "connected to ourselves"
	case s.perIPLocked(addr.Addr()) >= maxPerIP:
		reason = "too many connections from one address"
	}
	if reason == "" {
		for q := range s.peers {
			if q.c.PeerID() == c.PeerID() && q.addr.Addr() == addr.Addr() {
				reason = "duplicate connection" // e.g. both sides dialled each other
			}
		}
	}
	if reason == "" && !s.roomLocked(&closing) {
		reason = "too many peers"
	}
	if reason != "" {
		if !s.stopped {
			delete(s.known, addr)
		}
		s.mu.Unlock()
		s.log.Debug("dropping connection", "peer", addr, "reason", reason)
		_ = c.Close()
		return
	}
	n := s.layout.NumPieces()
	p := &peer{
		s: s, c: c, addr: addr, outgoing: outgoing, adopted: adopted, fast: c.SupportsFast(), ctx: s.ctx,
		done:        make(chan struct{}),
		has:         picker.NewBitfield(n),
		peerChoking: true, amChoking: true,
		outstanding: make(map[blockKey]request),
		allowedFast: make(map[int]bool),
		fastOut:     make(map[int]bool),
		maxOut:      initOutstanding,
		slowStart:   true,
		flips:       rate.NewLimiter(rate.Every(chokeFlipEvery), chokeFlipBurst),
		pexSent:     make(map[netip.AddrPort]bool),
		lastPayload: time.Now(),
		qsig:        make(chan struct{}, 1),
		diskq:       make(chan blockRun, diskQ),
		diskDone:    make(chan struct{}),
	}
	ours := c.LocalExt().M
	p.ourPexID = ours["ut_pex"]
	p.pexID = c.PeerExt().M["ut_pex"] // adopted conns have it already
	p.reqq = c.PeerExt().Reqq
	if adopted && c.SupportsExtensions() && p.ourPexID == 0 {
		// The metadata fetcher advertised only ut_metadata; BEP 10 lets us send a new
		// handshake adding ut_pex and the metadata size we now have.
		m := map[string]int{"ut_pex": 1}
		for k, v := range ours {
			m[k] = v
			if v >= m["ut_pex"] {
				m["ut_pex"] = v + 1
			}
		}
		p.ourPexID = m["ut_pex"]
		h := s.opts.ExtHandshake
		h.M = m
		p.q = append(p.q, peerwire.Message{ID: peerwire.Extended, Payload: peerwire.EncodeExtHandshake(h)})
	}
	p.q = append(p.q, s.haveMessageLocked(p)...)
	if p.fast {
		for _, i := range allowedFastSet(addr.Addr(), s.cfg.InfoHash, n, allowedFastCount) {
			if s.picker.Have(i) {
				p.fastOut[i] = true
				p.q = append(p.q, peerwire.Message{ID: peerwire.AllowedFast, Index: uint32(i)})
			}
		}
	}
	s.peers[p] = struct{}{}
	s.known[addr] = true
	p.maxOut = s.initialPipelineLocked()
	s.preUnchokeLocked(p)
	s.askHashesLocked(p)
	s.wg.Add(1)
	s.mu.Unlock()
	s.log.Debug("peer connected", "peer", addr, "fast", p.fast, "ext", c.SupportsExtensions())
	go func() {
		defer s.wg.Done()
		p.run()
	}()
}

// haveMessageLocked returns what tells a new peer which pieces we have.
func (s *Swarm) haveMessageLocked(p *peer) []peerwire.Message {
	cnt := s.picker.HaveCount()
	switch {
	case p.fast && cnt == s.picker.Len():
		return []peerwire.Message{{ID: peerwire.HaveAll}}
	case p.fast && cnt == 0:
		return []peerwire.Message{{ID: peerwire.HaveNone}}
	case cnt == 0:
		return nil
	}
	return []peerwire.Message{{ID: peerwire.Bitfield, Bitfield: s.picker.HaveField().Bytes()}}
}

// run owns the connection: a writer goroutine plus the reader loop here.
func (p *peer) run() {
	s := p.s
	stop := context.AfterFunc(p.ctx, func() { _ = p.c.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.writer(); err != nil {
			_ = p.c.Close()
		}
	}()
	go p.disk()
	err := p.reader()
	_ = p.c.Close()
	if ferr := p.flushRun(); ferr != nil && err == nil {
		err = ferr
	}
	close(p.diskq)
	<-p.diskDone // every block received is on disk (or the swarm is stopping)
	close(p.done)
	wg.Wait()
	s.removePeer(p)
	if p.ctx.Err() == nil {
		s.log.Debug("peer disconnected", "peer", p.addr, "err", err)
	}
}

// enqueue adds messages to the outbound queue; it never blocks.
func (p *peer) enqueue(ms ...peerwire.Message) {
	if len(ms) == 0 {
		return
	}
	p.qmu.Lock()
	p.q = append(p.q, ms...)
	p.qmu.Unlock()
	p.signal()
}

func (p *peer) signal() {
	select {
	case p.qsig <- struct{}{}:
	default:
	}
}

// writer sends queued messages first, then serves queued uploads a few blocks at a time.
func (p *peer) writer() error {
	keepalive := time.NewTimer(keepaliveEvery)
	defer keepalive.Stop()
	var upBuf []byte // allocated on first upload, reused
	for {
		p.qmu.Lock()
		q := p.q
		p.q = nil
		var ups []peerwire.Message
		if len(q) == 0 {
			k := min(len(p.uploads), uploadBatch)
			ups = append(ups, p.uploads[:k]...)
			p.uploads = p.uploads[k:]
			if len(p.uploads) == 0 {
				p.uploads = nil
			}
		}
		p.qmu.Unlock()
		if len(q) > 0 {
			if err := p.c.WriteMsgs(q...); err != nil {
				return err
			}
			keepalive.Reset(keepaliveEvery)
			continue
		}
		if len(ups) > 0 {
			if err := p.serveUploads(ups, &upBuf); err != nil {
				return err
			}
			keepalive.Reset(keepaliveEvery)
			continue
		}
		select {
		case <-p.qsig:
		case <-p.done:
			return nil
		case <-keepalive.C:
			if err := p.c.WriteMsg(peerwire.Message{Keepalive: true}); err != nil {
				return err
			}
			keepalive.Reset(keepaliveEvery)
		}
	}
}

// serveUploads reads the requested blocks from disk and sends them, if we still unchoke the
// peer and have the pieces. Requests for adjacent blocks (the usual case) are read with one
// pread into buf, the writer's reusable upload buffer.
func (p *peer) serveUploads(reqs []peerwire.Message, buf *[]byte) error {
	s := p.s
	s.mu.Lock()
	ok := reqs[:0]
	for _, r := range reqs {
		if (!p.amChoking || p.fastOut[int(r.Index)]) && s.picker.Have(int(r.Index)) {
			ok = append(ok, r)
		}
	}
	s.mu.Unlock()
	if len(ok) == 0 {
		return nil
	}
	need := 0
	for _, r := range ok {
		need += int(r.Length)
	}
	if cap(*buf) < need {
		*buf = make([]byte, max(need, uploadBatch*blockSize))
	}
	b := (*buf)[:need]
	out := make([]peerwire.Message, 0, len(ok))
	pos := 0
	for i := 0; i < len(ok); {
		// Extend a run of requests that are contiguous in the torrent's byte stream.
		start := int64(ok[i].Index)*s.layout.PieceLength + int64(ok[i].Begin)
		end, j := start+int64(ok[i].Length), i+1
		for j < len(ok) && int64(ok[j].Index)*s.layout.PieceLength+int64(ok[j].Begin) == end {
			end += int64(ok[j].Length)
			j++
		}
		run := b[pos : pos+int(end-start)]
		if err := s.store.ReadAt(run, start); err != nil {
			s.log.Warn("reading blocks for upload", "err", err)
			i = j
			continue
		}
		for _, r := range ok[i:j] {
			out = append(out, peerwire.Message{ID: peerwire.Piece, Index: r.Index, Begin: r.Begin, Block: b[pos : pos+int(r.Length)]})
			pos += int(r.Length)
		}
		i = j
	}
	total := 0
	for _, m := range out {
		if s.upLimit != nil {
			if err := s.upLimit.WaitN(p.ctx, len(m.Block)); err != nil {
				return err
			}
		}
		total += len(m.Block)
	}
	if len(out) == 0 {
		return nil
	}
	if err := p.c.WriteMsgs(out...); err != nil {
		return err
	}
	s.mu.Lock()
	s.up += int64(total)
	p.upBytes += int64(total)
	p.lastPayload = time.Now()
	s.mu.Unlock()
	return nil
}

// reader reads and handles messages until the connection fails.
func (p *peer) reader() error {
	var lastDeadline time.Time
	grown := false
	for {
		if now := time.Now(); now.Sub(lastDeadline) > idleTimeout/8 {
			_ = p.c.SetDeadline(now.Add(idleTimeout))
			lastDeadline = now
		}
		m, err := p.c.ReadMsgInto(p.blockDst)
		if p.runErr != nil {
			return p.runErr
		}
		if err != nil {
			return err
		}
		if err := p.handle(m); err != nil {
			return err
		}
		if !grown && m.ID == peerwire.Piece && m.Block != nil {
			// It sends us blocks: a larger read buffer holds more whole blocks per read,
			// so they reach the disk in longer runs.
			p.c.GrowReadBuffer(blockReadBuffer)
			grown = true
		}
		if !p.c.MsgBuffered() {
			// About to wait for the network: hold no blocks (and no shared run buffer) back
			// meanwhile, however long the peer takes.
			if err := p.flushRun(); err != nil {
				return err
			}
		}
	}
}

// handle processes one message from the peer.
func (p *peer) handle(m peerwire.Message) error {
	s := p.s
	if m.Keepalive {
		return nil
	}
	n := s.layout.NumPieces()
	switch m.ID {
	case peerwire.Choke:
		// Each choke and unchoke costs a pass over our requests and a pick under the swarm's
		// lock: a repeat is a no-op, and a peer flipping faster than any choker would is
		// dropped.
		s.mu.Lock()
		if p.peerChoking {
			s.mu.Unlock()
			return nil
		}
		if !p.flips.Allow() {
			s.mu.Unlock()
			return fmt.Errorf("%w: choking us too often", errProtocol)
		}
		p.peerChoking = true
		// Without the fast extension a choke discards our requests; with it the peer
		// rejects each, but we do not rely on that.
		for k := range p.outstanding {
			if !p.allowedFast[int(k.piece)] {
				s.dropRequestLocked(p, k)
			}
		}
		s.mu.Unlock()
	case peerwire.Unchoke:
		s.mu.Lock()
		if p.peerChoking {
			p.peerChoking = false
			s.fillLocked(p)
		}
		s.mu.Unlock()
	case peerwire.Interested:
		s.mu.Lock()
		p.peerInterested = true
		s.unchokeIfFreeLocked(p)
		s.mu.Unlock()
	case peerwire.NotInterested:
		s.mu.Lock()
		p.peerInterested = false
		s.mu.Unlock()
	case peerwire.Have:
		if int64(m.Index) >= int64(n) {
			return fmt.Errorf("%w: have %d of %d pieces", errProtocol, m.Index, n)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		i := int(m.Index)
		if !s.peerHasLocked(p, i) {
			// Already known: nothing changes, and a flood of these must cost nothing.
			if p.staleHave++; p.staleHave > maxStaleHave {
				return fmt.Errorf("%w: %d haves of pieces it had announced", errProtocol, p.staleHave)
			}
			return nil
		}
		if s.picker.Wanted(i) && !s.picker.Have(i) {
			return s.afterHasLocked(p) // a piece we want: interest and requests
		}
		if s.picker.Missing() == 0 && p.hasCount == n {
			return errBothComplete
		}
		return nil
	case peerwire.Bitfield:
		bf, err := picker.ParseBitfield(m.Bitfield, n)
		if err != nil {
			return fmt.Errorf("%w: %w", errProtocol, err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// aria2 sends a fresh bitfield instead of 20 or more haves, any time: a later one
		// only adds pieces. Only the bytes with new bits are looked at, so a repeated
		// bitfield costs n/8 byte compares under the lock, and repeats that add nothing are
		// a protocol error after a few.
		return s.addHasLocked(p, bf.Bytes(), false)
	case peerwire.HaveAll, peerwire.HaveNone:
		s.mu.Lock()
		defer s.mu.Unlock()
		// aria2 sends have_all once it completes, in place of its last haves; a late
		// have_none adds nothing.
		return s.addHasLocked(p, nil, m.ID == peerwire.HaveAll)
	case peerwire.Request:
		return p.onRequest(m)
	case peerwire.Cancel:
		p.qmu.Lock()
		for i, u := range p.uploads {
			if u.Index == m.Index && u.Begin == m.Begin && u.Length == m.Length {
				p.uploads = append(p.uploads[:i], p.uploads[i+1:]...)
				break
			}
		}
		p.qmu.Unlock()
	case peerwire.Piece:
		return p.onPiece(m)
	case peerwire.Reject:
		s.mu.Lock()
		k := blockKey{m.Index, m.Begin}
		if _, ok := p.outstanding[k]; ok {
			s.dropRequestLocked(p, k)
			// Each reject costs a pick (a pass over every piece, under the lock): a peer
			// that rejects far more than it serves is not worth that.
			if p.rejects++; p.rejects > maxRejects {
				s.mu.Unlock()
				return fmt.Errorf("%w: %d requests rejected since its last block", errProtocol, p.rejects)
			}
			if !p.peerChoking && int(m.Index) < n {
				// A rejected request while unchoked: the peer will not serve that piece,
				// so stop treating it as one it has and let others fetch it.
				s.releasePieceLocked(p, int(m.Index))
				s.peerLacksLocked(p, int(m.Index))
			}
			s.fillLocked(p)
		}
		s.mu.Unlock()
	case peerwire.AllowedFast:
		if int64(m.Index) < int64(n) {
			s.mu.Lock()
			if len(p.allowedFast) < maxAllowedFast && !p.allowedFast[int(m.Index)] {
				p.allowedFast[int(m.Index)] = true
				s.fillLocked(p)
			}
			s.mu.Unlock()
		}
	case peerwire.Extended:
		return p.onExtended(m)
	case peerwire.HashRequest:
		return p.onHashRequest(m)
	case peerwire.Hashes:
		return p.onHashes(m)
	case peerwire.HashReject:
		return p.onHashReject(m)
	}
	// Port, Suggest and unknown messages are ignored.
	return nil
}

// onRequest queues an upload, or rejects it (BEP 6) when we cannot serve it.
func (p *peer) onRequest(m peerwire.Message) error {
	s := p.s
	idx := int(m.Index)
	if idx >= s.layout.NumPieces() || m.Length == 0 || m.Length > maxBlockRequest ||
		int64(m.Begin)+int64(m.Length) > s.layout.PieceSize(idx) {
		return fmt.Errorf("%w: request %d+%d of piece %d", errProtocol, m.Begin, m.Length, m.Index)
	}
	s.mu.Lock()
	ok := (!p.amChoking || p.fastOut[idx]) && s.picker.Have(idx)
	s.mu.Unlock()
	p.qmu.Lock()
	if ok && len(p.uploads) < maxUploadQueue {
		p.uploads = append(p.uploads, m)
		p.qmu.Unlock()
		p.signal()
		return nil
	}
	p.qmu.Unlock()
	if p.fast {
		p.enqueue(peerwire.Message{ID: peerwire.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length})
	}
	return nil
}

// onPiece stores a block that matches one of our outstanding requests.
func (p *peer) onPiece(m peerwire.Message) error {
	s := p.s
	k := blockKey{m.Index, m.Begin}
	skipped := m.Block == nil && m.Length > 0 // refused by blockDst: not requested
	s.mu.Lock()
	r, ok := p.outstanding[k]
	if ok && skipped && r.length != m.Length {
		s.mu.Unlock()
		return fmt.Errorf("%w: block of %d bytes for a request of %d", errProtocol, m.Length, r.length)
	}
	if !ok || skipped {
		// Not requested (or cancelled, or choked away): never written. A skipped block may
		// have been requested since blockDst looked, but these bytes predate that request.
		p.wasted += int64(len(m.Block)) + int64(m.Length)
		wasted := p.wasted
		s.mu.Unlock()
		if wasted > maxWasted {
			return fmt.Errorf("%w: %d bytes of unrequested blocks", errProtocol, wasted)
		}
		return nil
	}
	if int(r.length) != len(m.Block) {
		s.mu.Unlock()
		return fmt.Errorf("%w: block of %d bytes for a request of %d", errProtocol, len(m.Block), r.length)
	}
	s.dropRequestLocked(p, k)
	p.lastBlock = time.Now()
	p.lastPayload = p.lastBlock
	p.rejects = 0
	p.blockArrivedLocked(p.lastBlock.Sub(r.at))
	idx, b := int(m.Index), int(m.Begin/blockSize)
	ps := s.pieces[idx]
	if ps == nil || ps.claimed[b] || ps.verifying || s.picker.Have(idx) {
		// End game: another peer delivered this block first.
		s.refillLocked(p)
		s.mu.Unlock()
		return nil
	}
	ps.claimed[b] = true
	ps.nclaimed++
	if ps.reqs[b] == 0 {
		ps.unrequested--
	}
	// Cancel the duplicates other peers still owe us.
	for q := range ps.peers {
		if q == p {
			continue
		}
		if _, dup := q.outstanding[k]; dup {
			s.dropRequestLocked(q, k)
			q.enqueue(peerwire.Message{ID: peerwire.Cancel, Index: m.Index, Begin: m.Begin, Length: r.length})
		}
	}
	ps.contrib[p.addr.Addr()] = true
	if s.v2 != nil {
		if ps.from == nil {
			ps.from = make([]netip.Addr, len(ps.claimed))
		}
		ps.from[b] = p.addr.Addr() // blamed alone if this block proves bad
	}
	s.down += int64(len(m.Block))
	p.downBytes += int64(len(m.Block))
	s.refillLocked(p)
	s.mu.Unlock()

	if s.downLimit != nil {
		if err := s.downLimit.WaitN(p.ctx, len(m.Block)); err != nil {
			return err
		}
	}
	if p.commitBlock(ps, m.Index, m.Begin, m.Block) {
		return nil // written with the rest of its run
	}
	// A block that did not come through blockDst (pushed back by Unread): write it alone.
	if err := p.flushRun(); err != nil {
		return err
	}
	return p.submit(blockRun{piece: m.Index, begin: m.Begin, n: len(m.Block), ps: ps, blocks: 1, single: m.Block})
}

// onExtended handles BEP 10 messages: ut_metadata (answered with metadata.Serve, so peers can
// get the info dict from us) and ut_pex.
func (p *peer) onExtended(m peerwire.Message) error {
	s := p.s
	switch {
	case m.ExtID == 0: // their handshake, recorded by peerwire
		h := p.c.PeerExt()
		s.mu.Lock()
		p.pexID = h.M["ut_pex"]
		p.reqq = h.Reqq
		s.mu.Unlock()
	case int(m.ExtID) == p.c.LocalExt().M[metadata.ExtName]:
		if err := metadata.Serve(p.c, s.cfg.Info, m); err != nil {
			return fmt.Errorf("%w: ut_metadata: %w", errProtocol, err)
		}
	case int(m.ExtID) == p.ourPexID:
		s.mu.Lock()
		tooSoon := !p.lastPexIn.IsZero() && time.Since(p.lastPexIn) < pexMinInterval
		p.lastPexIn = time.Now()
		s.mu.Unlock()
		if tooSoon {
			return nil
		}
		msg, err := pex.Decode(m.Payload)
		if err != nil {
			s.log.Debug("bad ut_pex message", "peer", p.addr, "err", err)
			return nil
		}
		for i, a := range msg.Added {
			if i >= pexMaxAdd {
				break
			}
			s.AddPeer(a)
		}
	}
	return nil
}

// maxStaleHas is how many bitfield, have_all or have_none messages adding no piece a peer may
// send after its first before it is dropped.
const maxStaleHas = 8

// blockReadBuffer is the read buffer of a connection that sends us blocks (peerwire's default
// of 64 KiB holds fewer than four).
const blockReadBuffer = 256 << 10

// maxRejects is how many of our requests a peer may reject in a row (no block between) before
// it is dropped: twice the largest pipeline, so a peer that rejects what exceeds its queue is
// fine.
const maxRejects = 2 * maxOutstanding

// maxStaleHave is how many have messages for pieces it had already announced a peer may send.
const maxStaleHave = 64

// Choke flips: a burst of chokeFlipBurst, then one per chokeFlipEvery (rechokers run every
// 10 s or so).
const (
	chokeFlipBurst = 20
	chokeFlipEvery = 2 * time.Second
)

// addHasLocked records the pieces of a bitfield (wire form), or every piece when all is set,
// as p's. A have_all after p has everything costs nothing.
func (s *Swarm) addHasLocked(p *peer, bf []byte, all bool) error {
	first := !p.gotHas
	p.gotHas = true
	have := p.has.Bytes()
	added := 0
	if all && p.hasCount < p.has.Len() {
		for i := range p.has.Len() {
			if !p.has.Has(i) {
				s.peerHasLocked(p, i)
				added++
			}
		}
	}
	for j, b := range bf {
		nb := b &^ have[j]
		for nb != 0 {
			bit := bits.LeadingZeros8(nb)
			nb &^= 0x80 >> bit
			s.peerHasLocked(p, j*8+bit)
			added++
		}
	}
	if added == 0 && !first {
		if p.staleHas++; p.staleHas > maxStaleHas {
			return fmt.Errorf("%w: %d bitfields that add no piece", errProtocol, p.staleHas)
		}
	}
	return s.afterHasLocked(p)
}

// peerHasLocked records that p has piece i and reports whether that is news.
func (s *Swarm) peerHasLocked(p *peer, i int) bool {
	if p.has.Has(i) {
		return false
	}
	p.has.Set(i)
	p.hasCount++
	s.picker.PeerHas(i)
	if s.picker.Wanted(i) && !s.picker.Have(i) {
		p.useful++
	}
	return true
}

// peerLacksLocked forgets that p has piece i.
func (s *Swarm) peerLacksLocked(p *peer, i int) {
	if !p.has.Has(i) {
		return
	}
	p.has.Clear(i)
	p.hasCount--
	s.picker.PeerLost(i)
	if s.picker.Wanted(i) && !s.picker.Have(i) {
		p.useful--
		if p.useful == 0 && p.amInterested {
			p.amInterested = false
			p.enqueue(peerwire.Message{ID: peerwire.NotInterested})
		}
	}
}

// afterHasLocked updates our interest after p announced pieces and requests more. It returns
// errBothComplete when p has every piece and we need none: the connection is useless.
func (s *Swarm) afterHasLocked(p *peer) error {
	if p.useful > 0 && !p.amInterested {
		p.amInterested = true
		p.enqueue(peerwire.Message{ID: peerwire.Interested})
	}
	if s.picker.Missing() == 0 && p.hasCount == s.layout.NumPieces() {
		return errBothComplete
	}
	s.fillLocked(p)
	return nil
}

// dropRequestLocked forgets our outstanding request k to p.
func (s *Swarm) dropRequestLocked(p *peer, k blockKey) {
	if _, ok := p.outstanding[k]; !ok {
		return
	}
	delete(p.outstanding, k)
	if ps := s.pieces[int(k.piece)]; ps != nil {
		b := k.begin / blockSize
		ps.reqs[b]--
		if ps.reqs[b] == 0 && !ps.claimed[b] {
			ps.unrequested++
		}
	}
}

// releasePieceLocked stops p downloading piece i.
func (s *Swarm) releasePieceLocked(p *peer, i int) {
	for j, x := range p.pieces {
		if x != i {
			continue
		}
		p.pieces = append(p.pieces[:j], p.pieces[j+1:]...)
		for k := range p.outstanding {
			if int(k.piece) == i {
				s.dropRequestLocked(p, k)
			}
		}
		ps := s.pieces[i]
		if ps != nil {
			delete(ps.peers, p)
		}
		s.picker.Stop(i, ps != nil && ps.nclaimed > 0)
		return
	}
}

// leaving reports whether p is removed, or about to be closed for a ban: it is asked nothing
// more (no requests, no hash requests), so work meant for others never goes to it.
func (p *peer) leaving() bool { return p.removed || p.banned }

// fillLocked sends p as many requests as its pipeline allows.
func (s *Swarm) fillLocked(p *peer) {
	if p.leaving() || !p.amInterested || s.stopped {
		return
	}
	if p.peerChoking && (len(p.allowedFast) == 0 || s.cfg.Sequential) {
		// Sequential downloads wait for the unchoke rather than fetch allowed-fast pieces
		// out of order.
		return
	}
	var batch []peerwire.Message
	var dp *dupPolicy // made when end game is first looked at (endgame.go)
	for len(p.outstanding) < min(p.maxOut, p.pipelineCap()) {
		idx, b, ok := s.nextBlockLocked(p, &dp)
		if !ok {
			break
		}
		ps := s.pieces[idx]
		begin := uint32(b * blockSize)
		length := uint32(min(int64(blockSize), s.layout.PieceSize(idx)-int64(begin)))
		if len(p.outstanding) == 0 {
			p.lastBlock = time.Now() // the snub clock starts with the first request
		}
		p.outstanding[blockKey{uint32(idx), begin}] = request{length: length, at: time.Now()}
		if ps.reqs[b] == 0 {
			ps.unrequested--
		}
		ps.reqs[b]++
		batch = append(batch, peerwire.Message{ID: peerwire.Request, Index: uint32(idx), Begin: begin, Length: length})
		if s.onRequest != nil {
			s.onRequest(idx)
		}
	}
	p.enqueue(batch...)
}

// refillLocked tops up p's requests after a block arrived, but only once a batch of slots is
// free: requests then go out several per write instead of one write per received block.
func (s *Swarm) refillLocked(p *peer) {
	if p.maxOut-len(p.outstanding) >= max(1, min(refillBatch, p.maxOut/4)) {
		s.fillLocked(p)
	}
}

// nextBlockLocked returns a block for p to request: from the pieces it is downloading, else
// from a newly picked piece.
func (s *Swarm) nextBlockLocked(p *peer, dp **dupPolicy) (piece, block int, ok bool) {
	policy := func() *dupPolicy {
		if *dp == nil {
			*dp = s.dupPolicyLocked(p)
		}
		return *dp
	}
	for {
		for _, i := range p.pieces {
			if p.peerChoking && !p.allowedFast[i] {
				continue
			}
			ps := s.pieces[i]
			if ps == nil || ps.verifying || ps.nclaimed == len(ps.claimed) {
				continue
			}
			if ps.unrequested > 0 {
				for b, c := range ps.claimed {
					if !c && ps.reqs[b] == 0 {
						return i, b, true
					}
				}
			}
			if len(ps.peers) < 2 {
				continue // not shared: every unclaimed block is already requested from p
			}
			// End game: duplicate a block another peer owes us, the last first (the owner
			// asked for them in order, so it sends the last ones last).
			if b, ok := policy().block(i, ps); ok {
				return i, b, true
			}
		}
		if s.onPick != nil {
			s.onPick()
		}
		if p.peerChoking && len(p.pieces) >= s.chokedShareLocked(p) {
			return 0, 0, false
		}
		open := func(i int) bool {
			if !p.has.Has(i) || p.peerChoking && !p.allowedFast[i] {
				return false
			}
			if ps := s.pieces[i]; ps != nil && (ps.verifying || ps.peers[p]) {
				return false
			}
			return s.pickableLocked(i)
		}
		i, endgame, ok := s.picker.Pick(open)
		if ok && endgame && !p.peerChoking {
			i, ok = s.endgamePieceLocked(i, open, policy())
		}
		if !ok || endgame && p.peerChoking {
			// While it chokes us only its allowed-fast pieces are open, and a piece others
			// are fetching is no end game: peers tend to allow the same few pieces (BEP 6
			// derives them from our address), so we would fetch those from all of them.
			return 0, 0, false
		}
		ps := s.pieces[i]
		if ps == nil {
			nb := int((s.layout.PieceSize(i) + blockSize - 1) / blockSize)
			ps = &pieceState{claimed: make([]bool, nb), reqs: make([]int, nb), unrequested: nb,
				peers: make(map[*peer]bool), contrib: make(map[netip.Addr]bool)}
			s.pieces[i] = ps
		}
		ps.peers[p] = true
		p.pieces = append(p.pieces, i)
		s.picker.Start(i)
	}
}

// removePeer forgets a disconnected peer: its pieces return to the picker, partial ones first.
func (s *Swarm) removePeer(p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.removed = true
	delete(s.peers, p)
	if p.evicting {
		s.evicting--
	}
	delete(s.known, p.addr)
	s.backoffLocked(p.listenAddr(), p.downBytes == 0 && p.upBytes == 0, time.Now())
	for i := range s.layout.NumPieces() {
		if p.has.Has(i) {
			s.picker.PeerLost(i)
		}
	}
	for len(p.pieces) > 0 {
		s.releasePieceLocked(p, p.pieces[0])
	}
	s.forgetHashesLocked(p, time.Time{})
	s.dropLeavesLocked(p, merkle.Hash{}, nil)
	s.askAllHashesLocked()
	for q := range s.peers {
		s.fillLocked(q)
	}
	s.nudge()
}

func (s *Swarm) setFatal(err error) {
	s.mu.Lock()
	if s.fatal == nil {
		s.fatal = err
	}
	s.mu.Unlock()
	s.nudge()
}
