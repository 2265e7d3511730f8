package trackers

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Bounds of a session's schedule.
const (
	minWait      = time.Minute      // never announce to one tracker more often (but for events)
	maxWait      = time.Hour        // nor less often
	firstBackoff = 15 * time.Second // after a failure; doubles up to maxBackoff
	maxBackoff   = 30 * time.Minute
	stopTimeout  = 3 * time.Second // the last "stopped" announce
)

// Session is one torrent's life at its trackers, from the first peer search to the end of the
// download or seed. Each tracker gets exactly one successful "started" (repeated only while it
// fails), then announces without an event at its interval (clamped to [1 min, 1 h]), one
// "completed" when Left turns 0 after having been positive, and one "stopped" when Run ends, if
// it was ever started. Failures back off from 15 s to 30 min.
type Session struct {
	c     *Client
	urls  []string
	state func() Request
	found func(netip.AddrPort)
	wake  []chan struct{} // one per tracker, buffered 1
	// announce is c.Announce; tests of the schedule replace it.
	announce func(ctx context.Context, url string, r Request) (Response, error)
}

// Session makes a session for urls (deduplicated). state is called before each announce for the
// current figures (its Event is ignored); found is called for every peer a tracker returns,
// possibly concurrently from several trackers. Neither is called under a lock of this package.
func (c *Client) Session(urls []string, state func() Request, found func(netip.AddrPort)) *Session {
	var uniq []string
	for _, u := range urls {
		if !slices.Contains(uniq, u) {
			uniq = append(uniq, u)
		}
	}
	s := &Session{c: c, urls: uniq, state: state, found: found, announce: c.Announce}
	for range uniq {
		s.wake = append(s.wake, make(chan struct{}, 1))
	}
	return s
}

// Update tells the session that the state changed: a download that completed is announced as
// "completed" at once; otherwise trackers are asked again for peers as soon as their min interval
// (at least 1 min since the last announce) allows. It never blocks.
func (s *Session) Update() {
	for _, w := range s.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Run announces to every tracker until ctx ends, then sends the "stopped" announces (bounded by a
// short timeout) and returns once every tracker's loop has ended. Call it once.
func (s *Session) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Go(func() { s.runOne(ctx, u, s.wake[i]) })
	}
	wg.Wait()
}

// Feed announces to every tracker until ctx ends: a Session of a default Client with log.
func Feed(ctx context.Context, urls []string, state func() Request, found func(netip.AddrPort), log *slog.Logger) {
	c := &Client{Logger: log}
	c.Session(urls, state, found).Run(ctx)
}

func (s *Session) log() *slog.Logger {
	if s.c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.c.Logger
}

// trackerState is one tracker's side of the session; only its runOne goroutine touches it.
type trackerState struct {
	started     bool // a "started" announce succeeded
	hadLeft     bool // an announce told the tracker we were still downloading
	completed   bool // "completed" sent
	lastOK      time.Time
	minInterval time.Duration
	warning     string
}

// next is the event of the next announce.
func (t *trackerState) next(r Request) Event {
	switch {
	case !t.started:
		return Started
	case t.hadLeft && !t.completed && r.Left == 0:
		return Completed
	}
	return None
}

func (s *Session) runOne(ctx context.Context, url string, wake <-chan struct{}) {
	log := s.log()
	var t trackerState
	backoff := firstBackoff
	for {
		r := s.state()
		r.Event = t.next(r)
		res, err := s.announce(ctx, url, r)
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		if err != nil {
			log.Info("tracker announce failed", "tracker", showURL(url), "event", r.Event.String(), "err", err)
			if errors.Is(err, ErrUnsupported) {
				return
			}
			wait, backoff = backoff, min(backoff*2, maxBackoff)
		} else {
			backoff = firstBackoff
			t.lastOK, t.minInterval = time.Now(), res.MinInterval
			switch r.Event {
			case Started:
				t.started = true
			case Completed:
				t.completed = true
			}
			t.hadLeft = t.hadLeft || r.Left > 0
			if res.Warning != "" && res.Warning != t.warning {
				t.warning = res.Warning
				log.Info("tracker warning", "tracker", showURL(url), "warning", res.Warning)
			}
			log.Debug("tracker announce", "tracker", showURL(url), "event", r.Event.String(), "peers", len(res.Peers))
			for _, p := range res.Peers {
				s.found(p)
			}
			wait = min(max(res.Interval, minWait), maxWait)
		}
		if !s.sleep(ctx, &t, wait, wake) {
			break
		}
	}
	if t.started {
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		r := s.state()
		r.Event = Stopped
		if _, err := s.announce(sctx, url, r); err != nil {
			log.Debug("tracker stopped announce failed", "tracker", showURL(url), "err", err)
		}
	}
}

// sleep waits until the next announce is due: after wait, or earlier when woken and either an
// event is pending (completed) or the min interval since the last success has passed. It returns
// false when ctx ends.
func (s *Session) sleep(ctx context.Context, t *trackerState, wait time.Duration, wake <-chan struct{}) bool {
	due := time.Now().Add(wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-wake:
			if !t.started {
				continue // failing: the backoff decides
			}
			if t.next(s.state()) != None {
				return true
			}
			early := t.lastOK.Add(max(t.minInterval, minWait))
			if !early.After(time.Now()) {
				return true
			}
			if early.Before(due) {
				due = early
				timer.Reset(time.Until(due))
			}
		}
	}
}
