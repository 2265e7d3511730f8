package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// webTestFiles is a multi-file layout whose pieces cross file boundaries, with names that
// need escaping in a URL.
var webTestFiles = []testFile{
	{"disc 1/track #1.flac", 700_001},
	{"disc 1/notes 100%.txt", 3_333},
	{"empty", 0},
	{"disc 2/ünïcode?.bin", 1_200_000},
	{"z", 65_536},
}

// serveTorrent writes tt's files and serves them with net/http's file server (ranges,
// keep-alive) on 127.0.0.1; wrap, if set, sits in front of it. It returns the web seed URL.
func serveTorrent(t *testing.T, tt *testTorrent, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	dir := t.TempDir()
	tt.writeFiles(t, dir)
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// lastProgress keeps the latest Progress a swarm reported.
type lastProgress struct {
	mu sync.Mutex
	p  Progress
}

func (l *lastProgress) set(p Progress) { l.mu.Lock(); l.p = p; l.mu.Unlock() }
func (l *lastProgress) get() Progress  { l.mu.Lock(); defer l.mu.Unlock(); return l.p }

// downloadWeb runs a downloading swarm with the given web seeds (and peers) to completion.
func downloadWeb(t *testing.T, tt *testTorrent, seeds []string, peers ...string) (string, Progress) {
	t.Helper()
	dir := t.TempDir()
	var last lastProgress
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: seeds, OnProgress: last.set})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		s.AddPeer(netip.MustParseAddrPort(p))
	}
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	return dir, last.get()
}

// TestWebSeedAlone: a torrent with a url-list downloads completely with no peer at all, single-
// and multi-file, and every byte is counted as a web seed's.
func TestWebSeedAlone(t *testing.T) {
	multi := makeTorrent(t, "Album: live", 32<<10, webTestFiles, 21)
	_, p := downloadWeb(t, multi, []string{serveTorrent(t, multi, nil)})
	if p.WebSeedDown != multi.total() || p.Down != p.WebSeedDown || !p.Complete || p.WebSeeds != 1 {
		t.Errorf("progress %+v: want every one of %d bytes from the web seed", p, multi.total())
	}

	single := makeSingle(t, "image.iso", 16<<10, 1_000_003, 22)
	url := serveTorrent(t, single, nil)
	downloadWeb(t, single, []string{url + "image.iso"}) // the URL names the file
	downloadWeb(t, single, []string{url})               // the URL is its directory
}

