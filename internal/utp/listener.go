package utp

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// maxListenerSockets bounds the uTP sockets one Listener merges (an IPv4 and an IPv6 one in
// practice).
const maxListenerSockets = 4

// Listener merges a TCP listener and up to four uTP sockets into one net.Listener, so that a
// peer listener handed between owners (peerwire.ServeListener's past deadline, then cleared)
// serves both transports. Addr is the TCP listener's. Close closes the TCP listener only: the
// uTP sockets belong to their owner (the DHT shares them).
type Listener struct {
	tcp   net.Listener // nil: uTP only
	socks []*Socket
	dl    *deadline

	tcpCh chan tcpAccept // the pump's next TCP connection
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu     sync.Mutex // guards tcpErr
	tcpErr error      // the TCP listener's final error, once seen
}

type tcpAccept struct {
	nc  net.Conn
	err error
}

// NewListener merges tcp (which it owns from now on; nil for none) and socks, which it makes
// accept incoming connections (Socket.Listen).
func NewListener(tcp net.Listener, socks ...*Socket) (*Listener, error) {
	if len(socks) > maxListenerSockets {
		return nil, errors.New("utp: too many sockets for one listener")
	}
	if tcp == nil && len(socks) == 0 {
		return nil, errors.New("utp: nothing to listen on")
	}
	l := &Listener{tcp: tcp, socks: socks, dl: newDeadline(), tcpCh: make(chan tcpAccept), done: make(chan struct{})}
	for _, s := range socks {
		s.Listen()
	}
	if tcp != nil {
		l.wg.Add(1)
		go l.pump()
	}
	return l, nil
}

// pump accepts TCP connections and hands them to Accept one at a time.
func (l *Listener) pump() {
	defer l.wg.Done()
	for {
		nc, err := l.tcp.Accept()
		select {
		case l.tcpCh <- tcpAccept{nc, err}:
		case <-l.done:
			if nc != nil {
				nc.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next connection, TCP or uTP (a *Conn).
func (l *Listener) Accept() (net.Conn, error) {
	for {
		dl := l.dl.wait()
		if closedChan(dl) {
			return nil, &net.OpError{Op: "accept", Net: "tcp+utp", Addr: l.Addr(), Err: os.ErrDeadlineExceeded}
		}
		select {
		case <-l.done:
			return nil, net.ErrClosed
		default:
		}
		var notify [maxListenerSockets]chan struct{}
		for i, s := range l.socks {
			c, ch, err := s.popBacklog()
			if c != nil {
				return c, nil
			}
			if err == nil {
				notify[i] = ch
			}
		}
		l.mu.Lock()
		tcpErr := l.tcpErr
		l.mu.Unlock()
		tcpCh := l.tcpCh
		if tcpErr != nil {
			tcpCh = nil
			if allNil(notify[:]) {
				return nil, tcpErr
			}
		}
		select {
		case a := <-tcpCh:
			if a.err != nil && errors.Is(a.err, net.ErrClosed) {
				l.mu.Lock()
				l.tcpErr = a.err
				l.mu.Unlock()
			}
			return a.nc, a.err
		case <-notify[0]:
		case <-notify[1]:
		case <-notify[2]:
		case <-notify[3]:
		case <-dl:
		case <-l.done:
		}
	}
}

func allNil(chs []chan struct{}) bool {
	for _, c := range chs {
		if c != nil {
			return false
		}
	}
	return true
}

// SetDeadline makes Accept fail with a timeout from t on; the zero time clears it.
func (l *Listener) SetDeadline(t time.Time) error {
	l.dl.set(t)
	return nil
}

// Addr is the TCP listener's address (the first socket's without one).
func (l *Listener) Addr() net.Addr {
	if l.tcp != nil {
		return l.tcp.Addr()
	}
	return l.socks[0].Addr()
}

// Close closes the TCP listener and ends Accept; the sockets stay open.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		if l.tcp != nil {
			err = l.tcp.Close()
		}
		l.wg.Wait()
		l.dl.stop()
	})
	return err
}
