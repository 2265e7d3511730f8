// Package peersource is one torrent's supply of peers, from the metadata fetch to the end of the
// download or seed: one DHT lookup stream per swarm hash (re-run on a schedule with back-off,
// announcing our port when we listen), the magnet's x.pe peers, one tracker session per swarm
// hash (started once, completed once, stopped at the end), the addresses the swarm learns by PEX,
// and the peers that connect to us before the swarm runs (AcceptEarly). A hybrid (v1+v2)
// torrent has two swarm hashes (the v1 infohash and the truncated v2 one): one Source serves
// both, so an address found under both is still one address. Each address is dialled once per
// torrent: a second dial, of a peer that dropped or could not be reached, waits a back-off that
// doubles with every dial.
//
// The source hands addresses out in two phases. While the metadata is fetched, Peers streams
// them (every address taken from the stream counts as a dial: metadata.Fetch dials what it
// reads). Then Attach hands the rest, and everything found later, to the swarm, whose dialer
// asks AllowDial before each dial. The connections that fetched the metadata go to the swarm
// directly, so their peers are not dialled again.
package peersource

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/internal/trackers"
)

// DHT is what the source needs of a DHT node or dht.Set.
type DHT interface {
	Lookup(ctx context.Context, ih [20]byte, fn func(dht.PeerResult) bool) error
	Announce(ctx context.Context, ih [20]byte, port int) error
}

// Schedule is when the source looks and dials again. A zero field takes its DefaultSchedule value.
type Schedule struct {
	// FirstLookupWait is the pause after the first DHT lookup; it doubles after each one, up to
	// MaxLookupWait, or IdleLookupWait while no lookup has found anybody.
	FirstLookupWait, IdleLookupWait, MaxLookupWait time.Duration
	// AnnounceEvery is how often our port is announced to the DHT (when Config.Port is set); a
	// failed announce is retried after the next lookup.
	AnnounceEvery time.Duration
	// FirstRedial is the wait before an address is dialled a second time (counted from the
	// first dial, or from the end of its connection); it doubles with every dial, up to
	// MaxRedial. After MaxDials dials the address is left alone.
	FirstRedial, MaxRedial time.Duration
	MaxDials               int
	// RedialScan is how often, once attached, dropped and unreachable addresses whose back-off
	// has passed are offered to the swarm again.
	RedialScan time.Duration
}

// DefaultSchedule: look again after 5 s, 10 s, ... (at most a minute apart while nobody is
// found, 15 minutes once somebody was), announce every 15 minutes, redial after 15 s, 30 s, ...
// up to 10 minutes, at most 8 dials per address.
var DefaultSchedule = Schedule{
	FirstLookupWait: 5 * time.Second, IdleLookupWait: time.Minute, MaxLookupWait: 15 * time.Minute,
	AnnounceEvery: 15 * time.Minute,
	FirstRedial:   15 * time.Second, MaxRedial: 10 * time.Minute, MaxDials: 8,
	RedialScan: 5 * time.Second,
}

func (sc Schedule) withDefaults() Schedule {
	d := DefaultSchedule
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&sc.FirstLookupWait, d.FirstLookupWait)
	set(&sc.IdleLookupWait, d.IdleLookupWait)
	set(&sc.MaxLookupWait, d.MaxLookupWait)
	set(&sc.AnnounceEvery, d.AnnounceEvery)
	set(&sc.FirstRedial, d.FirstRedial)
	set(&sc.MaxRedial, d.MaxRedial)
	set(&sc.RedialScan, d.RedialScan)
	if sc.MaxDials <= 0 {
		sc.MaxDials = d.MaxDials
	}
	return sc
}

// MaxKnown bounds the addresses one torrent remembers (about 100 bytes each).
const MaxKnown = 20000