// TestWebSeedWithPeer: a peer and a web seed share the work, and both contribute. The mirror
// answers only once the peer has delivered: its first runs (short, as its rate is not known
// yet) are reserved meanwhile, and the peer takes the rest, so neither can take everything.
func TestWebSeedWithPeer(t *testing.T) {
	tt := makeTorrent(t, "shared", 16<<10, []testFile{{"a", 6 << 20}, {"b", 2<<20 + 5}}, 23)
	seeder := startSeeder(t, tt, "127.0.0.1", nil)
	peerDelivered := make(chan struct{})
	var once sync.Once
	url := serveTorrent(t, tt, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-peerDelivered:
			case <-r.Context().Done():
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	dir := t.TempDir()
	var last lastProgress
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: []string{url},
		OnProgress: func(p Progress) {
			last.set(p)
			if p.Down > p.WebSeedDown {
				once.Do(func() { close(peerDelivered) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(seeder)
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	p := last.get()
	if p.WebSeedDown == 0 || p.Down-p.WebSeedDown == 0 {
		t.Errorf("web seed %d bytes, peers %d bytes: want both to contribute", p.WebSeedDown, p.Down-p.WebSeedDown)
	}
}

// TestWebSeedBadBesideGood: a mirror serving wrong bytes is dropped after strikes, a dead one
// backs off; the good one finishes the download with every byte right.
func TestWebSeedBadBesideGood(t *testing.T) {
	tt := makeTorrent(t, "mixed", 64<<10, []testFile{{"data.bin", 6 << 20}}, 24)
	good := serveTorrent(t, tt, nil)
	corrupt := tt.clone()
	for i := range corrupt.data[0] {
		if i%100_000 == 7 {
			corrupt.data[0][i] ^= 0xff
		}
	}
	bad := serveTorrent(t, corrupt, nil)
	dead := serveTorrent(t, tt, func(http.Handler) http.Handler { return http.NotFoundHandler() })
	_, p := downloadWeb(t, tt, []string{bad, dead, good})
	if p.WebSeeds == 3 {
		t.Errorf("the mirror serving bad data was not dropped: %+v", p)
	}
}

// TestWebSeedRetryAfter: a 503 with Retry-After stops requests to that mirror for that long;
// then the download completes from it.
func TestWebSeedRetryAfter(t *testing.T) {
	tt := makeTorrent(t, "busy", 32<<10, []testFile{{"f", 300_000}}, 25)
	var (
		mu        sync.Mutex
		refusedAt time.Time
		early     int
		refused   atomic.Bool
	)
	url := serveTorrent(t, tt, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if !refused.Load() {
				refused.Store(true)
				refusedAt = time.Now()
				mu.Unlock()
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			if time.Since(refusedAt) < time.Second {
				early++
			}
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	// Only one worker's request can be refused first; the others may be in flight already.
	// Requests started after the 503 was seen must wait.
	downloadWeb(t, tt, []string{url})
	mu.Lock()
	defer mu.Unlock()
	if early > webWorkers-1 {
		t.Errorf("%d requests within the Retry-After second", early)
	}
}

// --- helpers ---

func (tt *testTorrent) total() int64 {
	var n int64
	for _, f := range tt.files {
		n += int64(f.size)
	}
	return n
}

// clone returns a copy of tt whose data can be changed (info and infohash stay tt's).
func (tt *testTorrent) clone() *testTorrent {
	c := *tt
	c.data = make([][]byte, len(tt.data))
	for i, d := range tt.data {
		c.data[i] = bytes.Clone(d)
	}
	return &c
}

// makeSingle builds a single-file torrent (no "files" list): its one file is the name itself.
func makeSingle(t *testing.T, name string, pieceLen int64, size int, seed uint64) *testTorrent {
	t.Helper()
	tt := makeTorrent(t, name, pieceLen, []testFile{{"x", size}}, seed)
	mi := metainfo.Info{Name: name, PieceLength: pieceLen, Length: int64(size)}
	for off := 0; off < size; off += int(pieceLen) {
		h := sha1.Sum(tt.data[0][off:min(off+int(pieceLen), size)])
		mi.Pieces = append(mi.Pieces, h[:]...)
	}
	b, err := bencode.Marshal(mi)
	if err != nil {
		t.Fatal(err)
	}
	tt.info, tt.ih = b, sha1.Sum(b)
	tt.files = []testFile{{"", size}}
	return tt
}

// TestWebSeedTakesOverFromTricklingPeer: a peer that holds pieces and sends a block now and
// then (too often to be snubbed) must not hold the end of the download: the web seed takes
// its pieces over (the peer gets cancels) and the download completes.
func TestWebSeedTakesOverFromTricklingPeer(t *testing.T) {
	tt := makeTorrent(t, "trickle", 64<<10, []testFile{{"f", 8 << 20}}, 26)
	stream := tt.data[0]
	requested := make(chan struct{})
	var reqOnce sync.Once
	var (
		mu   sync.Mutex
		reqs []peerwire.Message
	)
	done := make(chan struct{})
	var trickler sync.WaitGroup
	t.Cleanup(func() { close(done); trickler.Wait() })
	fp := startFakePeer(t, "127.0.0.77", tt.ih, func(c *peerwire.Conn) error {
		trickler.Add(1)
		go func() { // one block every 2 s, far inside the snub timeout
			defer trickler.Done()
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				mu.Lock()
				var m peerwire.Message
				if len(reqs) > 0 {
					m, reqs = reqs[0], reqs[1:]
				}
				mu.Unlock()
				if m.Length == 0 {
					continue
				}
				off := int64(m.Index)*(64<<10) + int64(m.Begin)
				if c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: m.Index, Begin: m.Begin, Block: stream[off : off+int64(m.Length)]}) != nil {
					return
				}
			}
		}()
		return helloHaveAll(c)
	}, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID == peerwire.Request {
			mu.Lock()
			reqs = append(reqs, m)
			n := len(reqs)
			mu.Unlock()
			if n >= 16 {
				reqOnce.Do(func() { close(requested) })
			}
		}
		return nil
	})
	// The mirror answers once the peer holds pieces, so there is something to take over; and
	// after 5 s in any case, so that a run in which the peer was asked for fewer blocks (a
	// loaded machine lets the mirror reserve its run first) cannot leave the download to the
	// trickling peer alone.
	fallback := make(chan struct{})
	stopFallback := time.AfterFunc(5*time.Second, func() { close(fallback) })
	t.Cleanup(func() { stopFallback.Stop() })
	url := serveTorrent(t, tt, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-requested:
			case <-fallback:
			case <-r.Context().Done():
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	_, p := downloadWeb(t, tt, []string{url}, fp.addr.String())
	cancels := 0
	fp.mu.Lock()
	for _, m := range fp.got {
		if m.ID == peerwire.Cancel {
			cancels++
		}
	}
	fp.mu.Unlock()
	if cancels == 0 {
		t.Error("the trickling peer's requests were never cancelled")
	}
	t.Logf("web seed %d bytes, peer %d bytes, %d cancels", p.WebSeedDown, p.Down-p.WebSeedDown, cancels)
}

// TestWebSeedDownloadLimit: web seed bytes go through the download limit (in pieces the
// limiter accepts, whatever the chunk size) and still complete.
func TestWebSeedDownloadLimit(t *testing.T) {
	tt := makeTorrent(t, "limited", 256<<10, []testFile{{"f", 400_000}}, 27)
	url := serveTorrent(t, tt, nil)
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: []string{url}, DownloadLimit: 128 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
}

// TestWebSeedSelectedFilesOnly: with a file selection, the web seed fetches only the pieces of
// the selected files.
func TestWebSeedSelectedFilesOnly(t *testing.T) {
	tt := makeTorrent(t, "pick", 32<<10, webTestFiles, 28)
	url := serveTorrent(t, tt, nil)
	dir := t.TempDir()
	var last lastProgress
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: []string{url},
		Select: func(i int) bool { return i == 4 }, OnProgress: last.set})
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	p := last.get()
	if p.WebSeedDown != p.Total || p.Total >= tt.total()/2 {
		t.Errorf("fetched %d bytes for %d bytes of selected pieces (torrent %d)", p.WebSeedDown, p.Total, tt.total())
	}
	got, err := os.ReadFile(filepath.Join(dir, "pick", "z"))
	if err != nil || !bytes.Equal(got, tt.data[4]) {
		t.Fatalf("selected file: %v", err)
	}
}

// TestWebSeedMirrorsWithSomeFiles: two mirrors that each lack some files of a multi-file
// torrent (404) complete it together, and neither is dropped for the files it lacks.
func TestWebSeedMirrorsWithSomeFiles(t *testing.T) {
	tt := makeTorrent(t, "halves", 32<<10, webTestFiles, 29)
	lacking := func(files ...string) string {
		return serveTorrent(t, tt, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for _, f := range files {
					if f == "*" || strings.HasSuffix(r.URL.Path, f) {
						http.NotFound(w, r)
						return
					}
				}
				h.ServeHTTP(w, r)
			})
		})
	}
	// Every piece touches a file one of them has: pieces across the first boundaries from
	// b, the one across the last from a.
	a := lacking("/track #1.flac")
	b := lacking("/z")
	_, p := downloadWeb(t, tt, []string{a, b})
	if p.WebSeeds != 2 {
		t.Errorf("%d web seeds left, want both: a mirror lacking some files still serves the others", p.WebSeeds)
	}
	// A mirror with none of the files is dropped at once, not after backoffs.
	dir := t.TempDir()
	none := lacking("*")
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: []string{none}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var dropped bool
	for range 200 {
		s.mu.Lock()
		dropped = len(s.web.seeds) == 1 && s.web.seeds[0].dropped
		s.mu.Unlock()
		if dropped {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-errc
	if !dropped {
		t.Error("a mirror answering 404 for every file was not dropped")
	}
}

// slowWriter sends at most chunk bytes every 125 ms, until the request ends.
type slowWriter struct {
	http.ResponseWriter
	ctx   context.Context
	chunk int
}

func (w slowWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), w.chunk)
		m, err := w.ResponseWriter.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		w.ResponseWriter.(http.Flusher).Flush()
		b = b[k:]
		select {
		case <-w.ctx.Done():
			return n, w.ctx.Err()
		case <-time.After(125 * time.Millisecond):
		}
	}
	return n, nil
}

