package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/torrenturl"
	"github.com/magnetget/magnetget/torrentfile"
)

const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultRequestTimeout   = 5 * time.Second
	// maxBatch is how many piece requests one peer has in flight (256 KiB): enough to keep a fast
	// peer busy; fewer are sent when the pieces left are spread over several idle peers.
	maxBatch = 16
	// maxRejects drops a peer after this many rejected requests.
	maxRejects = 3
	// lastErrs is how many peer errors ErrNoPeers carries.
	lastErrs = 3
	// Messages a peer sends during the fetch that are not for us (bitfield, have, ...) are kept
	// for the swarm up to these bounds; a peer that sends more is not handed on.
	// (1 MiB holds the bitfield of an 8-million-piece torrent.)
	maxStashMsgs  = 4096
	maxStashBytes = 1 << 20
)

func (o Options) withDefaults() Options {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Dials <= 0 {
		o.Dials = DefaultDials
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 2 * o.Dials
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = defaultRequestTimeout
	}
	if o.HedgeDelay <= 0 {
		o.HedgeDelay = o.RequestTimeout / 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Fetch downloads the info dict for ih from the peers arriving on peers. It returns when a
// verified copy is assembled (Result), when ctx ends (ctx.Err()), or when peers is closed and
// every peer failed (an error wrapping ErrNoPeers and the last peer errors). No goroutine it
// started outlives it.
//
// A peer that connected to us (Options.Incoming) and does not offer ut_metadata (or gave no
// metadata_size: a leecher that has no metadata either) is not asked for anything but kept for
// the swarm, which may get pieces from it or give it some: it is in Result.Conns, at most
// MaxConns of them; it does not keep Fetch alive.
//
// A peer is dropped when it cannot be reached, does not offer ut_metadata, announces a
// metadata_size above MaxSize, breaks the protocol, times out, rejects repeatedly, or alone sent a
// copy that fails the hash. Peers announcing a size other than the one being assembled wait:
// they get their turn if that size fails. Peers that sent pieces of a copy assembled from several
// peers that failed the hash are then tried one at a time.
func Fetch(ctx context.Context, ih [20]byte, peers <-chan netip.AddrPort, o Options) (Result, error) {
	o = o.withDefaults()
	wctx, cancel := context.WithCancel(ctx)
	f := &fetcher{
		ih:      ih,
		v2:      o.v2(),
		o:       o,
		log:     o.Logger.With("infohash", fmt.Sprintf("%x", ih)),
		wctx:    wctx,
		events:  make(chan event, o.MaxConns),
		workers: map[*worker]struct{}{},
		seen:    map[netip.AddrPort]bool{},
		spares:  map[*worker]struct{}{},
	}
	for _, u := range o.Sources[:min(len(o.Sources), maxSources)] {
		f.sources++
		f.wg.Go(func() { f.fetchSource(wctx, u) })
	}
	res, err := f.loop(ctx, peers)
	cancel()
	f.wg.Wait()
	if err != nil {
		for w := range f.workers {
			w.close()
		}
		for w := range f.spares {
			w.close()
		}
		return Result{}, err
	}
	res.Conns = f.keep(len(res.Info))
	f.log.Debug("metadata fetched", "size", len(res.Info), "peers_tried", f.tried, "conns", len(res.Conns), "without_ut_metadata", len(f.spares))
	return res, nil
}

type workerState int

const (
	stConnecting workerState = iota // dial, BEP 3 and BEP 10 handshakes
	stIdle                          // connected, waiting for work
	stBusy                          // a batch of requests in flight
)

// worker is one peer. The coordinator (Fetch's goroutine) owns every field except those marked
// as the worker goroutine's.
type worker struct {
	addr    netip.AddrPort
	in      *peerwire.Conn // a connection the peer opened (Options.Incoming); nil: dial addr
	cancel  context.CancelFunc
	assign  chan []int // capacity 1: at most one batch in flight
	state   workerState
	conn    *peerwire.Conn
	size    int
	suspect bool // contributed to a multi-peer copy that failed the hash
	rejects int
	batch   []int
	batchOf *attempt
	batchAt time.Time // when the batch was handed out

	// Written by the worker goroutine, read by the coordinator only after wg.Wait.
	broken bool // the connection is closed or mid-message: never hand it on
}

func (w *worker) close() {
	w.cancel()
	if w.conn != nil {
		w.conn.Close()
	}
}

type evKind int

const (
	evReady  evKind = iota // connected; conn and size set
	evPieces               // batch done; pieces and rejected set
	evFail                 // worker gave up; err set, pieces may hold what arrived first
	evSpare                // an incoming peer without ut_metadata, kept for the swarm; conn and err set
	evSource               // a .torrent from Options.Sources; source and err set (w is nil)
)

type event struct {
	w        *worker
	kind     evKind
	conn     *peerwire.Conn
	size     int
	pieces   []piece
	rejected []int
	err      error
	source   *torrentfile.Torrent
}

type piece struct {
	index int
	data  []byte
}

// attempt is one copy being assembled for a given size.
type attempt struct {
	size         int
	buf          []byte
	have         []bool
	nHave        int
	queue        []int   // pieces not requested from anyone
	solo         *worker // non-nil: only this peer serves the attempt
	contributors map[*worker]bool
	hedged       map[int]bool // pieces also requested from a second peer
}

type fetcher struct {
	ih     [20]byte
	v2     *[32]byte // Options.InfoHashV2 when set
	hashes Hashes    // of the verified copy
	o      Options
	log    *slog.Logger
	wctx   context.Context // workers' parent; cancelled when Fetch ends
	wg     sync.WaitGroup
	events chan event

	// Owned by the coordinator.
	workers  map[*worker]struct{} // alive: connecting, idle or busy
	spares   map[*worker]struct{} // incoming peers without ut_metadata, kept for the swarm; at most MaxConns
	dialing  int
	seen     map[netip.AddrPort]bool
	tried    int
	lastErrs []error
	att      *attempt
	sources  int // Options.Sources still being fetched
}

func (f *fetcher) loop(ctx context.Context, peers <-chan netip.AddrPort) (Result, error) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	incoming := f.o.Incoming
	for {
		var wake <-chan time.Time
		if at, ok := f.nextHedge(); ok {
			timer.Reset(time.Until(at))
			wake = timer.C
		}
		if peers == nil && len(f.workers) == 0 && f.sources == 0 {
			return Result{}, f.noPeers()
		}
		var in <-chan netip.AddrPort
		var inc <-chan *peerwire.Conn
		if len(f.workers) < f.o.MaxConns {
			inc = incoming
			if f.dialing < f.o.Dials {
				in = peers
			}
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case a, ok := <-in:
			if !ok {
				peers = nil
				continue
			}
			a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
			if f.seen[a] || !a.IsValid() || a.Port() == 0 {
				continue
			}
			f.seen[a] = true
			f.start(a, nil)
		case c, ok := <-inc:
			if !ok {
				incoming = nil
				continue
			}
			f.start(c.RemoteAddr(), c)
		case e := <-f.events:
			if e.kind == evSource {
				if info := f.fromSource(e); info != nil {
					return Result{Info: info, Hashes: f.hashes, Torrent: e.source}, nil
				}
				continue
			}
			if info := f.handle(e); info != nil {
				return Result{Info: info, Hashes: f.hashes}, nil
			}
		case <-wake:
		}
		f.schedule()
	}
}

func (f *fetcher) noPeers() error {
	if len(f.lastErrs) == 0 {
		return fmt.Errorf("%w (%d peers tried)", ErrNoPeers, f.tried)
	}
	return fmt.Errorf("%w (%d peers tried; last errors: %w)", ErrNoPeers, f.tried, joinedErr(f.lastErrs))
}

// joinedErr is errors.Join on one line.
type joinedErr []error

func (j joinedErr) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (j joinedErr) Unwrap() []error { return j }

// start runs a worker for the peer at a: dialled, or on in when it connected to us.
func (f *fetcher) start(a netip.AddrPort, in *peerwire.Conn) {
	ctx, cancel := context.WithCancel(f.wctx)
	w := &worker{addr: a, in: in, cancel: cancel, assign: make(chan []int, 1)}
	f.workers[w] = struct{}{}
	f.dialing++
	f.tried++
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.runWorker(ctx, w)
	}()
}

