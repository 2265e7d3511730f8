// Package indextest is the behaviour suite every crawl index (index.Store)
// must pass: the bbolt file and the PostgreSQL database run the same
// tests, so a crawler cannot tell them apart.
package indextest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
)

// Opener opens a fresh, empty store for one test with the options given
// (zero fields: the store's defaults); the suite closes it (a second Close
// may then return index.ErrClosed).
type Opener func(t *testing.T, o Options) index.Store

// Options are the store options the suite sets; an Opener passes them on
// to the store's own.
type Options struct {
	Now           func() time.Time // the store's clock for peer retention
	MaxPeers      int              // announced peers kept per infohash
	PeerRetention time.Duration    // peers not announced for this long are dropped
	PruneInterval time.Duration    // how often the store prunes on its own
	PruneBatch    int              // the pruner's batch size
	FlushInterval time.Duration    // how long a write may stay buffered
}

// Clock is a settable clock for Options.Now, safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock reading at.
func NewClock(at time.Time) *Clock {
	c := &Clock{}
	c.Set(at)
	return c
}

// Set moves the clock to at.
func (c *Clock) Set(at time.Time) { c.ns.Store(at.UnixNano()) }

// Now reads the clock.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// IH is a test infohash.
func IH(s string) [20]byte { return sha1.Sum([]byte(s)) }

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	// The stores' clock stays near the test data, so nothing expires as the
	// real clock moves on.
	fixed := func() time.Time { return t0.Add(time.Hour) }
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, index.Store)
	}{
		{"SightingsMerged", sightingsMerged},
		{"MetadataFinalAndDue", metadataFinalAndDue},
		{"ClaimLeases", claimLeases},
		{"Search", search},
		{"StatsAndExport", statsAndExport},
		{"Closed", closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Options{Now: fixed})
			defer s.Close()
			tc.fn(t, s)
		})
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"PeerRetentionAndCap", peerRetentionAndCap},
		{"PeersPrunedOnSchedule", peersPrunedOnSchedule},
		{"GetSeesBuffered", getSeesBuffered},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s index.Store, ih [20]byte) index.Entry {
	t.Helper()
	e, ok, err := s.Get(ih)
	if err != nil || !ok {
		t.Fatalf("Get(%x) = %v, %v", ih[:4], ok, err)
	}
	return e
}

// sightingsMerged: repeated sightings of one infohash make one record with
// the union of how it was seen, the earliest first and latest last
// sighting, a count of sightings and the announced peers; New counts it
// once.
func sightingsMerged(t *testing.T, s index.Store) {
	a, b := IH("a"), IH("b")
	p1, p2 := netip.MustParseAddrPort("127.0.0.5:6881"), netip.MustParseAddrPort("[::1]:7000")
	must(t, s.Observe(a, index.Sampled, netip.AddrPort{}, t0.Add(time.Minute)))
	must(t, s.Observe(a, index.Announce, p1, t0))
	must(t, s.Observe(a, index.Announce, p2, t0.Add(2*time.Minute)))
	must(t, s.Observe(b, index.GetPeers, netip.AddrPort{}, t0))
	must(t, s.Flush())
	must(t, s.Observe(a, index.GetPeers, netip.AddrPort{}, t0.Add(3*time.Minute)))
	must(t, s.Flush())
	e := get(t, s, a)
	if e.How != index.Sampled|index.Announce|index.GetPeers || !e.FirstSeen.Equal(t0) || !e.LastSeen.Equal(t0.Add(3*time.Minute)) || e.Seen != 4 {
		t.Errorf("a: how %v first %v last %v seen %d", e.How, e.FirstSeen, e.LastSeen, e.Seen)
	}
	if !slices.Equal(e.Peers, []netip.AddrPort{p1, p2}) {
		t.Errorf("a: peers %v, want [%v %v] (most recent last)", e.Peers, p1, p2)
	}
	if e.Meta != index.MetaNone || !e.NextRetry.Equal(t0) {
		t.Errorf("a: metadata %v due %v, want none due at first sighting %v", e.Meta, e.NextRetry, t0)
	}
	if h := s.Health(); h.New != 2 || h.Sightings != 5 || h.Pending != 0 || h.Dropped != 0 {
		t.Errorf("Health = %+v, want 2 new, 5 sightings", h)
	}
	if _, ok, err := s.Get(IH("never")); ok || err != nil {
		t.Errorf("Get(unknown) = %v, %v", ok, err)
	}
}

