// Package swarm downloads and seeds one torrent over the BitTorrent peer wire protocol.
//
// Vocabulary: a "peer" is a remote BitTorrent client on TCP; a "piece" is a PieceLength slice of
// the torrent's byte stream, checked by its SHA-1 in the info dictionary; a "block" is the
// 16 KiB unit peers request and send.
//
// Shape: the Swarm owns every goroutine it starts. Each peer has a reader goroutine (parses
// messages, reading received blocks straight into pooled run buffers), a disk goroutine (hashes
// each run while it is in memory and writes it with one pwrite: see blockrun.go) and a writer
// goroutine (drains a per-peer queue of control messages and serves uploads). Which piece a
// peer fetches next is decided by the pure picker package; bookkeeping lives in one Swarm mutex
// that is never held across network or disk I/O. A piece whose blocks are all on disk is
// finished by a pool of GOMAXPROCS verifier goroutines, which read back only what was not
// hashed in memory (blocks that arrived out of order); a piece that fails is fetched again and
// peers that keep sending bad data are banned. Verified pieces are recorded in a resume file in
// the output directory so a rerun never fetches them again.
package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/swarm/picker"
	"github.com/magnetget/magnetget/swarm/storage"
)

// Errors callers may branch on.
var (
	// ErrStorage wraps disk errors (full disk, unwritable directory) that stop a download.
	ErrStorage = errors.New("swarm: storage error")
	// ErrInfoHash is returned by New when Info does not hash to InfoHash.
	ErrInfoHash = errors.New("swarm: info dictionary does not match infohash")
)

// Config describes one torrent to download or seed. The zero value of each optional field is
// documented next to it.
type Config struct {
	// InfoHash is the hash the swarm joins under: the v1 infohash, or for a v2 or hybrid torrent
	// its v2 infohash truncated to 20 bytes (metadata.Hashes.SwarmHash says which a fetch
	// matched). Info must be the torrent it names (metadata.Identify). A hybrid's connections
	// under either of its hashes are accepted.
	InfoHash [20]byte
	Info     []byte // verbatim bencoded info dict
	// PieceLayers are a v2 or hybrid torrent's piece layers known so far (torrentfile.Torrent's,
	// keyed by pieces root); the others are asked of peers with BEP 52 hash requests. Nil for
	// v1, or when none is known (a magnet).
	PieceLayers map[[32]byte][]byte

	Dir        string                   // output directory; created if missing
	Select     func(fileIndex int) bool // files to download; nil = all
	Sequential bool                     // fetch pieces in order instead of rarest-first

	PeerID   [20]byte     // zero: random
	Listener net.Listener // incoming peer connections; nil = none. Not closed by Run.
	// UTP also reaches peers over uTP (BEP 29; see peerwire.Options.UTP); nil: TCP only.
	UTP peerwire.UTPDialer

	MaxPeers      int   // connected peers; 0 = 50
	DownloadLimit int64 // bytes/s of piece payload; 0 = unlimited
	UploadLimit   int64 // bytes/s of piece payload; 0 = unlimited

	Seed      bool          // keep uploading once complete, until SeedRatio, SeedTime or ctx ends
	SeedRatio float64       // stop seeding once uploaded/size reaches this; 0 = no ratio limit
	SeedTime  time.Duration // stop seeding after this long; 0 = no time limit

	ReadOnly bool // seed the user's own files: never create, write, truncate them or add state files (storage.Options)
	Force    bool // overwrite files in the way that are not this download's (storage.ErrExists)

	Logger     *slog.Logger   // nil = discard
	OnProgress func(Progress) // called from one goroutine, at most about twice a second

	// AllowDial, when set, is asked before each outgoing dial (outside the swarm's lock); false
	// skips the address (the caller's redial policy: each address once, then with back-off).
	AllowDial func(netip.AddrPort) bool

	WebSeeds []string // BEP 19 web seed URLs (url-list, magnet ws=), fetched beside peers; nil = none (webseed.go)
}