// drop closes a peer for good, putting its in-flight pieces back in the queue.
func (f *fetcher) drop(w *worker, err error) {
	if _, ok := f.workers[w]; !ok {
		return
	}
	if w.state == stConnecting {
		f.dialing--
	}
	delete(f.workers, w)
	w.close()
	if w.batchOf == f.att && f.att != nil {
		f.requeue(w.batch)
	}
	w.batch, w.batchOf = nil, nil
	if err != nil {
		f.log.Debug("peer dropped", "peer", w.addr, "err", err)
		f.noteErr(err)
	}
}

// noteErr keeps err among the last peer errors, for ErrNoPeers.
func (f *fetcher) noteErr(err error) {
	f.lastErrs = append(f.lastErrs, err)
	if len(f.lastErrs) > lastErrs {
		f.lastErrs = f.lastErrs[1:]
	}
}

func (f *fetcher) requeue(pieces []int) {
	for _, i := range pieces {
		if !f.att.have[i] {
			f.att.queue = append(f.att.queue, i)
		}
	}
}

// handle applies a worker's event; it returns the info dict once a copy verifies.
func (f *fetcher) handle(e event) []byte {
	w := e.w
	if _, ok := f.workers[w]; !ok {
		if e.conn != nil {
			e.conn.Close() // dropped while the event was on its way
		}
		return nil
	}
	switch e.kind {
	case evReady:
		f.dialing--
		w.state, w.conn, w.size = stIdle, e.conn, e.size
		f.log.Debug("peer ready", "peer", w.addr, "metadata_size", e.size, "client", e.conn.PeerExt().V)
		return nil
	case evSpare:
		f.dialing--
		delete(f.workers, w)
		f.noteErr(e.err)
		if len(f.spares) >= f.o.MaxConns {
			w.close()
			return nil
		}
		w.conn = e.conn
		f.spares[w] = struct{}{}
		f.log.Debug("peer without ut_metadata kept for the swarm", "peer", w.addr, "client", e.conn.PeerExt().V)
		return nil
	case evFail:
		var info []byte
		if w.batchOf == f.att {
			info = f.store(w, e.pieces)
		}
		f.drop(w, e.err)
		return info
	}
	// evPieces
	w.state = stIdle
	att := w.batchOf
	w.batch, w.batchOf = nil, nil
	if len(e.rejected) > 0 {
		if att == f.att && att != nil {
			f.requeue(e.rejected)
		}
		w.rejects++
		if w.rejects >= maxRejects {
			f.drop(w, fmt.Errorf("peer %v: %w", w.addr, ErrRejected))
		}
	}
	if att != f.att {
		return nil // results of an abandoned attempt
	}
	return f.store(w, e.pieces)
}