// metadataFinalAndDue: a failed fetch is due again at its retry time;
// fetched metadata is final (a later failure does not undo it) and never
// due again.
func metadataFinalAndDue(t *testing.T, s index.Store) {
	ctx := context.Background()
	a, b := IH("a"), IH("b")
	must(t, s.Observe(a, index.Sampled, netip.AddrPort{}, t0))
	must(t, s.Observe(b, index.Sampled, netip.AddrPort{}, t0))
	must(t, s.Flush())
	md := index.Metadata{Name: "ubuntu.iso", Size: 30, Files: []index.File{{Path: []string{"dir", "x"}, Length: 10}, {Path: []string{"y"}, Length: 20}}}
	must(t, s.SetFetched(a, md, t0.Add(time.Minute)))
	must(t, s.SetFailed(a, 1, t0.Add(time.Hour), t0.Add(2*time.Minute)))
	must(t, s.SetFailed(b, 2, t0.Add(time.Hour), t0.Add(2*time.Minute)))
	must(t, s.Flush())
	e := get(t, s, a)
	if e.Meta != index.MetaFetched || e.Name != md.Name || e.Size != 30 || len(e.Files) != 2 || strings.Join(e.Files[0].Path, "/") != "dir/x" || e.Files[1].Length != 20 {
		t.Errorf("a: %+v", e)
	}
	if !e.LastSeen.Equal(t0) {
		t.Errorf("a: metadata moved last seen to %v", e.LastSeen)
	}
	e = get(t, s, b)
	if e.Meta != index.MetaFailed || e.Attempts != 2 || !e.NextRetry.Equal(t0.Add(time.Hour)) {
		t.Errorf("b: %v attempts %d next %v", e.Meta, e.Attempts, e.NextRetry)
	}
	due, err := s.Claim(ctx, t0.Add(30*time.Minute), 10, time.Minute)
	must(t, err)
	if len(due) != 0 {
		t.Errorf("due before the retry time: %d entries", len(due))
	}
	due, err = s.Claim(ctx, t0.Add(2*time.Hour), 10, time.Minute)
	must(t, err)
	if len(due) != 1 || due[0].InfoHash != b || due[0].Attempts != 2 {
		t.Errorf("due after the retry time: %+v, want only b", due)
	}
}