// Progress is a snapshot for display. Done and Total count bytes of selected pieces.
type Progress struct {
	Done, Total, Down, Up int64
	RateDown, RateUp      float64 // bytes/s of piece payload
	Peers                 int
	Complete              bool
	WebSeedDown           int64 // the part of Down that came from web seeds
	WebSeeds              int   // web seeds in use (not dropped)
}

const (
	blockSize        = 16 << 10
	maxUploadQueue   = 1024 // requests we queue per peer; advertised as reqq
	defaultMaxPeers  = 50
	maxPendingAddrs  = 2000
	maxParallelDials = 16
	dialTimeout      = 10 * time.Second
	unchokeSlots     = 4
	rechokeEvery     = 10 * time.Second
	optimisticEvery  = 30 * time.Second
	pexEvery         = 60 * time.Second
	snubTimeout      = 60 * time.Second
	idleTimeout      = 3 * time.Minute
	keepaliveEvery   = 90 * time.Second
	resumeEvery      = 2 * time.Second
	progressEvery    = 500 * time.Millisecond
	banStrikes       = 4 // a sole sender of a bad piece earns 2 strikes, a co-sender 1
	extMetadataID    = 1 // our ids for ut_metadata and ut_pex in our extended handshake
	extPexID         = 2
)

// Swarm downloads (and optionally seeds) one torrent. Create it with New, feed it peers with
// AddPeer/AddConn (before or during Run) and call Run once.
type Swarm struct {
	cfg    Config
	log    *slog.Logger
	layout *storage.Layout
	store  *storage.Storage
	hashes metadata.Hashes // what Info is: its infohashes and halves
	v2     *v2State        // nil for a v1-only torrent (v2.go)
	opts   peerwire.Options
	total  int64 // bytes of wanted pieces

	downLimit, upLimit *rate.Limiter // nil = unlimited

	verifyCh chan verifyJob // pieces whose blocks are all on disk
	runSlots chan struct{}  // one token per run buffer in use, at most maxRuns
	wg       sync.WaitGroup // every goroutine Run starts
	wake     chan struct{}  // nudges the run loop (dial more, completion)

	mu               sync.Mutex // guards everything below
	picker           *picker.Picker
	pieces           map[int]*pieceState // pieces being downloaded
	peers            map[*peer]struct{}
	known            map[netip.AddrPort]bool // connected or being dialled
	pending          []netip.AddrPort        // to dial
	dialing          int                     // dials in progress
	handshaking      int                     // incoming handshakes in progress
	connecting       map[netip.Addr]int      // dials and incoming handshakes in progress, per IP
	evicting         int                     // peers closed to make room, not yet removed
	bans             banList
	redial           map[netip.AddrPort]redialEntry // back-off before dialling an address again
	conns            []*peerwire.Conn               // handed in before Run
	running          bool                           // Run has been called
	stopped          bool                           // Run is shutting down: start nothing new
	ctx              context.Context                // Run's internal context, nil until peers may start
	done             int64                          // verified wanted bytes
	down, up         int64                          // payload bytes
	dirty            bool                           // resume state changed since last save
	fatal            error                          // a storage error that stops Run
	rateDown, rateUp float64
	rateAt           time.Time // when the rates were last updated: the current interval's start
	lastProgress     time.Time
	lastDown, lastUp int64
	web              webState // web seeds (webseed.go)
	badBlocks        int      // v2 blocks found bad by their hashes and fetched again (v2.go)

	// test hooks, set by tests in this package before Run
	onRequest  func(piece int)
	onBan      func(netip.Addr)
	onPick     func()        // each picker.Pick, under s.mu
	evictAfter time.Duration // 0: evictIdle
}

// pieceState tracks the blocks of one piece being downloaded.
type pieceState struct {
	claimed     []bool // block data received (being written or written)
	reqs        []int  // outstanding requests for each block, across peers
	nclaimed    int    // claimed blocks
	unrequested int    // blocks neither claimed nor requested from anyone
	written     int    // blocks written to disk
	peers       map[*peer]bool
	contrib     map[netip.Addr]bool
	verifying   bool
	hash        pieceHash // the piece's SHA-1 so far, fed as blocks are written in order
	// v2 and hybrid: the sender of each block, and the block hashes asked of a peer after the
	// piece failed (v2.go); nil otherwise.
	from       []netip.Addr
	leaves     *leafWait
	leafRounds int
}