// store copies received pieces into the current attempt and verifies it when complete.
func (f *fetcher) store(w *worker, pieces []piece) []byte {
	att := f.att
	if att == nil || len(pieces) == 0 || w.size != att.size {
		return nil
	}
	for _, p := range pieces {
		if att.have[p.index] {
			continue
		}
		copy(att.buf[p.index*PieceSize:], p.data)
		att.have[p.index] = true
		att.nHave++
		att.contributors[w] = true
	}
	if att.nHave < len(att.have) {
		return nil
	}
	f.att = nil
	if h, err := Identify(att.buf, f.ih, f.v2); err == nil {
		f.hashes = h
		for c := range att.contributors {
			c.suspect = false
		}
		return att.buf
	}
	// Which peer lied is unknown when several contributed: make them prove themselves alone.
	f.log.Debug("assembled copy fails the hash", "size", att.size, "contributors", len(att.contributors))
	if len(att.contributors) == 1 {
		for c := range att.contributors {
			f.drop(c, fmt.Errorf("peer %v: %w", c.addr, ErrHashMismatch))
		}
	} else {
		for c := range att.contributors {
			c.suspect = true
		}
		f.lastErrs = append(f.lastErrs, fmt.Errorf("copy from %d peers: %w", len(att.contributors), ErrHashMismatch))
		if len(f.lastErrs) > lastErrs {
			f.lastErrs = f.lastErrs[1:]
		}
	}
	return nil
}