// claimLeases: a claimed infohash is not handed out again until its lease
// ends or a result is stored; earliest due first. A lease ends on the
// store's clock (the Claim's now for the bbolt file, the database's for
// PostgreSQL), so the short leases are waited for with both moving.
func claimLeases(t *testing.T, s index.Store) {
	ctx := context.Background()
	var ihs [][20]byte
	for i := range 5 {
		ih := IH(string(rune('a' + i)))
		ihs = append(ihs, ih)
		must(t, s.Observe(ih, index.Sampled, netip.AddrPort{}, t0.Add(time.Duration(i)*time.Second)))
	}
	must(t, s.Flush())
	now := t0.Add(time.Minute)
	first, err := s.Claim(ctx, now, 2, 10*time.Minute)
	must(t, err)
	if len(first) != 2 || first[0].InfoHash != ihs[0] || first[1].InfoHash != ihs[1] {
		t.Fatalf("first claim: %d entries, want the 2 earliest", len(first))
	}
	const short = 3 * time.Second
	second, err := s.Claim(ctx, now, 10, short)
	must(t, err)
	if len(second) != 3 {
		t.Fatalf("second claim: %d entries, want the 3 not leased", len(second))
	}
	for _, e := range second {
		if e.InfoHash == ihs[0] || e.InfoHash == ihs[1] {
			t.Fatalf("second claim returned a leased infohash")
		}
	}
	if more, _ := s.Claim(ctx, now, 10, 10*time.Minute); len(more) != 0 {
		t.Fatalf("claim while all are leased: %d entries", len(more))
	}
	// A stored failure releases the lease (and is due at its retry time);
	// an expired lease makes the infohash due again.
	must(t, s.SetFailed(ihs[0], 1, now, now))
	must(t, s.Flush())
	again, err := s.Claim(ctx, now, 10, 10*time.Minute)
	must(t, err)
	if len(again) != 1 || again[0].InfoHash != ihs[0] || again[0].Attempts != 1 {
		t.Fatalf("after SetFailed: %d entries, want the failed one", len(again))
	}
	// The short leases end; the long ones (ihs[1], and ihs[0] again) hold.
	got := map[[20]byte]bool{}
	for deadline := time.Now().Add(20 * time.Second); len(got) < 3 && time.Now().Before(deadline); {
		es, err := s.Claim(ctx, now.Add(short+time.Second), 10, 10*time.Minute)
		must(t, err)
		for _, e := range es {
			got[e.InfoHash] = true
		}
		if len(got) < 3 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(got) != 3 || !got[ihs[2]] || !got[ihs[3]] || !got[ihs[4]] {
		t.Fatalf("after the short leases ended: %d entries, want the 3 leased shortly", len(got))
	}
}

// search: every word must match the name or a file path, case-insensitive;
// only fetched metadata is searched; most seen first.
func search(t *testing.T, s index.Store) {
	ctx := context.Background()
	ub, deb, win := IH("ubuntu"), IH("debian"), IH("windows")
	for i := range 3 {
		must(t, s.Observe(ub, index.Sampled, netip.AddrPort{}, t0.Add(time.Duration(i)*time.Second)))
	}
	must(t, s.Observe(deb, index.Sampled, netip.AddrPort{}, t0))
	must(t, s.Observe(win, index.Sampled, netip.AddrPort{}, t0))
	must(t, s.Observe(IH("nometa"), index.Sampled, netip.AddrPort{}, t0))
	must(t, s.Flush())
	must(t, s.SetFetched(ub, index.Metadata{Name: "Ubuntu-24.04-Desktop-amd64.iso", Size: 5 << 30, Files: []index.File{{Path: []string{"Ubuntu-24.04-Desktop-amd64.iso"}, Length: 5 << 30}}}, t0))
	must(t, s.SetFetched(deb, index.Metadata{Name: "debian-12", Size: 10, Files: []index.File{{Path: []string{"casper", "vmlinuz"}, Length: 4}, {Path: []string{"desktop.txt"}, Length: 6}}}, t0))
	must(t, s.SetFetched(win, index.Metadata{Name: "Windows", Size: 1, Files: []index.File{{Path: []string{"setup.exe"}, Length: 1}}}, t0))
	must(t, s.Flush())
	names := func(q string) []string {
		t.Helper()
		res, err := s.Search(ctx, q, 10)
		if err != nil && !errors.Is(err, index.ErrSearchScan) {
			t.Fatalf("Search(%q): %v", q, err)
		}
		var out []string
		for _, e := range res {
			out = append(out, e.Name)
		}
		return out
	}
	for q, want := range map[string][]string{
		"ubuntu":          {"Ubuntu-24.04-Desktop-amd64.iso"},
		"DESKTOP":         {"Ubuntu-24.04-Desktop-amd64.iso", "debian-12"},
		"vmlinuz":         {"debian-12"},
		"desktop debian":  {"debian-12"},
		"ubuntu windows":  nil,
		"nothing-matches": nil,
	} {
		if got := names(q); !slices.Equal(got, want) {
			t.Errorf("Search(%q) = %q, want %q", q, got, want)
		}
	}
	res, _ := s.Search(ctx, "ubuntu", 10)
	if len(res) == 1 {
		e := res[0]
		if e.Seen != 3 || e.Size != 5<<30 || len(e.Files) != 1 || !strings.HasPrefix(e.Magnet(), "magnet:?xt=urn:btih:") {
			t.Errorf("result: seen %d size %d files %d magnet %s", e.Seen, e.Size, len(e.Files), e.Magnet())
		}
	}
	if res, _ := s.Search(ctx, "desktop", 1); len(res) != 1 {
		t.Errorf("limit 1 gave %d results", len(res))
	}
}

// statsAndExport: the summary counts, and the JSONL export lists every
// entry once in infohash order.
func statsAndExport(t *testing.T, s index.Store) {
	var ihs [][20]byte
	for i := range 50 {
		ih := IH(string(rune(1000 + i)))
		ihs = append(ihs, ih)
		how := index.How(1 << (i % 3))
		must(t, s.Observe(ih, how, netip.AddrPort{}, t0.Add(time.Duration(i)*time.Second)))
	}
	must(t, s.SetFetched(ihs[0], index.Metadata{Name: "x", Size: 1, Files: []index.File{{Path: []string{"x"}, Length: 1}}}, t0))
	must(t, s.SetFailed(ihs[1], 1, t0.Add(time.Hour), t0))
	st, err := s.Stats()
	must(t, err)
	want := index.Stats{Infohashes: 50, WithMetadata: 1, Failed: 1, Sampled: 17, GetPeers: 17, Announced: 16, Sightings: 50, FirstSeen: t0, LastSeen: t0.Add(49 * time.Second)}
	if st != want {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
	var buf bytes.Buffer
	must(t, index.ExportJSONL(&buf, s))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("export has %d lines, want 50", len(lines))
	}
	prev := ""
	for _, l := range lines {
		var j index.JSONEntry
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatal(err)
		}
		if j.InfoHash <= prev {
			t.Fatalf("export not in infohash order: %s after %s", j.InfoHash, prev)
		}
		prev = j.InfoHash
	}
	n := 0
	must(t, s.ForEach(func(index.Entry) bool { n++; return n < 7 }))
	if n != 7 {
		t.Errorf("ForEach did not stop when asked: %d calls", n)
	}
}