// Config is one torrent's sources.
type Config struct {
	InfoHash [20]byte
	// Also lists the torrent's other swarm hashes (a hybrid's other one; see AddInfoHash for
	// one learned later): looked up, announced and told to trackers like InfoHash, their
	// peers dialled (under whichever hash the caller dials) from the same registry.
	Also   [][20]byte
	PeerID [20]byte
	// Port is our peer listen port: announced to the DHT and to trackers. 0: we do not listen
	// (meta): no DHT announce, and trackers are told 6881.
	Port uint16

	DHT      DHT              // nil: no DHT
	Schedule Schedule         // zero fields: DefaultSchedule
	Direct   []netip.AddrPort // the magnet's x.pe peers: handed out first
	Trackers []string         // announce URLs
	// State is where tracker announces take their figures (Uploaded, Downloaded, Left) from,
	// from the first announce on (a seed's "started" says Left 0); nil: Left 1, looking for
	// metadata, until SetState.
	State func() trackers.Request
	// TrackerClient announces; nil: a default Client. Its OnAnnounce is taken over by the source
	// (for Stats).
	TrackerClient *trackers.Client
	Logger        *slog.Logger // nil: discard
}

// Stats say what the source has tried, for status lines and failures.
type Stats struct {
	Lookups          int64  // DHT lookups finished
	Found            int64  // distinct addresses learned
	Trackers         int    // tracker URLs
	TrackersAnswered int    // trackers that answered at least once
	TrackerErr       string // the last tracker error, "" when none
}

// tkey is one tracker under one swarm hash.
type tkey struct {
	url string
	ih  [20]byte
}

// tstate is what a tracker has been told under one hash (from Client.OnAnnounce).
type tstate struct {
	started   bool // a "started" announce succeeded
	hadLeft   bool // an announce that succeeded said we were still downloading
	completed bool // a "completed" announce was sent (answered or failed)
}

type entry struct {
	dials  int       // dials made (or handed to metadata.Fetch)
	handed time.Time // when last handed to the swarm, zero when dialled since
	next   time.Time // no dial before this
	queued bool      // in s.queue
}

// Source is one torrent's peer source. Make it with New, call Run once.
type Source struct {
	cfg Config
	sc  Schedule
	log *slog.Logger
	tc  *trackers.Client

	state atomic.Pointer[func() trackers.Request]
	kick  chan struct{} // wakes the Peers pump; buffered 1
	quit  chan struct{} // closed when Run ends: Peers streams end too

	mu        sync.Mutex // guards the fields below; never held across a call out
	hashes    [][20]byte // swarm hashes: InfoHash, Also, AddInfoHash
	sessions  []*trackers.Session
	runCtx    context.Context // Run's, once it started
	running   bool            // Run started
	closing   bool            // Run's ctx ended: AddInfoHash starts nothing (no hwg.Add after hwg.Wait)
	tstates   map[tkey]*tstate
	changed   chan struct{} // closed and replaced when a tstate changes
	reg       map[netip.AddrPort]*entry
	queue     []netip.AddrPort // learned, not yet handed out
	add       func(netip.AddrPort)
	connected func() []netip.AddrPort
	answered  map[string]bool
	lastErr   string
	ended     bool // Run has ended: Peers starts no pump (s.wg.Add never races s.wg.Wait)

	lookups atomic.Int64
	found   atomic.Int64
	wg      sync.WaitGroup // Peers pumps
	hwg     sync.WaitGroup // Run's loops: one per hash, the redial scan
}

