package crawl

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

var testFrontierConfig = frontierConfig{
	MaxNodes: 100, MinInterval: time.Second, Revisit: 10 * time.Minute, MaxInterval: 6 * time.Hour,
	FindNodeGap: 30 * time.Minute, BackoffBase: 30 * time.Second, BackoffMax: 30 * time.Minute, MaxFailures: 3,
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var now0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFrontierFreshFirstAndOneInflight(t *testing.T) {
	f := newFrontier(testFrontierConfig)
	if !f.add(ap("127.0.0.1:1")) || f.add(ap("127.0.0.1:1")) || f.add(ap("[::ffff:127.0.0.1]:1")) {
		t.Fatal("add: want new once (v4-mapped form is the same node)")
	}
	f.add(ap("127.0.0.2:1"))
	r1, _ := f.next(now0)
	r2, _ := f.next(now0)
	if r1.addr != ap("127.0.0.1:1") || r2.addr != ap("127.0.0.2:1") {
		t.Fatalf("next = %v, %v; want insertion order", r1.addr, r2.addr)
	}
	// Both are in flight: nothing else to hand out, however late it is.
	if r, _ := f.next(now0.Add(24 * time.Hour)); r != nil {
		t.Fatalf("next handed out %v while every node is in flight", r.addr)
	}
	f.done(r1, outcome{interval: time.Minute, num: 5, got: 5}, now0)
	f.add(ap("127.0.0.3:1"))
	if r, _ := f.next(now0); r == nil || r.addr != ap("127.0.0.3:1") {
		t.Fatalf("a never-visited node should come before re-visits, got %v", r)
	}
}

func TestFrontierHonoursInterval(t *testing.T) {
	f := newFrontier(testFrontierConfig)
	f.add(ap("127.0.0.1:1"))
	r, _ := f.next(now0)
	// num > samples: come back after the advertised interval (another
	// target will then draw other samples).
	f.done(r, outcome{interval: 2 * time.Minute, num: 50, got: 20}, now0)
	if r, wait := f.next(now0.Add(time.Minute)); r != nil || wait != time.Minute {
		t.Fatalf("before the interval: next = %v, wait %v; want nil, 1m", r, wait)
	}
	r, _ = f.next(now0.Add(2 * time.Minute))
	if r == nil {
		t.Fatal("not handed out once the interval passed")
	}
	// Everything it holds was sampled: wait for Revisit, longer than the interval.
	f.done(r, outcome{interval: 2 * time.Minute, num: 20, got: 20}, now0.Add(2*time.Minute))
	if r, wait := f.next(now0.Add(5 * time.Minute)); r != nil || wait != 7*time.Minute {
		t.Fatalf("after a full sample: next = %v, wait %v; want nil, 7m", r, wait)
	}
	// Interval 0 must not mean a tight loop.
	r, _ = f.next(now0.Add(12 * time.Minute))
	f.done(r, outcome{interval: 0, num: 30, got: 20}, now0.Add(12*time.Minute))
	if r, wait := f.next(now0.Add(12 * time.Minute)); r != nil || wait != time.Second {
		t.Fatalf("interval 0: next = %v, wait %v; want nil, MinInterval", r, wait)
	}
}

func TestFrontierBacksOffAndDrops(t *testing.T) {
	f := newFrontier(testFrontierConfig)
	f.add(ap("127.0.0.1:1"))
	now := now0
	for i, want := range []time.Duration{30 * time.Second, time.Minute} {
		r, _ := f.next(now)
		if r == nil {
			t.Fatalf("failure %d: node not handed out", i)
		}
		f.done(r, outcome{err: errors.New("timeout")}, now)
		_, wait := f.next(now)
		if wait != want {
			t.Fatalf("after failure %d: wait %v, want %v", i+1, wait, want)
		}
		now = now.Add(wait)
	}
	r, _ := f.next(now)
	f.done(r, outcome{err: errors.New("timeout")}, now)
	if r, wait := f.next(now.Add(time.Hour)); r != nil || wait != 0 || f.alive() != 0 {
		t.Fatalf("after MaxFailures: next = %v, wait %v, alive %d; want the node dropped", r, wait, f.alive())
	}
	if f.add(ap("127.0.0.1:1")) {
		t.Fatal("a dropped node was re-added at once")
	}
	f.purgeDead()
	if !f.add(ap("127.0.0.1:1")) {
		t.Fatal("a purged node could not be learned again")
	}
}

func TestFrontierUnsupportedUsesFindNodeGap(t *testing.T) {
	f := newFrontier(testFrontierConfig)
	f.add(ap("127.0.0.1:1"))
	r, _ := f.next(now0)
	f.done(r, outcome{unsupported: true}, now0)
	if !r.noBEP51 {
		t.Fatal("node not marked as lacking BEP 51")
	}
	if _, wait := f.next(now0); wait != 30*time.Minute {
		t.Fatalf("wait %v, want FindNodeGap", wait)
	}
}

func TestFrontierMaxNodes(t *testing.T) {
	cfg := testFrontierConfig
	cfg.MaxNodes = 2
	f := newFrontier(cfg)
	f.add(ap("127.0.0.1:1"))
	f.add(ap("127.0.0.1:2"))
	if f.add(ap("127.0.0.1:3")) || f.add(netip.AddrPort{}) || f.add(ap("127.0.0.1:0")) {
		t.Fatal("added beyond MaxNodes, or an invalid address")
	}
}

func TestTargetsSpread(t *testing.T) {
	var s targetSeq
	seen := map[byte]bool{}
	for range 256 {
		x := s.next(0, 1)
		seen[x[0]] = true
	}
	if len(seen) != 256 {
		t.Fatalf("256 targets covered %d of 256 top-byte regions", len(seen))
	}
}

// TestTargetsShare: crawler 2 of 4 aims only into its quarter of the
// keyspace, and covers it evenly.
func TestTargetsShare(t *testing.T) {
	var s targetSeq
	seen := map[byte]bool{}
	for range 256 {
		x := s.next(2, 4)
		if x[0] < 0x80 || x[0] >= 0xc0 {
			t.Fatalf("crawler 2 of 4 aimed at %x, outside its quarter 80..bf", x[:2])
		}
		seen[x[0]] = true
	}
	if len(seen) != 64 {
		t.Fatalf("256 targets covered %d of the quarter's 64 top-byte regions", len(seen))
	}
}

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(10, now0) // burst 1
	if w := b.wait(now0); w != 0 {
		t.Fatalf("first token: wait %v", w)
	}
	b.take()
	if w := b.wait(now0); w != 100*time.Millisecond {
		t.Fatalf("second token: wait %v; want 100ms", w)
	}
	if w := b.wait(now0.Add(100 * time.Millisecond)); w != 0 {
		t.Fatalf("after refill: wait %v", w)
	}
	u := newTokenBucket(-1, now0)
	for range 100 {
		if w := u.wait(now0); w != 0 {
			t.Fatal("unlimited bucket made us wait")
		}
		u.take()
	}
}

func TestRetryDelay(t *testing.T) {
	c := &Crawler{RetryBase: time.Minute, RetryMax: 10 * time.Minute}
	for attempts, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 4: 8 * time.Minute, 5: 10 * time.Minute, 60: 10 * time.Minute} {
		if got := c.retryDelay(attempts); got != want {
			t.Errorf("retryDelay(%d) = %v, want %v", attempts, got, want)
		}
	}
}
