package utp

import (
	"sync"
	"time"
)

// deadline is a settable point in time with a channel that is closed once it has passed, so
// that blocked calls can select on it and a new deadline takes effect on calls already waiting.
type deadline struct {
	mu     sync.Mutex // guards t and passed
	t      *time.Timer
	passed chan struct{} // closed when the deadline has passed
}

func newDeadline() *deadline { return &deadline{passed: make(chan struct{})} }

func closedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil && !d.t.Stop() {
		<-d.passed // the timer fired: wait for it to close the channel it was given
	}
	d.t = nil
	expired := closedChan(d.passed)
	if t.IsZero() {
		if expired {
			d.passed = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if expired {
			d.passed = make(chan struct{})
		}
		ch := d.passed
		d.t = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !expired {
		close(d.passed)
	}
}

// wait returns the channel that is closed when the current deadline passes.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

// stop releases the timer (on Close).
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil && !d.t.Stop() {
		<-d.passed
	}
	d.t = nil
}