// New checks cfg and the info dictionary (names that would escape Dir are refused here, before
// anything is written) and prepares storage.
func New(cfg Config) (*Swarm, error) {
	hashes, err := metadata.Identify(cfg.Info, cfg.InfoHash, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInfoHash, err)
	}
	var (
		layout *storage.Layout
		v2     *v2State
	)
	if hashes.HasV2 {
		// A hybrid is checked by SHA-1 through its v1 half; a v2-only torrent by merkle.
		if v2, err = newV2(cfg.Info, cfg.PieceLayers, !hashes.HasV1); err != nil {
			return nil, err
		}
	}
	if hashes.HasV1 {
		layout, err = storage.ParseInfo(cfg.Info)
		if err != nil {
			return nil, fmt.Errorf("swarm: %w", err)
		}
	} else if layout, v2.files, err = v2Layout(v2.tor.V2); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		cfg.Dir = "."
	}
	store, err := storage.OpenOptions(cfg.Dir, layout, storage.Options{
		InfoHash: cfg.InfoHash, Info: cfg.Info, ReadOnly: cfg.ReadOnly, Force: cfg.Force})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = defaultMaxPeers
	}
	if cfg.PeerID == ([20]byte{}) {
		cfg.PeerID = peerwire.NewPeerID()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Swarm{
		cfg: cfg, log: log, layout: layout, store: store, hashes: hashes, v2: v2,
		verifyCh:   make(chan verifyJob, 64),
		runSlots:   make(chan struct{}, maxRuns),
		wake:       make(chan struct{}, 1),
		pieces:     make(map[int]*pieceState),
		peers:      make(map[*peer]struct{}),
		known:      make(map[netip.AddrPort]bool),
		connecting: make(map[netip.Addr]int),
		bans:       newBanList(),
		redial:     make(map[netip.AddrPort]redialEntry),
	}
	wanted := s.wantedPieces()
	s.picker = picker.New(layout.NumPieces(), wanted, cfg.Sequential, rand.Uint64())
	for i := range layout.NumPieces() {
		if wanted(i) {
			s.total += layout.PieceSize(i)
		}
	}
	s.downLimit = limiter(cfg.DownloadLimit)
	s.upLimit = limiter(cfg.UploadLimit)
	ext := peerwire.ExtHandshake{
		M:            map[string]int{"ut_metadata": extMetadataID, "ut_pex": extPexID},
		MetadataSize: len(cfg.Info),
		V:            "magnetget",
		Reqq:         maxUploadQueue,
	}
	if cfg.Listener != nil {
		if ta, ok := cfg.Listener.Addr().(*net.TCPAddr); ok {
			ext.Port = ta.Port
		}
	}
	// The v2 bit only under a v2 infohash: libtorrent answers it under a hybrid's v1 hash by
	// switching the connection to the v2 one.
	s.opts = peerwire.Options{PeerID: cfg.PeerID, ExtHandshake: ext, Timeout: dialTimeout,
		V2: hashes.HasV2 && cfg.InfoHash == hashes.TruncatedV2(), UTP: cfg.UTP}
	if cfg.Listener != nil {
		// Dial from the address we listen on: the peers then see (and pass on) an address
		// that answers, and per-address limits on their side count us once.
		if ta, ok := cfg.Listener.Addr().(*net.TCPAddr); ok {
			s.opts.LocalAddr = ta.AddrPort().Addr().Unmap()
		}
	}
	return s, nil
}

func limiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	// The burst must hold the largest block we send or receive in one WaitN, and no more than
	// that or a tenth of a second: a full second's burst, full at the start, let the first
	// second run at twice the limit. Start empty for the same reason.
	burst := int(max(bps/10, maxBlockRequest))
	l := rate.NewLimiter(rate.Limit(bps), burst)
	l.AllowN(time.Now(), burst)
	return l
}