// TestWebSeedSlowMirrorHandsBack: a slow mirror does not hold the pieces it reserved while a
// fast peer sits idle: it hands the rest of its runs back after the piece it is on.
func TestWebSeedSlowMirrorHandsBack(t *testing.T) {
	tt := makeTorrent(t, "slowmirror", 16<<10, []testFile{{"f", 8 << 20}}, 30)
	seeder := startSeeder(t, tt, "127.0.0.1", nil)
	url := serveTorrent(t, tt, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(slowWriter{w, r.Context(), 4 << 10}, r) // 32 KiB/s
		})
	})
	_, p := downloadWeb(t, tt, []string{url}, seeder.String())
	// The mirror's first runs are 4 x 1 MiB, 32 s each at its rate; the peer takes everything
	// else in a fraction of that. Kept whole, they would make the mirror's share 4 MiB.
	if p.WebSeedDown >= 2<<20 {
		t.Errorf("slow mirror delivered %d bytes, peer %d: its reserved runs were not handed to the idle peer", p.WebSeedDown, p.Down-p.WebSeedDown)
	}
	t.Logf("mirror %d bytes, peer %d bytes", p.WebSeedDown, p.Down-p.WebSeedDown)
}

// TestWebSeedTricklingMirror: a mirror that trickles (a few hundred bytes at a time, never
// silent for long) beside a good one: its requests are ended for too little progress and its
// reserved pieces go to the good mirror, so the download completes.
func TestWebSeedTricklingMirror(t *testing.T) {
	tt := makeTorrent(t, "loris", 256<<10, []testFile{{"f", 4 << 20}}, 31)
	good := serveTorrent(t, tt, nil)
	loris := serveTorrent(t, tt, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(slowWriter{w, r.Context(), 256}, r) // 2 KiB/s: a 256 KiB piece in 2 min
		})
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: []string{loris, good}})
	if err != nil {
		t.Fatal(err)
	}
	s.web.stall = time.Second // 16 KiB per second or the request ends
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
}

// TestWebSeedFastMirrorTakesOver: pieces a slow mirror reserved but has not started go to a
// fast one once it has nothing else to do.
func TestWebSeedFastMirrorTakesOver(t *testing.T) {
	tt := makeTorrent(t, "twomirrors", 64<<10, []testFile{{"f", 8 << 20}}, 32)
	fast := serveTorrent(t, tt, nil)
	slow := serveTorrent(t, tt, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(slowWriter{w, r.Context(), 4 << 10}, r) // 32 KiB/s
		})
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, WebSeeds: []string{slow, fast}})
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	s.mu.Lock()
	slowDown := s.web.seeds[0].down
	s.mu.Unlock()
	// Its first runs are 4 x 1 MiB, 32 s each at its rate; kept whole, its share is 4 MiB.
	if slowDown >= 2<<20 {
		t.Errorf("the slow mirror delivered %d bytes: its reserved pieces were not taken over", slowDown)
	}
	t.Logf("slow mirror %d bytes", slowDown)
}
