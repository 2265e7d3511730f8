package webseed

import (
	"errors"
	"fmt"
	"time"
)

// Health is the policy for one seed's failures: exponential backoff between attempts, the
// server's Retry-After honoured, and the seed dropped after MaxFailures failures in a row or
// MaxStrikes pieces of bad data. It is plain data with no lock: its owner guards it. Failures
// of requests that were already in flight when an earlier failure was counted are one outage,
// not several: they do not count again.
type Health struct {
	MaxFailures   int           // failures in a row before dropping; 0 = 6
	MaxStrikes    int           // pieces failing their hash before dropping; 0 = 2
	BaseBackoff   time.Duration // first backoff, doubled per failure in a row; 0 = 1s
	MaxBackoff    time.Duration // 0 = 2 min
	MaxRetryAfter time.Duration // a longer Retry-After drops the seed; 0 = 15 min

	failures int
	strikes  int
	until    time.Time // no request before this
	lastFail time.Time // when the last counted failure happened
}

// ReadyAt returns when the next request may start (zero: now).
func (h *Health) ReadyAt() time.Time { return h.until }

// Failures returns the failures counted in a row.
func (h *Health) Failures() int { return h.failures }

// OK records a request that succeeded: the failure count starts again.
func (h *Health) OK() { h.failures = 0 }

// Failed records err from a request started at started, at now. It returns a one-line reason
// when the seed should be dropped, "" when it should be retried after ReadyAt. ErrNotFound
// is not a failure of the seed but of one file (see Seed.Missing); its caller drops the seed
// when every file is missing.
func (h *Health) Failed(err error, started, now time.Time) (drop string) {
	if errors.Is(err, ErrRangeIgnored) || errors.Is(err, ErrFileMismatch) {
		return err.Error()
	}
	if errors.Is(err, ErrNotFound) {
		return ""
	}
	var he *HTTPError
	retryAfter := time.Duration(0)
	if errors.As(err, &he) {
		retryAfter = he.RetryAfter
	}
	maxRA := cmpOr(h.MaxRetryAfter, 15*time.Minute)
	if retryAfter > maxRA {
		return fmt.Sprintf("asks to retry after %v: %v", retryAfter, err)
	}
	if !h.lastFail.IsZero() && started.Before(h.lastFail) {
		// In flight during an outage already counted; still honour what the server asked.
		h.until = later(h.until, now.Add(retryAfter))
		return ""
	}
	h.failures++
	h.lastFail = now
	if h.failures >= cmpOr(h.MaxFailures, 6) {
		return fmt.Sprintf("%d failures in a row, the last: %v", h.failures, err)
	}
	backoff := cmpOr(h.BaseBackoff, time.Second)
	maxB := cmpOr(h.MaxBackoff, 2*time.Minute)
	for i := 1; i < h.failures && backoff < maxB; i++ {
		backoff *= 2
	}
	backoff = min(backoff, maxB)
	h.until = later(h.until, now.Add(max(backoff, retryAfter)))
	return ""
}

// BadData records a piece from this seed that failed its hash. It returns a reason when the
// seed should be dropped.
func (h *Health) BadData() (drop string) {
	h.strikes++
	if h.strikes >= cmpOr(h.MaxStrikes, 2) {
		return fmt.Sprintf("%d pieces failed verification", h.strikes)
	}
	return ""
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