// wantedPieces returns whether each piece overlaps a selected, non-empty file.
func (s *Swarm) wantedPieces() func(int) bool {
	if s.cfg.Select == nil {
		return func(int) bool { return true }
	}
	want := make([]bool, s.layout.NumPieces())
	for f := range s.layout.Files {
		if !s.selected(f) {
			continue
		}
		if first, last, ok := s.layout.FilePieces(f); ok {
			for i := first; i <= last; i++ {
				want[i] = true
			}
		}
	}
	return func(i int) bool { return want[i] }
}

// selected reports whether layout file f is to be downloaded. For a v2-only torrent Select
// counts the file tree's files, without the padding the layout adds.
func (s *Swarm) selected(f int) bool {
	if s.v2 != nil && s.v2.files != nil {
		if s.v2.files[f] < 0 {
			return false
		}
		f = s.v2.files[f]
	}
	return s.cfg.Select == nil || s.cfg.Select(f)
}

// AddPeer queues addr to be dialled, at most MaxPeers connections at a time. Known, banned and
// already queued addresses are ignored, as are addresses whose redial back-off (redial.go) has
// not passed and everything past a bounded queue.
func (s *Swarm) AddPeer(addr netip.AddrPort) {
	if !addr.IsValid() || addr.Port() == 0 || addr.Addr().IsUnspecified() {
		return
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	s.mu.Lock()
	now := time.Now()
	if !s.known[addr] && !s.bans.banned(addr.Addr(), now) && s.mayDialLocked(addr, now) && len(s.pending) < maxPendingAddrs {
		s.known[addr] = true
		s.pending = append(s.pending, addr)
	}
	s.mu.Unlock()
	s.nudge()
}

// AddConn hands the swarm an open connection (from metadata.Fetch or peerwire.Accept) for this
// torrent. The swarm owns and closes it.
func (s *Swarm) AddConn(c *peerwire.Conn) {
	if !s.ourHash(c.InfoHash()) {
		_ = c.Close()
		return
	}
	s.mu.Lock()
	if !s.running {
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.startPeer(c, true)
}

func (s *Swarm) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run downloads every selected piece. It returns nil once they are all verified and the files
// are synced and closed, or, with Seed, once seeding has ended by SeedRatio or SeedTime. When ctx
// ends first it saves the resume state, closes the files and returns ctx.Err() (also when the
// download was complete and only seeding was interrupted). Run may be called once.
func (s *Swarm) Run(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("swarm: Run called twice")
	}
	s.running = true
	s.mu.Unlock()

	ictx, cancel := context.WithCancel(ctx)
	defer func() {
		s.mu.Lock()
		s.stopped = true
		conns := s.conns
		s.conns = nil
		s.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
		cancel()
		s.wg.Wait()
		if serr := s.saveResume(); serr != nil && err == nil {
			err = serr
		}
		if cerr := s.store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: %w", ErrStorage, cerr)
		}
		s.mu.Lock()
		if s.fatal != nil && (err == nil || errors.Is(err, context.Canceled)) && ctx.Err() == nil {
			err = s.fatal
		}
		s.mu.Unlock()
		s.progress(true)
	}()

	// Selected files are fetched whole: reserving their space up front is cheaper than
	// letting the filesystem allocate as blocks arrive.
	s.store.Preallocate(s.selected)
	if err := s.store.CreateEmpty(s.selected); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	for range runtime.GOMAXPROCS(0) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.verifier(ictx)
		}()
	}
	// Pieces on disk are checked before any peer starts, so none of them is fetched again.
	if err := s.checkExisting(ictx); err != nil {
		return err
	}
	if err := s.store.CheckMissing(s.missingPieces()); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err) // a file in the way, or a seed that cannot fetch
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	s.mu.Lock()
	s.ctx = ictx
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		s.startPeer(c, true)
	}
	s.startWebSeeds(ictx)
	if s.cfg.Listener != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acceptLoop(ictx)
		}()
	}
	return s.loop(ctx, ictx)
}

