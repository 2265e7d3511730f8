package swarm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/swarm/storage"
	"github.com/magnetget/magnetget/swarm/webseed"
)

// Web seeds (BEP 19) are fetched beside peers, through the same picker. A web seed has every
// piece, so each of its workers asks the picker (rarest first, or in order) for a piece that
// no peer is downloading, extends it into a run of following pieces nobody is downloading
// either, and fetches the run with range requests. The run's pieces are entered in s.pieces
// with every block claimed, so peers neither request their blocks nor end-game them. Bytes
// are hashed as they stream in and written straight to storage; each piece is checked
// against its SHA-1 the moment its last byte arrives, exactly like a peer's, and a bad one is
// fetched again from anyone while the seed earns a strike. When a run fails part way, its
// unfinished pieces go back to the picker (and to any peer that had picked them in end game).
//
// Memory per worker is one chunk buffer; nothing is held while waiting on the network but
// the worker's own pieces, and s.mu is never held across HTTP or disk I/O.

const (
	maxWebSeeds    = 8                      // URLs used; more are ignored
	webWorkers     = 4                      // ranges in flight per web seed
	webChunk       = 256 << 10              // bytes read, hashed and written at a time
	webRunFirst    = 1 << 20                // a run before the seed's rate is measured...
	webRunMax      = 16 << 20               // ...and at most this (and at least one piece)
	webRunTime     = 2 * time.Second        // aim: a run takes about this long at the seed's rate
	webIdle        = 250 * time.Millisecond // recheck for work this often when none was free
	webInitialRate = webRunFirst / 2        // bytes/s assumed before the seed is measured (webRunTime)
)

// webState is the swarm's web seed bookkeeping, guarded by s.mu.
type webState struct {
	seeds   []*webSeed
	pieces  map[int]*webSeed // pieces a web seed is fetching now
	started map[int]bool     // those of them whose bytes are being written
	down    int64            // payload bytes from web seeds (part of Swarm.down)

	tls   *tls.Config   // test hook: roots for https seeds
	stall time.Duration // test hook: webseed.Options.StallTimeout
}

// webSeed is one web seed URL in use. Fields are guarded by s.mu.
type webSeed struct {
	seed     *webseed.Seed
	health   webseed.Health
	dropped  bool
	down     int64
	rate     float64 // bytes/s of one worker while fetching
	measured bool    // rate is measured, not the initial guess
	since    time.Time
}

// webUsefulLocked reports whether w may serve a wanted piece. Pieces we have count too: a
// mirror that lacks only what is still missing is idle, not dropped with a warning.
func (s *Swarm) webUsefulLocked(w *webSeed) bool {
	for i := range s.layout.NumPieces() {
		if s.picker.Wanted(i) && !w.lacks(s.layout, i) {
			return true
		}
	}
	return false
}

// lacks reports whether piece i touches a file the seed answered 404 for.
func (w *webSeed) lacks(l *storage.Layout, i int) bool {
	first, last := l.PieceFiles(i)
	for f := first; f <= last; f++ {
		if w.seed.Missing(f) {
			return true
		}
	}
	return false
}

// webTorrent describes the layout to package webseed: the names as the info dictionary has
// them (storage checked each element, none holds a separator, so splitting is exact).
func webTorrent(l *storage.Layout) webseed.Torrent {
	t := webseed.Torrent{Name: l.Name}
	t.MultiFile = !(len(l.Files) == 1 && l.Files[0].Path == l.Name)
	for _, f := range l.Files {
		wf := webseed.File{Length: f.Length, Pad: f.Pad}
		if t.MultiFile {
			wf.Path = strings.Split(f.Path, string(filepath.Separator))[1:]
		}
		t.Files = append(t.Files, wf)
	}
	return t
}

