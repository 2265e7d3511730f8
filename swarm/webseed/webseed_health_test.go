package webseed

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestHealthBackoff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := Health{}
	boom := errors.New("connection refused")
	now := t0
	var waits []time.Duration
	for i := range 5 {
		if drop := h.Failed(boom, now, now); drop != "" {
			t.Fatalf("dropped after %d failures: %s", i+1, drop)
		}
		waits = append(waits, h.ReadyAt().Sub(now))
		now = h.ReadyAt()
	}
	want := []time.Duration{1, 2, 4, 8, 16}
	for i, w := range waits {
		if w != want[i]*time.Second {
			t.Errorf("backoff %d: %v, want %v", i, w, want[i]*time.Second)
		}
	}
	if drop := h.Failed(boom, now, now); drop == "" {
		t.Error("not dropped after 6 failures in a row")
	}
}

func TestHealthOutageCountsOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := Health{}
	boom := errors.New("reset")
	// Four requests in flight fail together: one failure.
	for range 4 {
		h.Failed(boom, t0, t0.Add(time.Second))
	}
	if h.Failures() != 1 {
		t.Fatalf("%d failures counted for one outage", h.Failures())
	}
	h.OK()
	if h.Failures() != 0 {
		t.Fatal("OK did not reset")
	}
}

func TestHealthRetryAfter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := Health{}
	err := fmt.Errorf("x: %w", &HTTPError{Status: 503, RetryAfter: 40 * time.Second})
	if drop := h.Failed(err, t0, t0); drop != "" || h.ReadyAt() != t0.Add(40*time.Second) {
		t.Fatalf("drop %q ready %v", drop, h.ReadyAt().Sub(t0))
	}
	err = &HTTPError{Status: 503, RetryAfter: 3 * time.Hour}
	if drop := h.Failed(err, t0, t0); drop == "" {
		t.Fatal("a 3 h Retry-After did not drop the seed")
	}
}

func TestHealthStrikes(t *testing.T) {
	var h Health
	if h.BadData() != "" {
		t.Fatal("dropped after one bad piece")
	}
	if h.BadData() == "" {
		t.Fatal("not dropped after two bad pieces")
	}
}

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in                string
		first, last, size int64
		ok                bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 5-5/*", 5, 5, -1, true},
		{"bytes 0-99/99", 0, 0, 0, false},
		{"bytes 9-1/100", 0, 0, 0, false},
		{"bytes -1-5/100", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes 0-1", 0, 0, 0, false},
		{"bytes +0-1/2", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		f, l, s, err := parseContentRange(c.in)
		if (err == nil) != c.ok || c.ok && (f != c.first || l != c.last || s != c.size) {
			t.Errorf("%q: %d %d %d %v", c.in, f, l, s, err)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"120": 2 * time.Minute, "": 0, "soon": 0, "-5": 0,
		"Thu, 01 Jan 2026 00:01:00 GMT": time.Minute,
		"Wed, 31 Dec 2025 00:00:00 GMT": 0,
		"999999999999999999":            maxRetryAfter,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}