// loop runs timers until the download (and seeding) ends or ctx is done.
func (s *Swarm) loop(ctx, ictx context.Context) error {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	var (
		lastRechoke, lastOptimistic, lastPex, lastResume time.Time
		completeAt                                       time.Time
		synced                                           bool
		saving                                           atomic.Bool
	)
	s.mu.Lock()
	s.rateAt = time.Now()
	s.mu.Unlock()
	s.dialMore()
	for {
		s.mu.Lock()
		complete := s.picker.Missing() == 0
		fatal := s.fatal
		s.mu.Unlock()
		if fatal != nil {
			return fatal
		}
		if complete && !synced {
			s.finishLayers(ictx) // a hybrid's piece layers no peer gave
			// Everything selected is verified: flush before reporting success.
			if err := s.store.TrimFiles(s.selected); err != nil {
				return fmt.Errorf("%w: %w", ErrStorage, err)
			}
			if err := s.store.Sync(); err != nil {
				return fmt.Errorf("%w: %w", ErrStorage, err)
			}
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
			if err := s.saveResume(); err != nil {
				return err
			}
			synced = true
			completeAt = time.Now()
			s.log.Info("download complete", "bytes", s.total)
			s.progress(true)
			if !s.cfg.Seed {
				return nil
			}
		}
		if complete && s.cfg.Seed && s.seedDone(completeAt) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ictx.Done():
			return ictx.Err()
		case <-s.wake:
			s.dialMore()
		case now := <-tick.C:
			if s.updateRates(now) {
				s.checkSnubbed(now)
			}
			if now.Sub(lastRechoke) >= rechokeEvery {
				optimistic := now.Sub(lastOptimistic) >= optimisticEvery
				if optimistic {
					lastOptimistic = now
				}
				s.rechoke(optimistic)
				lastRechoke = now
			}
			if now.Sub(lastPex) >= pexEvery {
				s.sendPex()
				lastPex = now
			}
			if now.Sub(lastResume) >= resumeEvery && !saving.Load() {
				// fsync can take long on a slow disk: save off the loop, one at a time.
				saving.Store(true)
				lastResume = now
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer saving.Store(false)
					if err := s.saveResumeIfDirty(); err != nil {
						s.log.Warn("saving resume state", "err", err)
					}
				}()
			}
			s.dialMore()
			s.progress(false)
		}
	}
}

// seedDone reports whether seeding has reached SeedRatio or SeedTime.
func (s *Swarm) seedDone(completeAt time.Time) bool {
	if s.cfg.SeedTime > 0 && time.Since(completeAt) >= s.cfg.SeedTime {
		return true
	}
	if s.cfg.SeedRatio > 0 {
		s.mu.Lock()
		up := s.up
		s.mu.Unlock()
		return float64(up) >= s.cfg.SeedRatio*float64(max(s.total, 1))
	}
	return false
}

// progress reports to OnProgress (outside the lock).
func (s *Swarm) progress(final bool) {
	if s.cfg.OnProgress == nil {
		return
	}
	s.mu.Lock()
	p := Progress{Done: s.done, Total: s.total, Down: s.down, Up: s.up, RateDown: s.rateDown,
		RateUp: s.rateUp, Peers: len(s.peers), Complete: s.picker.Missing() == 0}
	s.webProgressLocked(&p)
	now := time.Now()
	skip := !final && now.Sub(s.lastProgress) < progressEvery*8/10
	if !skip {
		s.lastProgress = now
	}
	s.mu.Unlock()
	if !skip {
		s.cfg.OnProgress(p)
	}
}

// updateRates refreshes the swarm's and every peer's rate estimates (exponential average) once a
// second, and reports whether it did.
func (s *Swarm) updateRates(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	dt := now.Sub(s.rateAt).Seconds()
	if dt < 1 {
		return false
	}
	s.rateDown = ewma(s.rateDown, float64(s.down-s.lastDown)/dt)
	s.rateUp = ewma(s.rateUp, float64(s.up-s.lastUp)/dt)
	s.lastDown, s.lastUp = s.down, s.up
	s.rateAt = now
	for p := range s.peers {
		p.updateRate(dt)
	}
	return true
}

func ewma(old, cur float64) float64 { return 0.4*old + 0.6*cur }

