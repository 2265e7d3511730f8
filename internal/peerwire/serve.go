package peerwire

import (
	"context"
	"errors"
	"net"
	"time"
)

// ServeListener accepts connections from ln and gives each to handle, which must not block,
// until ctx ends or ln is closed. A listener with SetDeadline (a *net.TCPListener) is not
// closed on cancellation but unblocked with a past deadline, cleared again on return so that
// someone else can accept on it next (the metadata phase hands its listener to the swarm);
// one without is closed. A temporary failure (out of file descriptors, say) backs off, 5 ms
// doubling to 1 s, instead of spinning.
func ServeListener(ctx context.Context, ln net.Listener, handle func(net.Conn)) {
	type deadliner interface{ SetDeadline(time.Time) error }
	dl, hasDeadline := ln.(deadliner)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		if hasDeadline {
			_ = dl.SetDeadline(time.Unix(1, 0))
		} else {
			_ = ln.Close()
		}
	})
	defer func() {
		if !stop() && hasDeadline {
			<-fired // its past deadline must not land after ours
			_ = dl.SetDeadline(time.Time{})
		}
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		handle(nc)
	}
}