func (f *fetcher) eligible(w *worker, att *attempt) bool {
	if w.state == stConnecting || w.size != att.size {
		return false
	}
	if att.solo != nil {
		return w == att.solo
	}
	return !w.suspect
}

// schedule starts an attempt when none is running and hands batches to idle peers.
func (f *fetcher) schedule() {
	if f.att != nil {
		viable := false
		for w := range f.workers {
			if f.eligible(w, f.att) {
				viable = true
				break
			}
		}
		if !viable {
			// Nobody left who can finish this copy; others (another size, suspects) may. Keep
			// the progress when nobody can: a peer with this size may still connect.
			if next := f.newAttempt(); next != nil {
				f.att = next
			}
		}
	}
	if f.att == nil {
		f.att = f.newAttempt()
		if f.att == nil {
			return
		}
	}
	att := f.att
	var idle []*worker
	for w := range f.workers {
		if w.state == stIdle && f.eligible(w, att) {
			idle = append(idle, w)
		}
	}
	for k, w := range idle {
		if len(att.queue) == 0 {
			break
		}
		// Spread what is left over the idle peers, up to maxBatch each.
		left := len(idle) - k
		n := min(maxBatch, (len(att.queue)+left-1)/left)
		batch := append([]int(nil), att.queue[:n]...)
		att.queue = att.queue[n:]
		f.give(w, batch)
	}
	if len(att.queue) == 0 {
		f.hedge(idle)
	}
}

func (f *fetcher) give(w *worker, batch []int) {
	w.state, w.batch, w.batchOf, w.batchAt = stBusy, batch, f.att, time.Now()
	w.assign <- batch // never blocks: the worker took the previous batch before reporting
}

// hedgeDelay is how long a batch may be outstanding before its pieces are also asked of an idle
// peer, so one slow peer holding the last pieces does not cost a whole RequestTimeout.
func (f *fetcher) hedgeDelay() time.Duration { return f.o.HedgeDelay }

// slowPieces lists the pieces of w's batch still missing and not yet hedged.
func (f *fetcher) slowPieces(w *worker) []int {
	var out []int
	for _, i := range w.batch {
		if !f.att.have[i] && !f.att.hedged[i] {
			out = append(out, i)
		}
	}
	return out
}

// hedge gives the missing pieces of slow batches to idle peers as well; the first answer counts.
func (f *fetcher) hedge(idle []*worker) {
	cutoff := time.Now().Add(-f.hedgeDelay())
	for w := range f.workers {
		if len(idle) == 0 {
			return
		}
		if w.state != stBusy || w.batchOf != f.att || w.batchAt.After(cutoff) {
			continue
		}
		slow := f.slowPieces(w)
		for len(slow) > 0 && len(idle) > 0 {
			if idle[0].state != stIdle {
				idle = idle[1:]
				continue
			}
			n := min(maxBatch, len(slow))
			for _, i := range slow[:n] {
				f.att.hedged[i] = true
			}
			f.log.Debug("hedging slow pieces", "slow_peer", w.addr, "peer", idle[0].addr, "pieces", n)
			f.give(idle[0], append([]int(nil), slow[:n]...))
			slow, idle = slow[n:], idle[1:]
		}
	}
}