// saveResumeIfDirty syncs data and saves the resume file when pieces were verified since.
func (s *Swarm) saveResumeIfDirty() error {
	s.mu.Lock()
	dirty := s.dirty
	s.mu.Unlock()
	if !dirty {
		return nil
	}
	return s.saveResume()
}

// saveResume syncs the files (so every piece recorded is on disk) and writes the resume file.
func (s *Swarm) saveResume() error {
	s.mu.Lock()
	s.dirty = false
	have := s.picker.HaveField()
	s.mu.Unlock()
	if err := s.store.Sync(); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if err := s.store.SaveResume(s.cfg.InfoHash, have.Has); err != nil {
		if errors.Is(err, storage.ErrClosed) {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// checkExisting marks pieces already on disk as verified: those the resume file vouches for
// directly, the others by hashing them on a pool of GOMAXPROCS goroutines.
func (s *Swarm) checkExisting(ctx context.Context) error {
	rs, err := s.store.LoadResume(s.cfg.InfoHash)
	if err != nil {
		s.log.Warn("ignoring resume file", "err", err)
	}
	stats := make([]storage.FileStat, len(s.layout.Files))
	for i := range stats {
		stats[i] = s.store.Stat(i)
	}
	var check []int
	s.mu.Lock()
	for i := range s.layout.NumPieces() {
		switch {
		case rs.Verified[i]:
			s.markHaveLocked(i)
		case rs.Known[i]:
			// Unchanged since the resume file recorded it unverified: no need to hash.
		case s.store.PieceOnDisk(i, stats):
			check = append(check, i)
		}
	}
	s.mu.Unlock()
	if len(check) == 0 {
		return nil
	}
	s.log.Debug("checking pieces on disk", "pieces", len(check))
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, hashBuf)
			for i := range work {
				if ok, err := s.store.VerifyPiece(i, buf, s.newPieceHash(i), func(sum []byte) bool { return s.pieceOK(i, sum) }); err == nil && ok {
					s.mu.Lock()
					s.markHaveLocked(i)
					s.mu.Unlock()
				}
			}
		}()
	}
feed:
	for _, i := range check {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	s.mu.Lock()
	s.dirty = true
	s.mu.Unlock()
	return ctx.Err()
}

// missingPieces returns the wanted pieces not verified.
func (s *Swarm) missingPieces() (m []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.layout.NumPieces() {
		if s.picker.Wanted(i) && !s.picker.Have(i) {
			m = append(m, i)
		}
	}
	return m
}

// markHaveLocked records piece i as verified.
func (s *Swarm) markHaveLocked(i int) {
	if s.picker.Have(i) {
		return
	}
	s.picker.SetHave(i)
	if s.picker.Wanted(i) {
		s.done += s.layout.PieceSize(i)
	}
}

// ourHash reports whether ih names this torrent: InfoHash, or a hybrid's other hash.
func (s *Swarm) ourHash(ih [20]byte) bool {
	return ih == s.cfg.InfoHash || s.hashes.HasV1 && ih == s.hashes.V1 || s.hashes.HasV2 && ih == s.hashes.TruncatedV2()
}

// PeerStat is one connected peer's figures, for a per-peer display.
type PeerStat struct {
	Addr             netip.AddrPort
	Client           string // the "v" of its extension handshake, if any
	Down, Up         int64  // payload bytes this connection moved
	RateDown, RateUp float64
}

// PeerStats returns the connected peers' figures, the largest uploaders
// (from us) first.
func (s *Swarm) PeerStats() []PeerStat {
	s.mu.Lock()
	out := make([]PeerStat, 0, len(s.peers))
	conns := make([]*peerwire.Conn, 0, len(s.peers))
	for p := range s.peers {
		out = append(out, PeerStat{Addr: p.addr, Down: p.downBytes, Up: p.upBytes, RateDown: p.downRate, RateUp: p.upRate})
		conns = append(conns, p.c)
	}
	s.mu.Unlock()
	// The connection has a lock of its own: not taken under s.mu.
	for i, c := range conns {
		out[i].Client = c.PeerExt().V
	}
	slices.SortFunc(out, func(a, b PeerStat) int { return cmp.Compare(b.Up, a.Up) })
	return out
}
