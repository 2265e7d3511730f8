package netem

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Dir shapes one direction of a link. The zero value passes bytes through at once.
type Dir struct {
	// Delay is the one-way latency added to every chunk or datagram.
	Delay time.Duration
	// Jitter varies each chunk's delay uniformly within ±Jitter (never below zero). On a
	// stream a chunk is never released before the one written before it.
	Jitter time.Duration
	// Rate caps the direction at this many bytes/s; 0 = unlimited.
	Rate int64
	// Burst is how many bytes may leave at once above Rate; 0 = 10 ms worth of Rate, at least
	// 64 KiB.
	Burst int
	// Bucket, when set, is a cap shared with other wrapped conns (all the conns of one peer,
	// say) and is used instead of Rate and Burst.
	Bucket *Bucket
	// Loss is the fraction of datagrams dropped (PacketConn only; streams are reliable).
	Loss float64
	// Buffer bounds the bytes queued in this direction: a stream Write blocks (or, reading,
	// the real socket is no longer read) and a datagram is dropped beyond it. 0 = 4 MiB or
	// twice Rate × Delay, the larger. Like a socket buffer it also bounds throughput to about
	// Buffer / Delay when Rate is unlimited.
	Buffer int
}

// Link is the path between a wrapped endpoint and the others, seen from that endpoint.
type Link struct {
	Send, Recv Dir
	// Seed makes jitter and loss reproducible; conns accepted by a Listener or dialled by a
	// Dialer use Seed plus their ordinal.
	Seed uint64
}

// Symmetric is a link with the given round-trip time (half each way) and the same bandwidth
// cap in each direction (0 = unlimited).
func Symmetric(rtt time.Duration, rate int64) Link {
	d := Dir{Delay: rtt / 2, Rate: rate}
	return Link{Send: d, Recv: d}
}

const (
	defaultBuffer = 4 << 20
	minBurst      = 64 << 10
)

func (d Dir) buffer() int {
	if d.Buffer > 0 {
		return d.Buffer
	}
	bdp := 2 * float64(d.Rate) * d.Delay.Seconds()
	return max(defaultBuffer, int(bdp))
}

func (d Dir) bucket() *Bucket {
	if d.Bucket != nil {
		return d.Bucket
	}
	if d.Rate <= 0 {
		return nil
	}
	return NewBucket(d.Rate, d.Burst)
}

// Bucket is a token bucket (in its GCRA form: a theoretical finish time rather than a token
// count) that several directions may share.
type Bucket struct {
	per   float64       // seconds per byte
	burst time.Duration // Burst bytes' worth of time

	mu  sync.Mutex // guards tat
	tat time.Time  // when everything reserved so far has left at Rate
}

// NewBucket caps at rate bytes/s (must be > 0) with the given burst in bytes (0 = 10 ms worth,
// at least 64 KiB).
func NewBucket(rate int64, burst int) *Bucket {
	if burst <= 0 {
		burst = max(minBurst, int(rate/100))
	}
	per := 1 / float64(rate)
	return &Bucket{per: per, burst: time.Duration(float64(burst) * per * float64(time.Second))}
}

// reserve returns when n bytes offered at now have left the bucket.
func (b *Bucket) reserve(now time.Time, n int) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	b.tat = tat.Add(time.Duration(float64(n) * b.per * float64(time.Second)))
	dep := b.tat.Add(-b.burst)
	if dep.Before(now) {
		dep = now
	}
	return dep
}

// shaper stamps chunks of one direction with their release times. Callers serialise calls.
type shaper struct {
	d      Dir
	bucket *Bucket
	rng    *rand.Rand
	last   time.Time // release time of the previous chunk: nothing is released before it
}

func newShaper(d Dir, seed, stream uint64) *shaper {
	return &shaper{d: d, bucket: d.bucket(), rng: rand.New(rand.NewPCG(seed, stream))}
}

// drop reports whether a datagram is lost.
func (s *shaper) drop() bool {
	return s.d.Loss > 0 && s.rng.Float64() < s.d.Loss
}

// stamp returns when n bytes offered at now are handed on.
func (s *shaper) stamp(now time.Time, n int) time.Time {
	at := now
	if s.bucket != nil && n > 0 {
		at = s.bucket.reserve(now, n)
	}
	delay := s.d.Delay
	if j := s.d.Jitter; j > 0 {
		delay += time.Duration(s.rng.Int64N(int64(2*j)+1)) - j
		delay = max(delay, 0)
	}
	at = at.Add(delay)
	if at.Before(s.last) {
		at = s.last
	}
	s.last = at
	return at
}
