package realclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultLifetime bounds every process started by this package when its
// config leaves MaxLifetime zero: a hung client must never outlive a test run.
const DefaultLifetime = 5 * time.Minute

// maxLine bounds one stdout line from a child.
const maxLine = 1 << 20

// event is one JSON line printed by lt.py.
type event struct {
	Ev    string          `json:"ev"`
	T     float64         `json:"t"`
	ID    int64           `json:"id"`
	Error string          `json:"error"`
	Raw   json.RawMessage `json:"-"`
}

type procConfig struct {
	name     string
	path     string
	args     []string
	dir      string
	lifetime time.Duration
	logger   *slog.Logger
	// json: stdout carries JSON events (lt.py); otherwise lines are only kept
	// for error messages.
	json    bool
	onEvent func(event) // called from the reader goroutine, in order
}

// proc is one child process in its own process group. Its state is guarded
// by mu; changed is closed and replaced whenever something happens, so
// waiters can select on it together with ctx.
type proc struct {
	cfg    procConfig
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	cancel context.CancelFunc
	done   chan struct{} // closed when the process has exited and its pipes are drained
	output *tail

	mu      sync.Mutex // guards the following
	changed chan struct{}
	exited  bool
	exitErr error
	failure string // an "error" event's text
	closing bool
	nextID  int64
	calls   map[int64]chan event
}

func startProc(ctx context.Context, cfg procConfig) (*proc, error) {
	if cfg.logger == nil {
		cfg.logger = discard
	}
	if cfg.lifetime <= 0 {
		cfg.lifetime = DefaultLifetime
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.lifetime)
	cmd := exec.CommandContext(runCtx, cfg.path, cfg.args...)
	cmd.Dir = cfg.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group: a client may have forked helpers.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	p := &proc{
		cfg:     cfg,
		cmd:     cmd,
		cancel:  cancel,
		done:    make(chan struct{}),
		output:  newTail(16 << 10),
		changed: make(chan struct{}),
		calls:   make(map[int64]chan event),
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", cfg.name, err)
	}
	cmd.Stderr = p.output
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", cfg.name, err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("%s: start: %w", cfg.name, err)
	}
	cfg.logger.Debug("started", "client", cfg.name, "pid", cmd.Process.Pid)
	go p.run(stdout)
	return p, nil
}

func (p *proc) run(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if !p.cfg.json {
			p.output.Write(append(line, '\n'))
			continue
		}
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Ev == "" {
			p.output.Write(append(line, '\n'))
			continue
		}
		ev.Raw = append(json.RawMessage(nil), line...)
		p.handle(ev)
	}
	// Drain whatever is left (a too-long line) so the child never blocks.
	_, _ = io.Copy(io.Discard, stdout)
	err := p.cmd.Wait()
	p.cancel()
	p.mu.Lock()
	p.exited = true
	p.exitErr = err
	for id, ch := range p.calls {
		close(ch)
		delete(p.calls, id)
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.cfg.logger.Debug("exited", "client", p.cfg.name, "err", err)
	close(p.done)
}

func (p *proc) handle(ev event) {
	p.cfg.logger.Debug("event", "client", p.cfg.name, "line", string(ev.Raw))
	p.mu.Lock()
	if ev.Ev == "error" && p.failure == "" {
		p.failure = ev.Error
	}
	var reply chan event
	if ev.Ev == "reply" {
		reply = p.calls[ev.ID]
		delete(p.calls, ev.ID)
	}
	p.mu.Unlock()
	if reply != nil {
		reply <- ev // buffered, one slot
	}
	if p.cfg.onEvent != nil {
		p.cfg.onEvent(ev)
	}
	p.mu.Lock()
	p.notifyLocked()
	p.mu.Unlock()
}

func (p *proc) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// wait blocks until cond (evaluated with no lock held) is true, the process
// exits, or ctx ends.
func (p *proc) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		p.mu.Lock()
		ch, exited := p.changed, p.exited
		p.mu.Unlock()
		if cond() {
			return nil
		}
		if exited {
			return fmt.Errorf("%s: waiting for %s: %w", p.cfg.name, what, p.exitError())
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w%s", p.cfg.name, what, ctx.Err(), p.outputSuffix())
		}
	}
}

// call sends one command to lt.py and waits for its reply.
func (p *proc) call(ctx context.Context, op string, args map[string]any) (event, error) {
	p.mu.Lock()
	if p.exited {
		p.mu.Unlock()
		return event{}, fmt.Errorf("%s: %s: %w", p.cfg.name, op, p.exitError())
	}
	p.nextID++
	id := p.nextID
	ch := make(chan event, 1)
	p.calls[id] = ch
	p.mu.Unlock()
	msg := map[string]any{"op": op, "id": id}
	for k, v := range args {
		msg[k] = v
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return event{}, fmt.Errorf("%s: %s: %w", p.cfg.name, op, err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return event{}, fmt.Errorf("%s: %s: %w", p.cfg.name, op, err)
	}
	select {
	case ev, ok := <-ch:
		if !ok {
			return event{}, fmt.Errorf("%s: %s: %w", p.cfg.name, op, p.exitError())
		}
		if ev.Error != "" {
			return ev, fmt.Errorf("%s: %s: %w: %s", p.cfg.name, op, ErrClient, ev.Error)
		}
		return ev, nil
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.calls, id)
		p.mu.Unlock()
		return event{}, fmt.Errorf("%s: %s: %w", p.cfg.name, op, ctx.Err())
	}
}

// exitError describes why the process is gone, with its last output.
func (p *proc) exitError() error {
	p.mu.Lock()
	failure, exitErr, closing := p.failure, p.exitErr, p.closing
	p.mu.Unlock()
	switch {
	case failure != "":
		return fmt.Errorf("%w: %s%s", ErrClient, failure, p.outputSuffix())
	case closing:
		return ErrClosed
	case exitErr != nil:
		return fmt.Errorf("%w: %w%s", ErrExited, exitErr, p.outputSuffix())
	default:
		return fmt.Errorf("%w%s", ErrExited, p.outputSuffix())
	}
}

func (p *proc) outputSuffix() string {
	s := strings.TrimSpace(p.output.String())
	if s == "" {
		return ""
	}
	return "; output: " + s
}

// Close kills the process group and waits for the process and its pipes.
func (p *proc) Close() error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.cancel()
	<-p.done
	return nil
}

// Wait waits for the process to exit by itself (or ctx to end, which kills it).
func (p *proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Close()
		return fmt.Errorf("%s: %w%s", p.cfg.name, ctx.Err(), p.outputSuffix())
	}
	p.mu.Lock()
	err, failure := p.exitErr, p.failure
	p.mu.Unlock()
	if err != nil || failure != "" {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w%s", p.cfg.name, err, p.outputSuffix())
		}
		return fmt.Errorf("%s: %w", p.cfg.name, p.exitError())
	}
	return nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
