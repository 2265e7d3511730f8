package crawl

import "time"

// tokenBucket is a plain token bucket. It is owned by one goroutine (the
// walk scheduler), so it has no lock.
type tokenBucket struct {
	rate   float64 // tokens per second; <= 0 means unlimited
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, now time.Time) *tokenBucket {
	burst := max(1, rate/10) // a tenth of a second's worth: smooth, not bursty
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// wait refills the bucket and returns how long until a token is
// available (0: now).
func (b *tokenBucket) wait(now time.Time) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// take spends a token; call it after wait returned 0.
func (b *tokenBucket) take() {
	if b.rate > 0 {
		b.tokens--
	}
}