// closed: writes after Close fail with ErrClosed.
func closed(t *testing.T, s index.Store) {
	must(t, s.Observe(IH("a"), index.Sampled, netip.AddrPort{}, t0))
	must(t, s.Close())
	if err := s.Observe(IH("b"), index.Sampled, netip.AddrPort{}, t0); !errors.Is(err, index.ErrClosed) {
		t.Errorf("Observe after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, index.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

func pruner(t *testing.T, s index.Store) index.Pruner {
	t.Helper()
	p, ok := s.(index.Pruner)
	if !ok {
		t.Fatalf("%T does not expire peers (index.Pruner)", s)
	}
	return p
}

// pruneAll runs PrunePeers until it finds nothing, and returns how many
// peers it removed.
func pruneAll(t *testing.T, s index.Store) int {
	t.Helper()
	total := 0
	for range 1000 {
		n, err := pruner(t, s).PrunePeers(context.Background())
		must(t, err)
		if n == 0 {
			return total
		}
		total += n
	}
	t.Fatalf("PrunePeers still removing after 1000 batches (%d peers)", total)
	return total
}

func peerPort(i, k int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i), 1}), uint16(1000+k))
}

// peerRetentionAndCap: a crawler running for months keeps at most MaxPeers
// peers per infohash (the most recently announced) and none announced
// longer ago than the retention period: reads hide expired peers at once,
// and pruning (in small batches) removes exactly the expired ones from
// storage — exactly, so peers beyond the cap were never kept.
func peerRetentionAndCap(t *testing.T, open Opener) {
	const day = 24 * time.Hour
	clock := NewClock(t0)
	s := open(t, Options{Now: clock.Now, MaxPeers: 4, PeerRetention: 7 * day, PruneBatch: 3, PruneInterval: time.Hour})
	defer s.Close()
	const n = 10
	// Six peers per infohash, one a day, each day's batch committed apart
	// so the cap must hold in storage, not only in the write buffer.
	for k := range 6 {
		clock.Set(t0.Add(time.Duration(k) * day))
		for i := range n {
			must(t, s.Observe(IH(fmt.Sprint(i)), index.Announce, peerPort(i, k), t0.Add(time.Duration(k)*day)))
		}
		must(t, s.Flush())
	}
	peersOf := func(i int) []netip.AddrPort { t.Helper(); return get(t, s, IH(fmt.Sprint(i))).Peers }
	want := func(i int, ks ...int) []netip.AddrPort {
		var out []netip.AddrPort
		for _, k := range ks {
			out = append(out, peerPort(i, k))
		}
		return out
	}
	clock.Set(t0.Add(5*day + time.Hour))
	for i := range n {
		if got := peersOf(i); !slices.Equal(got, want(i, 2, 3, 4, 5)) {
			t.Fatalf("infohash %d: peers %v, want the 4 most recent %v", i, got, want(i, 2, 3, 4, 5))
		}
	}
	if removed := pruneAll(t, s); removed != 0 {
		t.Errorf("pruned %d peers while none had expired", removed)
	}
	// Ten days on, the peers of day 2 have expired (day 3 is exactly at the
	// limit and stays).
	clock.Set(t0.Add(10 * day))
	for i := range n {
		if got := peersOf(i); !slices.Equal(got, want(i, 3, 4, 5)) {
			t.Fatalf("infohash %d at day 10: peers %v, want %v", i, got, want(i, 3, 4, 5))
		}
	}
	walked := 0
	must(t, s.ForEach(func(e index.Entry) bool {
		walked++
		if len(e.Peers) != 3 {
			t.Errorf("ForEach at day 10: %d peers, want 3 (none expired)", len(e.Peers))
		}
		return true
	}))
	if walked != n {
		t.Errorf("ForEach walked %d entries, want %d", walked, n)
	}
	if removed := pruneAll(t, s); removed != n {
		t.Errorf("day 10: pruned %d peers, want %d (one per infohash)", removed, n)
	}
	// A re-announced peer is fresh again.
	must(t, s.Observe(IH("0"), index.Announce, peerPort(0, 3), t0.Add(10*day)))
	must(t, s.Flush())
	// Past day 12.5 every peer has expired but the re-announced one.
	clock.Set(t0.Add(12*day + 12*time.Hour))
	if got := peersOf(0); !slices.Equal(got, want(0, 3)) {
		t.Errorf("day 12.5: peers %v, want only the re-announced %v", got, want(0, 3))
	}
	if removed := pruneAll(t, s); removed != 3*n-1 {
		t.Errorf("day 12.5: pruned %d peers, want %d: more were stored than the cap allows", removed, 3*n-1)
	}
	for i := 1; i < n; i++ {
		e := get(t, s, IH(fmt.Sprint(i)))
		if len(e.Peers) != 0 || e.Seen != 6 || e.How != index.Announce {
			t.Errorf("infohash %d after pruning: peers %v, seen %d, how %v; want no peers and the record kept", i, e.Peers, e.Seen, e.How)
		}
	}
	clock.Set(t0.Add(80 * day))
	if removed := pruneAll(t, s); removed != 1 {
		t.Errorf("day 80: pruned %d peers, want the last 1", removed)
	}
	if h := s.Health(); h.PeersPruned != 4*n {
		t.Errorf("Health().PeersPruned = %d, want %d", h.PeersPruned, 4*n)
	}
}