// New makes a source; nothing starts until Run.
func New(cfg Config) *Source {
	s := &Source{
		cfg: cfg, sc: cfg.Schedule.withDefaults(), log: cfg.Logger,
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		reg:      map[netip.AddrPort]*entry{},
		answered: map[string]bool{},
		tstates:  map[tkey]*tstate{},
		changed:  make(chan struct{}),
		hashes:   [][20]byte{cfg.InfoHash},
	}
	for _, ih := range cfg.Also {
		if !slices.Contains(s.hashes, ih) {
			s.hashes = append(s.hashes, ih)
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.tc = cfg.TrackerClient
	if s.tc == nil {
		s.tc = &trackers.Client{Logger: s.log}
	}
	s.tc.OnAnnounce = s.noteAnnounce
	if cfg.State != nil {
		s.SetState(cfg.State)
	}
	var urls []string
	for _, u := range cfg.Trackers {
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	s.cfg.Trackers = urls
	for _, a := range cfg.Direct {
		s.offer(a)
	}
	return s
}

// SetState sets where tracker announces take their figures (Uploaded, Downloaded, Left) from;
// until then they say Left 1 (looking for metadata). Call Update when the download completes.
func (s *Source) SetState(fn func() trackers.Request) { s.state.Store(&fn) }

// Update tells the trackers the state changed (see trackers.Session.Update), under every hash.
func (s *Source) Update() {
	s.mu.Lock()
	ss := slices.Clone(s.sessions)
	s.mu.Unlock()
	for _, x := range ss {
		x.Update()
	}
}

// AddInfoHash adds a swarm hash learned late (a btih magnet whose metadata turns out to be a
// hybrid's): it is looked up, announced and told to trackers from now on, as Config.Also.
func (s *Source) AddInfoHash(ih [20]byte) {
	s.mu.Lock()
	if slices.Contains(s.hashes, ih) {
		s.mu.Unlock()
		return
	}
	s.hashes = append(s.hashes, ih)
	ctx, live := s.runCtx, s.running && !s.closing
	if live {
		s.hwg.Add(1) // under mu, before Run sets closing: it happens before Run's hwg.Wait
	}
	s.mu.Unlock()
	if live {
		go func() {
			defer s.hwg.Done()
			s.runHash(ctx, ih)
		}()
	}
}

// Run finds peers until ctx ends: the DHT lookup stream and the tracker session of each swarm
// hash. At the end the trackers get "stopped". It returns when everything it and Peers started
// has ended. Call it once.
func (s *Source) Run(ctx context.Context) {
	s.mu.Lock()
	if s.running || s.ended {
		s.mu.Unlock()
		return
	}
	s.running, s.runCtx = true, ctx
	hs := slices.Clone(s.hashes)
	s.hwg.Add(len(hs) + 1)
	s.mu.Unlock()
	for _, ih := range hs {
		go func() {
			defer s.hwg.Done()
			s.runHash(ctx, ih)
		}()
	}
	go func() {
		defer s.hwg.Done()
		s.redialLoop(ctx)
	}()
	<-ctx.Done()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.hwg.Wait()
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	close(s.quit)
	s.wg.Wait()
}

// runHash runs the DHT lookup stream and the tracker session of one swarm hash until ctx ends.
func (s *Source) runHash(ctx context.Context, ih [20]byte) {
	var wg sync.WaitGroup
	if s.cfg.DHT != nil {
		wg.Go(func() { s.dhtLoop(ctx, ih) })
	}
	if len(s.cfg.Trackers) > 0 {
		ss := s.tc.Session(s.cfg.Trackers, func() trackers.Request { return s.request(ih) }, s.offer)
		s.mu.Lock()
		s.sessions = append(s.sessions, ss)
		s.mu.Unlock()
		wg.Go(func() { ss.Run(ctx) })
	}
	wg.Wait()
}

func (s *Source) request(ih [20]byte) trackers.Request {
	r := trackers.Request{Left: 1}
	if fn := s.state.Load(); fn != nil {
		r = (*fn)()
	}
	r.InfoHash, r.PeerID, r.Port = ih, s.cfg.PeerID, s.cfg.Port
	if r.Port == 0 {
		r.Port = 6881 // some trackers refuse port 0; we accept nothing anyway
	}
	return r
}

func (s *Source) noteAnnounce(url string, r trackers.Request, _ trackers.Response, err error) {
	if r.Event == trackers.Stopped {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := tkey{url, r.InfoHash}
	ts := s.tstates[k]
	if ts == nil {
		ts = &tstate{}
		s.tstates[k] = ts
	}
	if r.Event == trackers.Completed && !errors.Is(err, context.Canceled) {
		ts.completed = true
	}
	if err == nil {
		s.answered[url] = true
		ts.started = ts.started || r.Event == trackers.Started
		ts.hadLeft = ts.hadLeft || r.Left > 0
	} else if !errors.Is(err, context.Canceled) {
		s.lastErr = err.Error()
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// AwaitCompleted waits until every tracker that was told, under any hash, that we were still
// downloading has been sent "completed" (answered or failed), or until ctx ends; it reports
// whether they all were. Call it after the download completed (and Update), before ending Run:
// a command that exits on completion would otherwise cut the "completed" announces short,
// since Run's end sends "stopped" at once. Bound ctx: a tracker may be slow to answer.
func (s *Source) AwaitCompleted(ctx context.Context) bool {
	for {
		s.mu.Lock()
		done := true
		for _, ts := range s.tstates {
			if ts.started && ts.hadLeft && !ts.completed {
				done = false
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

// dhtLoop looks the infohash up again and again, announcing our port when we listen. A lookup
// that finds nobody is repeated (at most IdleLookupWait later) rather than given up.
func (s *Source) dhtLoop(ctx context.Context, ih [20]byte) {
	wait := s.sc.FirstLookupWait
	var announced time.Time
	everFound := false
	for {
		n := 0
		err := s.cfg.DHT.Lookup(ctx, ih, func(r dht.PeerResult) bool {
			n++
			s.offer(r.Peer)
			return true
		})
		if ctx.Err() != nil {
			return
		}
		s.lookups.Add(1)
		if err != nil {
			s.log.Debug("DHT lookup", "err", err)
		}
		everFound = everFound || n > 0
		if s.cfg.Port != 0 && (announced.IsZero() || time.Since(announced) >= s.sc.AnnounceEvery) {
			if err := s.cfg.DHT.Announce(ctx, ih, int(s.cfg.Port)); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Info("DHT announce", "err", err)
			} else {
				announced = time.Now()
			}
		}
		limit := s.sc.MaxLookupWait
		if !everFound {
			limit = s.sc.IdleLookupWait
		}
		wait = min(wait, limit)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// offer takes an address learned from any source.
func (s *Source) offer(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() {
		return
	}
	s.mu.Lock()
	e := s.reg[a]
	if e == nil {
		if len(s.reg) >= MaxKnown {
			s.mu.Unlock()
			return
		}
		e = &entry{}
		s.reg[a] = e
		s.found.Add(1)
	}
	if !s.offerableLocked(e, time.Now()) {
		s.mu.Unlock()
		return // waiting its turn; the redial scan offers it again
	}
	e.queued = true
	s.queue = append(s.queue, a)
	attached := s.add != nil
	s.mu.Unlock()
	if attached {
		s.flush()
	} else {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// noteDialLocked records a dial of e now.
func (s *Source) noteDialLocked(e *entry) {
	e.dials++
	e.handed = time.Time{}
	e.next = time.Now().Add(s.backoff(e.dials))
}

// offerableLocked reports whether e may be queued for dialling now: not queued already, dials
// left, its back-off passed, and not handed to the swarm (which keeps it queued) a moment ago.
func (s *Source) offerableLocked(e *entry, now time.Time) bool {
	switch {
	case e.queued || e.dials >= s.sc.MaxDials:
		return false
	case e.dials > 0 && now.Before(e.next):
		return false
	case !e.handed.IsZero() && now.Before(e.handed.Add(s.sc.FirstRedial)):
		return false
	}
	return true
}

// backoff is the wait after the dials-th dial of an address.
func (s *Source) backoff(dials int) time.Duration {
	d := s.sc.FirstRedial
	for i := 1; i < dials && d < s.sc.MaxRedial; i++ {
		d *= 2
	}
	return min(d, s.sc.MaxRedial)
}

// Peers streams addresses to dial until ctx ends (or Attach), direct ones first; each address
// taken from the channel counts as dialled. The channel closes when ctx ends. Addresses not
// taken stay for Attach.
func (s *Source) Peers(ctx context.Context) <-chan netip.AddrPort {
	out := make(chan netip.AddrPort)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		close(out)
		return out
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		for {
			// Take a out of the queue before offering it, so that Attach, which may run the
			// moment the reader has it, does not hand it on too; put it back if nobody takes it.
			s.mu.Lock()
			var a netip.AddrPort
			have := len(s.queue) > 0 && s.add == nil
			if have {
				a, s.queue = s.queue[0], s.queue[1:]
			}
			e := s.reg[a]
			var saved entry
			if have && e != nil {
				saved = *e
				e.queued = false
				s.noteDialLocked(e)
			}
			s.mu.Unlock()
			if !have {
				select {
				case <-ctx.Done():
					return
				case <-s.quit:
					return
				case <-s.kick:
					continue
				}
			}
			select {
			case out <- a:
			case <-ctx.Done():
				s.unshift(a, e, saved)
				return
			case <-s.quit:
				s.unshift(a, e, saved)
				return
			}
		}
	}()
	return out
}

// unshift puts back an address Peers took but nobody read, with its entry as it was.
func (s *Source) unshift(a netip.AddrPort, e *entry, saved entry) {
	s.mu.Lock()
	if e != nil {
		*e = saved
	}
	s.queue = append([]netip.AddrPort{a}, s.queue...)
	attached := s.add != nil
	s.mu.Unlock()
	if attached {
		s.flush() // Attach ran meanwhile and missed a
	}
}

// Attach hands everything learned from now on, and whatever Peers did not hand out, to add
// (swarm.AddPeer). connected (nil: none) lists the addresses connected at the moment, so that
// a dropped peer's back-off counts from when it dropped. The swarm's dialer must ask AllowDial
// before each dial.
func (s *Source) Attach(add func(netip.AddrPort), connected func() []netip.AddrPort) {
	s.mu.Lock()
	s.add, s.connected = add, connected
	s.mu.Unlock()
	s.flush()
}

// flush hands the queue to the swarm, outside the lock.
func (s *Source) flush() {
	s.mu.Lock()
	q, add := s.queue, s.add
	s.queue = nil
	// Not handed again (by the next lookup, say) before FirstRedial: the swarm keeps what it
	// has queued, and asks AllowDial when it dials.
	now := time.Now()
	for _, a := range q {
		if e := s.reg[a]; e != nil {
			e.queued, e.handed = false, now
		}
	}
	s.mu.Unlock()
	for _, a := range q {
		add(a)
	}
}

// AllowDial reports whether the swarm may dial a now, and if so counts the dial: true for an
// address never dialled, and for one whose back-off has passed. A refused address is offered
// again once its back-off has passed. Addresses the swarm learned by itself (PEX) are learned
// here too.
func (s *Source) AllowDial(a netip.AddrPort) bool {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.reg[a]
	if e == nil {
		if len(s.reg) >= MaxKnown {
			return false
		}
		e = &entry{}
		s.reg[a] = e
		s.found.Add(1)
	}
	if e.dials >= s.sc.MaxDials || (e.dials > 0 && time.Now().Before(e.next)) {
		return false
	}
	s.noteDialLocked(e)
	return true
}

// redialLoop, once attached, pushes back the back-off of connected peers (so it counts from
// the drop) and offers again the addresses whose back-off has passed.
func (s *Source) redialLoop(ctx context.Context) {
	t := time.NewTicker(s.sc.RedialScan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		connected, attached := s.connected, s.add != nil
		s.mu.Unlock()
		if !attached {
			continue
		}
		var conns []netip.AddrPort
		if connected != nil {
			conns = connected()
		}
		now := time.Now()
		var again []netip.AddrPort
		s.mu.Lock()
		for _, a := range conns {
			a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
			if e := s.reg[a]; e != nil && e.dials > 0 {
				e.next = now.Add(s.backoff(e.dials))
			}
		}
		for a, e := range s.reg {
			if (e.dials > 0 || !e.handed.IsZero()) && s.offerableLocked(e, now) {
				again = append(again, a)
			}
		}
		s.mu.Unlock()
		for _, a := range again {
			s.offer(a)
		}
	}
}

// Stats returns what the source has tried so far.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Lookups: s.lookups.Load(), Found: s.found.Load(),
		Trackers: len(s.cfg.Trackers), TrackersAnswered: len(s.answered), TrackerErr: s.lastErr,
	}
}