// nextHedge is when hedge may next have work: the earliest slow-batch deadline, if a peer is
// idle to take it.
func (f *fetcher) nextHedge() (time.Time, bool) {
	att := f.att
	if att == nil || len(att.queue) > 0 {
		return time.Time{}, false
	}
	idle := false
	for w := range f.workers {
		if w.state == stIdle && f.eligible(w, att) {
			idle = true
			break
		}
	}
	if !idle {
		return time.Time{}, false
	}
	var at time.Time
	for w := range f.workers {
		if w.state != stBusy || w.batchOf != att || len(f.slowPieces(w)) == 0 {
			continue
		}
		if t := w.batchAt.Add(f.hedgeDelay()); at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// newAttempt picks the size most unsuspected idle peers agree on, else one suspect alone.
func (f *fetcher) newAttempt() *attempt {
	count := map[int]int{}
	best, bestN := 0, 0
	var solo *worker
	for w := range f.workers {
		if w.state != stIdle {
			continue
		}
		if w.suspect {
			if solo == nil {
				solo = w
			}
			continue
		}
		count[w.size]++
		if n := count[w.size]; n > bestN || (n == bestN && w.size < best) {
			best, bestN = w.size, n
		}
	}
	if bestN == 0 {
		if solo == nil {
			return nil
		}
		best = solo.size
	} else {
		solo = nil
	}
	n := numPieces(best)
	att := &attempt{size: best, buf: make([]byte, best), have: make([]bool, n), solo: solo, contributors: map[*worker]bool{}, hedged: map[int]bool{}}
	att.queue = make([]int, n)
	for i := range att.queue {
		att.queue[i] = i
	}
	return att
}

// keep returns the connections to hand on: peers still open, not broken mid-message, that
// announced the verified size and were not left under suspicion, then the incoming peers
// without ut_metadata. The rest are closed.
func (f *fetcher) keep(size int) []*peerwire.Conn {
	var conns []*peerwire.Conn
	for w := range f.workers {
		if w.conn == nil || w.broken || w.suspect || w.size != size || w.state == stConnecting {
			w.close()
			continue
		}
		if err := w.conn.SetDeadline(time.Time{}); err != nil {
			w.close()
			continue
		}
		conns = append(conns, w.conn)
	}
	// Last: a caller that asks the peers for more (piece layers) asks those with the metadata
	// first.
	for w := range f.spares {
		if w.broken || w.conn.SetDeadline(time.Time{}) != nil {
			w.close()
			continue
		}
		conns = append(conns, w.conn)
	}
	return conns
}

// maxSources bounds the Options.Sources fetched: each is an HTTP download.
const maxSources = 8

// fetchSource downloads and parses the .torrent at u (Options.Sources) and hands it to the
// coordinator.
func (f *fetcher) fetchSource(ctx context.Context, u string) {
	e := event{kind: evSource}
	data, err := torrenturl.Get(ctx, u, 2*f.o.MaxSize+1<<20)
	if err != nil {
		e.err = fmt.Errorf("metadata: xs: %w", err) // names the URL, redacted
	} else if e.source, err = torrentfile.ParseTorrent(data); err != nil {
		e.err = fmt.Errorf("metadata: xs %s: %w", torrenturl.Redact(u), err)
	} else if n := len(e.source.Meta.InfoBytes); n > f.o.MaxSize {
		e.source, e.err = nil, fmt.Errorf("metadata: xs %s: %w: info dict of %d bytes, at most %d", torrenturl.Redact(u), ErrTooLarge, n, f.o.MaxSize)
	}
	f.send(ctx, e)
}

// fromSource takes a .torrent from Options.Sources: its info dict when it is the one asked for,
// nil otherwise.
func (f *fetcher) fromSource(e event) []byte {
	f.sources--
	if e.err == nil {
		info := e.source.Meta.InfoBytes
		h, err := Identify(info, f.ih, f.v2)
		if err == nil {
			f.hashes = h
			f.log.Debug("metadata from an exact source (xs)", "size", len(info))
			return info
		}
		e.err = fmt.Errorf("metadata: xs: the .torrent is another torrent's: %w", err)
	}
	f.log.Info("exact source (xs) gave no metadata", "err", e.err)
	f.noteErr(e.err)
	return nil
}

// send delivers an event unless the fetch is over.
func (f *fetcher) send(ctx context.Context, e event) bool {
	select {
	case f.events <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// runWorker is one peer's goroutine: connect, learn its metadata size, then serve batches until
// ctx ends. It owns all reads on the connection.
func (f *fetcher) runWorker(ctx context.Context, w *worker) {
	// EncryptedRetry: peers set to require encryption hang up on a plaintext handshake.
	dopt := peerwire.Options{PeerID: f.o.PeerID, ExtHandshake: LocalExtHandshake(0), Timeout: f.o.HandshakeTimeout,
		EncryptedRetry: true, LocalAddr: f.o.LocalAddr, UTP: f.o.UTP, V2: f.v2 != nil && [20]byte(f.v2[:20]) == f.ih}
	c, err := w.in, error(nil)
	if c == nil {
		c, err = peerwire.Dial(ctx, w.addr, f.ih, dopt)
	}
	if err != nil {
		w.broken = true
		f.send(ctx, event{w: w, kind: evFail, err: err})
		return
	}
	p := &peerConn{c: c, o: f.o, addr: w.addr}
	p.deadlines(ctx)
	handedOn := false
	defer func() {
		p.stopDeadlines()
		if !handedOn || w.broken {
			w.broken = true
			c.Close()
		}
	}()
	size, err := p.awaitExt(ctx)
	if err != nil && w.in != nil && errors.Is(err, ErrNoMetadataExt) && !p.overflow {
		// It connected to us for this torrent: it may have pieces, or want ours. Keep it,
		// untouched, for the swarm.
		if !f.send(ctx, event{w: w, kind: evSpare, conn: c, err: err}) {
			return
		}
		handedOn = true
		<-ctx.Done()
		c.Unread(p.stash...)
		return
	}
	if err != nil {
		w.broken = true
		f.send(ctx, event{w: w, kind: evFail, err: err})
		return
	}
	if !f.send(ctx, event{w: w, kind: evReady, conn: c, size: size}) {
		return
	}
	handedOn = true
	for {
		select {
		case <-ctx.Done():
			// Idle: the stream is at a message boundary, so the swarm can go on reading it.
			if p.overflow {
				w.broken = true
			}
			c.Unread(p.stash...)
			return
		case batch := <-w.assign:
			pieces, rejected, err := p.fetchBatch(ctx, size, batch)
			if err != nil {
				w.broken = true
				f.send(ctx, event{w: w, kind: evFail, pieces: pieces, err: err})
				return
			}
			if !f.send(ctx, event{w: w, kind: evPieces, pieces: pieces, rejected: rejected}) {
				w.broken = true // the coordinator never saw this batch; do not hand a half-used peer on
				return
			}
		}
	}
}

// peerConn is the worker's view of its connection.
type peerConn struct {
	c      *peerwire.Conn
	o      Options
	addr   netip.AddrPort
	peerID byte // the peer's ut_metadata id

	dmu      sync.Mutex // guards cancelled; serialises deadline changes with the cancel hook
	canceled bool
	stop     func() bool
	hookDone chan struct{}

	stash      []peerwire.Message
	stashBytes int
	overflow   bool
}

// deadlines makes cancellation of ctx unblock any read or write on the connection, and keeps later
// setDeadline calls from undoing that.
func (p *peerConn) deadlines(ctx context.Context) {
	p.hookDone = make(chan struct{})
	p.stop = context.AfterFunc(ctx, func() {
		defer close(p.hookDone)
		p.dmu.Lock()
		defer p.dmu.Unlock()
		p.canceled = true
		p.c.SetDeadline(time.Unix(1, 0))
	})
}

// stopDeadlines waits for the cancel hook if it started, so it cannot touch the connection after
// Fetch hands it on (the hook itself does not outlive Fetch either).
func (p *peerConn) stopDeadlines() {
	if !p.stop() {
		<-p.hookDone
	}
}

func (p *peerConn) setDeadline(t time.Time) {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if !p.canceled {
		p.c.SetDeadline(t)
	}
}

func (p *peerConn) errorf(format string, args ...any) error {
	return fmt.Errorf("peer %v: "+format, append([]any{p.addr}, args...)...)
}

// read reads the next message, answering ut_metadata requests with a reject and keeping other
// messages for the swarm. It returns only extended handshakes and ut_metadata messages.
func (p *peerConn) read(ctx context.Context) (peerwire.Message, error) {
	for {
		m, err := p.c.ReadMsg()
		if err != nil {
			if ctx.Err() != nil {
				return m, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return m, p.errorf("%w", ErrTimeout)
			}
			return m, p.errorf("%w", err)
		}
		switch {
		case m.Keepalive:
			continue
		case m.ID == peerwire.Extended && m.ExtID == 0:
			return m, nil
		case m.ID == peerwire.Extended && m.ExtID == LocalExtID:
			return m, nil
		}
		p.keepForSwarm(m)
	}
}

func (p *peerConn) keepForSwarm(m peerwire.Message) {
	if p.overflow {
		return
	}
	p.stashBytes += len(m.Bitfield) + len(m.Block) + len(m.Payload)
	if len(p.stash) >= maxStashMsgs || p.stashBytes > maxStashBytes {
		p.overflow, p.stash = true, nil
		return
	}
	p.stash = append(p.stash, m)
}

// awaitExt reads until the peer's BEP 10 handshake and checks what it says about ut_metadata.
func (p *peerConn) awaitExt(ctx context.Context) (int, error) {
	if !p.c.SupportsExtensions() {
		return 0, p.errorf("%w: no extension protocol bit", ErrNoMetadataExt)
	}
	p.setDeadline(time.Now().Add(p.o.HandshakeTimeout))
	for {
		m, err := p.read(ctx)
		if err != nil {
			return 0, err
		}
		if m.ExtID == 0 {
			break
		}
		// A ut_metadata message before their handshake: we cannot even answer it.
	}
	ext := p.c.PeerExt()
	id := ext.M[ExtName]
	switch {
	case id <= 0:
		return 0, p.errorf("%w (client %q)", ErrNoMetadataExt, ext.V)
	case ext.MetadataSize <= 0:
		return 0, p.errorf("%w: no metadata_size", ErrNoMetadataExt)
	case ext.MetadataSize > p.o.MaxSize:
		return 0, p.errorf("%w: %d bytes, limit %d", ErrTooLarge, ext.MetadataSize, p.o.MaxSize)
	}
	p.peerID = byte(id)
	return ext.MetadataSize, nil
}

// fetchBatch requests the pieces in batch and reads until each is answered. A reject is returned
// in rejected; silence past RequestTimeout, a bad message or an unrequested piece is an error
// (pieces that arrived before it are still returned).
func (p *peerConn) fetchBatch(ctx context.Context, size int, batch []int) (pieces []piece, rejected []int, err error) {
	reqs := make([]peerwire.Message, len(batch))
	want := map[int]bool{}
	for i, idx := range batch {
		reqs[i] = peerwire.Message{ID: peerwire.Extended, ExtID: p.peerID, Payload: appendUTMsg(nil, utMsg{Type: msgRequest, Piece: idx})}
		want[idx] = true
	}
	p.setDeadline(time.Now().Add(p.o.RequestTimeout))
	if err := p.c.WriteMsgs(reqs...); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, p.errorf("%w", err)
	}
	for len(want) > 0 {
		m, err := p.read(ctx)
		if err != nil {
			return pieces, nil, err
		}
		if m.ExtID == 0 {
			continue // a repeated extended handshake: PeerExt is updated, nothing to do
		}
		um, err := parseUTMsg(m.Payload)
		if err != nil {
			return pieces, nil, p.errorf("%w", err)
		}
		switch um.Type {
		case msgRequest:
			// They want metadata from us; we have none yet.
			if err := Serve(p.c, nil, m); err != nil {
				return pieces, nil, p.errorf("%w", err)
			}
			continue
		case msgData, msgReject:
		default:
			continue // BEP 9: ignore unknown msg_types
		}
		if !want[um.Piece] {
			return pieces, nil, p.errorf("%w: unrequested piece %d", ErrBadMessage, um.Piece)
		}
		delete(want, um.Piece)
		if um.Type == msgReject {
			rejected = append(rejected, um.Piece)
			continue
		}
		if um.TotalSize != size {
			return pieces, nil, p.errorf("%w: total_size %d, handshake said %d", ErrBadMessage, um.TotalSize, size)
		}
		if len(um.Data) != pieceLen(size, um.Piece) {
			return pieces, nil, p.errorf("%w: piece %d has %d bytes, want %d", ErrBadMessage, um.Piece, len(um.Data), pieceLen(size, um.Piece))
		}
		pieces = append(pieces, piece{index: um.Piece, data: um.Data})
		p.setDeadline(time.Now().Add(p.o.RequestTimeout))
	}
	return pieces, rejected, nil
}