// peersPrunedOnSchedule: the store prunes expired peers by itself.
func peersPrunedOnSchedule(t *testing.T, open Opener) {
	clock := NewClock(t0)
	s := open(t, Options{Now: clock.Now, PeerRetention: time.Hour, PruneInterval: 20 * time.Millisecond, PruneBatch: 5})
	defer s.Close()
	const n = 40
	for i := range n {
		must(t, s.Observe(IH(fmt.Sprint(i)), index.Announce, peerPort(i, 0), t0))
	}
	must(t, s.Flush())
	clock.Set(t0.Add(2 * time.Hour))
	deadline := time.Now().Add(20 * time.Second)
	for s.Health().PeersPruned < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h := s.Health(); h.PeersPruned != n {
		t.Fatalf("Health().PeersPruned = %d, want all %d expired peers pruned by the store's schedule", h.PeersPruned, n)
	}
	if removed := pruneAll(t, s); removed != 0 {
		t.Errorf("%d expired peers left after the scheduled pruning", removed)
	}
}

// getSeesBuffered: a sighting or a fetched result is visible to Get (and a
// result to Search) at once, before the store commits it, and a sighting is
// counted once across the commit.
func getSeesBuffered(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{Now: func() time.Time { return t0.Add(time.Hour) }, FlushInterval: time.Hour})
	defer s.Close()
	a, b := IH("a"), IH("b")
	p := netip.MustParseAddrPort("127.0.0.9:6881")
	must(t, s.Observe(a, index.Announce, p, t0))
	e, ok, err := s.Get(a)
	if err != nil || !ok {
		t.Fatalf("Get right after a sighting: found %v, %v", ok, err)
	}
	if e.Seen != 1 || e.How != index.Announce || !e.FirstSeen.Equal(t0) || !e.LastSeen.Equal(t0) || !slices.Equal(e.Peers, []netip.AddrPort{p}) || !e.NextRetry.Equal(t0) {
		t.Errorf("buffered sighting: %+v", e)
	}
	must(t, s.Flush())
	must(t, s.Observe(a, index.Sampled, netip.AddrPort{}, t0.Add(time.Minute)))
	e = get(t, s, a)
	if e.Seen != 2 || e.How != index.Announce|index.Sampled || !e.LastSeen.Equal(t0.Add(time.Minute)) || len(e.Peers) != 1 {
		t.Errorf("committed + buffered: seen %d how %v last %v peers %v, want 2, both ways", e.Seen, e.How, e.LastSeen, e.Peers)
	}
	md := index.Metadata{Name: "Buffered Name", Size: 1, Files: []index.File{{Path: []string{"f"}, Length: 1}}}
	must(t, s.SetFetched(a, md, t0.Add(2*time.Minute)))
	must(t, s.SetFailed(b, 2, t0.Add(time.Hour), t0.Add(2*time.Minute)))
	e = get(t, s, a)
	if e.Meta != index.MetaFetched || e.Name != md.Name || len(e.Files) != 1 || e.Seen != 2 {
		t.Errorf("buffered metadata: %v %q files %d seen %d", e.Meta, e.Name, len(e.Files), e.Seen)
	}
	e = get(t, s, b)
	if e.Meta != index.MetaFailed || e.Attempts != 2 || !e.NextRetry.Equal(t0.Add(time.Hour)) {
		t.Errorf("buffered failure of an unseen infohash: %v attempts %d next %v", e.Meta, e.Attempts, e.NextRetry)
	}
	res, err := s.Search(ctx, "buffered", 10)
	if err != nil && !errors.Is(err, index.ErrSearchScan) {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].InfoHash != a {
		t.Errorf("Search right after SetFetched: %d results, want the just-fetched one", len(res))
	}
	must(t, s.Flush())
	if e := get(t, s, a); e.Seen != 2 || e.Meta != index.MetaFetched {
		t.Errorf("after the commit: seen %d %v, want 2 fetched (counted once)", e.Seen, e.Meta)
	}
}