// startWebSeeds starts the workers of each configured web seed; Run's WaitGroup owns them.
func (s *Swarm) startWebSeeds(ctx context.Context) {
	if len(s.cfg.WebSeeds) == 0 {
		return
	}
	s.mu.Lock()
	complete := s.picker.Missing() == 0
	tlsConf, stall := s.web.tls, s.web.stall
	s.mu.Unlock()
	if complete {
		return
	}
	t := webTorrent(s.layout)
	seen := make(map[string]bool)
	var seeds []*webSeed
	for _, u := range s.cfg.WebSeeds {
		u = strings.TrimSpace(u)
		if u == "" || seen[u] || len(seeds) >= maxWebSeeds {
			continue
		}
		seen[u] = true
		ws, err := webseed.New(u, t, webseed.Options{TLSConfig: tlsConf, MaxConns: webWorkers, StallTimeout: stall})
		if err != nil {
			s.log.Warn("ignoring web seed", "err", err)
			continue
		}
		seeds = append(seeds, &webSeed{seed: ws, rate: webInitialRate, since: time.Now()})
	}
	s.mu.Lock()
	s.web.seeds = seeds
	s.web.pieces = make(map[int]*webSeed)
	s.web.started = make(map[int]bool)
	s.mu.Unlock()
	for _, w := range seeds {
		s.log.Debug("web seed", "url", w.seed.URL())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer w.seed.Close()
			done := make(chan struct{})
			for range webWorkers {
				go func() {
					defer func() { done <- struct{}{} }()
					s.webWorker(ctx, w)
				}()
			}
			for range webWorkers {
				<-done
			}
		}()
	}
}

// webProgressLocked adds the web seed figures to a progress snapshot.
func (s *Swarm) webProgressLocked(p *Progress) {
	p.WebSeedDown = s.web.down
	for _, w := range s.web.seeds {
		if !w.dropped {
			p.WebSeeds++
		}
	}
}

// webWorker fetches runs of pieces from w until the download is complete, w is dropped or
// ctx ends.
func (s *Swarm) webWorker(ctx context.Context, w *webSeed) {
	var buf []byte
	for ctx.Err() == nil {
		s.mu.Lock()
		if w.dropped || s.stopped || s.fatal != nil || s.picker.Missing() == 0 {
			s.mu.Unlock()
			return
		}
		wait := time.Until(w.health.ReadyAt())
		var run []int
		if wait <= 0 {
			run = s.pickWebRunLocked(w)
			wait = webIdle
		}
		s.mu.Unlock()
		if len(run) == 0 {
			t := time.NewTimer(min(wait, webIdle*4))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if buf == nil {
			buf = make([]byte, webChunk)
		}
		if err := s.fetchWebRun(ctx, w, run, buf); err != nil && errors.Is(err, ErrStorage) {
			return // setFatal stops Run
		}
	}
}

// pickWebRunLocked reserves for w a run of consecutive wanted pieces that nobody is
// downloading: the first as the picker orders pieces, then the ones after it, up to about
// webRunTime at w's rate.
func (s *Swarm) pickWebRunLocked(w *webSeed) []int {
	free := func(i int) bool {
		if s.picker.Active(i) > 0 || s.web.pieces[i] != nil || w.lacks(s.layout, i) || !s.pickableLocked(i) {
			return false // (not pickable: a v2 piece whose hash is not known yet)
		}
		// A piece a departed peer left part-done (blocks all written, nobody on it) may be
		// taken over whole; one still being written or verified may not.
		ps := s.pieces[i]
		return ps == nil || len(ps.peers) == 0 && !ps.verifying && ps.written == ps.nclaimed
	}
	first, endgame, ok := s.picker.Pick(free)
	if !ok || endgame {
		return s.takeOverLocked(w)
	}
	limit := int64(min(w.rate*webRunTime.Seconds(), webRunMax))
	run := []int{first}
	size := s.layout.PieceSize(first)
	for i := first + 1; i < s.layout.NumPieces() && size+s.layout.PieceSize(i) <= limit; i++ {
		if !s.picker.Wanted(i) || s.picker.Have(i) || !free(i) {
			break
		}
		run = append(run, i)
		size += s.layout.PieceSize(i)
	}
	s.reserveWebLocked(w, run)
	return run
}

// reserveWebLocked enters run's pieces as w's: every block claimed, so no peer requests them.
func (s *Swarm) reserveWebLocked(w *webSeed, run []int) {
	for _, i := range run {
		nb := int((s.layout.PieceSize(i) + blockSize - 1) / blockSize)
		ps := &pieceState{claimed: make([]bool, nb), reqs: make([]int, nb), nclaimed: nb,
			peers: make(map[*peer]bool), contrib: make(map[netip.Addr]bool)}
		for b := range ps.claimed {
			ps.claimed[b] = true
		}
		s.pieces[i] = ps
		s.web.pieces[i] = w
		s.picker.Start(i)
	}
}

// takeOverLocked is the web seed's end game. With no piece left that nobody downloads, w
// takes over a piece peers hold (less than half received, the fewest first) when w fetches
// faster than they do: the peers' requests for it are cancelled and the piece is
// fetched whole from w. A peer that trickles blocks (never slow enough to be snubbed) thus
// cannot hold the end of a download that a mirror could finish. Only a piece whose received
// blocks are all on disk is taken, so no write of the peers' is pending for it.
func (s *Swarm) takeOverLocked(w *webSeed) []int {
	if !w.measured {
		return nil // compare with peers only on a measured rate
	}
	best, bestClaimed := -1, 0
	for i, ps := range s.pieces {
		if s.web.pieces[i] != nil || ps.verifying || ps.written != ps.nclaimed || len(ps.peers) == 0 ||
			2*ps.nclaimed > len(ps.claimed) || !s.picker.Wanted(i) || s.picker.Have(i) || w.lacks(s.layout, i) {
			continue
		}
		var rate float64 // the peers' rate on this piece: each peer's rate over its pieces
		for p := range ps.peers {
			rate += p.downRate / float64(max(len(p.pieces), 1))
		}
		if rate >= w.rate {
			continue
		}
		if best < 0 || ps.nclaimed < bestClaimed || ps.nclaimed == bestClaimed && i < best {
			best, bestClaimed = i, ps.nclaimed
		}
	}
	if best < 0 {
		return s.takeOverWebLocked(w)
	}
	ps := s.pieces[best]
	peers := make([]*peer, 0, len(ps.peers))
	for p := range ps.peers {
		peers = append(peers, p)
		var cancels []peerwire.Message
		for k, r := range p.outstanding {
			if int(k.piece) == best {
				cancels = append(cancels, peerwire.Message{ID: peerwire.Cancel, Index: k.piece, Begin: k.begin, Length: r.length})
			}
		}
		p.enqueue(cancels...)
		s.releasePieceLocked(p, best)
	}
	run := []int{best}
	s.reserveWebLocked(w, run)
	for _, p := range peers {
		s.fillLocked(p) // with other pieces: this one is w's now
	}
	s.log.Debug("web seed takes over a piece from slower peers", "piece", best, "url", w.seed.URL())
	return run
}

// fetchWebRun streams run from w: each chunk is hashed and written, each piece checked when
// complete. Pieces not finished when it returns go back to the picker.
func (s *Swarm) fetchWebRun(ctx context.Context, w *webSeed, run []int, buf []byte) error {
	pl := s.layout.PieceLength
	off := int64(run[0]) * pl
	var n int64
	for _, i := range run {
		n += s.layout.PieceSize(i)
	}
	var (
		cur      int // index into run of the piece being received
		pieceOff int64
		got      int64                              // bytes received
		h        hash.Hash = s.newPieceHash(run[0]) // SHA-1, or a v2-only piece's merkle root
		errBad             = errors.New("piece failed verification")
		errCut             = errors.New("run handed to idle peers")
	)
	started := time.Now()
	err := w.seed.Read(ctx, off, n, buf, func(b []byte) error {
		for len(b) > 0 {
			i := run[cur]
			if pieceOff == 0 {
				s.mu.Lock()
				mine := s.web.pieces[i] == w
				if mine {
					s.web.started[i] = true
				}
				s.mu.Unlock()
				if !mine {
					return errCut // handed to a faster web seed meanwhile
				}
			}
			k := int(min(int64(len(b)), s.layout.PieceSize(i)-pieceOff))
			chunk := b[:k]
			b = b[k:]
			if s.downLimit != nil {
				for c := 0; c < len(chunk); c += blockSize {
					if err := s.downLimit.WaitN(ctx, min(blockSize, len(chunk)-c)); err != nil {
						return err
					}
				}
			}
			h.Write(chunk)
			if err := s.store.WriteAt(chunk, int64(i)*pl+pieceOff); err != nil {
				err = fmt.Errorf("%w: %w", ErrStorage, err)
				s.setFatal(err)
				return err
			}
			pieceOff += int64(k)
			got += int64(k)
			s.mu.Lock()
			s.down += int64(k)
			s.web.down += int64(k)
			w.down += int64(k)
			s.mu.Unlock()
			if pieceOff < s.layout.PieceSize(i) {
				continue
			}
			ok := s.pieceOK(i, h.Sum(nil))
			pieceOff = 0
			cur++
			if cur < len(run) {
				h = s.newPieceHash(run[cur])
			}
			if secs := time.Since(started).Seconds(); secs >= 0.2 || secs > 0 && got >= 1<<20 {
				s.mu.Lock()
				w.rate = float64(got) / secs // measured as it goes: run sizes and take-overs use it
				w.measured = true
				s.mu.Unlock()
			}
			s.webPieceDone(w, i, ok)
			if !ok {
				return errBad // the rest of this run from this seed is suspect too
			}
			if cur < len(run) {
				s.mu.Lock()
				cut := s.peerIdleForLocked(run[cur:])
				s.mu.Unlock()
				if cut {
					return errCut
				}
			}
		}
		return nil
	})
	if errors.Is(err, errCut) {
		err = nil
	}
	s.mu.Lock()
	s.releaseWebLocked(w, run[cur:])
	drop := ""
	switch {
	case err == nil:
		w.health.OK()
	case errors.Is(err, errBad):
		drop = w.health.BadData()
	case ctx.Err() != nil || errors.Is(err, ErrStorage):
	case errors.Is(err, webseed.ErrNotFound):
		// That file's pieces are no longer picked for w; a mirror that has none of the
		// wanted pieces is useless.
		if !s.webUsefulLocked(w) {
			drop = "the server has none of the files: " + err.Error()
		}
	default:
		drop = w.health.Failed(err, started, time.Now())
		if drop == "" {
			s.log.Debug("web seed failed, backing off", "url", w.seed.URL(), "err", err,
				"until", w.health.ReadyAt().Format(time.TimeOnly))
		}
	}
	if drop != "" && !w.dropped {
		w.dropped = true
		s.log.Warn("dropping web seed", "url", w.seed.URL(), "reason", drop)
	}
	s.mu.Unlock()
	if drop != "" {
		s.nudge() // the progress line's seed count changed
	}
	return err
}

// peerIdleForLocked reports whether a peer sits idle (unchoked, interested, no request out)
// while it has one of pieces, which a web seed holds for the rest of its run: the web seed
// is then the bottleneck, and hands those pieces back after the piece it is on.
func (s *Swarm) peerIdleForLocked(pieces []int) bool {
	for p := range s.peers {
		if p.leaving() || p.peerChoking || !p.amInterested || len(p.outstanding) > 0 {
			continue
		}
		for _, i := range pieces {
			if p.has.Has(i) {
				return true
			}
		}
	}
	return false
}

// takeOverWebLocked hands w a piece another web seed reserved but has not started, when that
// seed fetches at less than half w's rate (a seed that has not finished a piece yet counts
// at the rate its bytes came in so far). Its owner notices at the piece's start and stops.
func (s *Swarm) takeOverWebLocked(w *webSeed) []int {
	best := -1
	for i, o := range s.web.pieces {
		if o == w || s.web.started[i] {
			continue
		}
		rate := o.rate
		if !o.measured {
			secs := time.Since(o.since).Seconds()
			if secs < webRunTime.Seconds() {
				continue
			}
			rate = float64(o.down) / secs / webWorkers
		}
		if 2*rate >= w.rate {
			continue
		}
		if best < 0 || i < best {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.web.pieces[best] = w // still reserved (all claimed, picker active): only the owner changes
	s.log.Debug("web seed takes over a piece from a slower one", "piece", best, "url", w.seed.URL())
	return []int{best}
}

// webPieceDone records a piece a web seed delivered whole: verified like any peer's piece.
func (s *Swarm) webPieceDone(w *webSeed, i int, ok bool) {
	s.mu.Lock()
	delete(s.web.pieces, i)
	delete(s.web.started, i)
	s.picker.Stop(i, false)
	if ps := s.pieces[i]; ps != nil {
		ps.verifying = true
	}
	if !ok {
		s.log.Info("piece from web seed failed verification", "piece", i, "url", w.seed.URL())
	}
	s.mu.Unlock()
	s.pieceChecked(i, ok)
}

// releaseWebLocked gives pieces a web seed did not finish back to the picker: forgotten
// when no peer picked them meanwhile, else handed to those peers with every block to fetch.
func (s *Swarm) releaseWebLocked(w *webSeed, pieces []int) {
	if len(pieces) == 0 {
		return
	}
	for _, i := range pieces {
		if s.web.pieces[i] != w {
			continue // handed to another web seed, which owns it now
		}
		delete(s.web.pieces, i)
		delete(s.web.started, i)
		s.picker.Stop(i, false)
		ps := s.pieces[i]
		if ps == nil {
			continue
		}
		if len(ps.peers) == 0 {
			delete(s.pieces, i)
			continue
		}
		clear(ps.claimed)
		ps.nclaimed, ps.written, ps.unrequested = 0, 0, len(ps.claimed)
		for _, r := range ps.reqs {
			if r > 0 {
				ps.unrequested--
			}
		}
		ps.hash.mu.Lock()
		ps.hash.h, ps.hash.hashed = nil, 0
		ps.hash.mu.Unlock()
	}
	for p := range s.peers {
		s.fillLocked(p)
	}
}
