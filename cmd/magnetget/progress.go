package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/magnetget/magnetget/swarm"
)

// events renders what a download does: NDJSON with --json (documented in
// doc/json.md), a bar redrawn in place on a terminal, plain lines every few
// seconds otherwise. All writes happen under mu, so lines never interleave.
type events struct {
	mu    sync.Mutex // guards everything below
	out   io.Writer  // --json events
	err   io.Writer  // human lines
	json  bool
	tty   bool
	width func() int // terminal columns; 0 = unknown (80 is assumed)
	enc   *json.Encoder
	start time.Time // when the command started

	dlStart    time.Time // when the swarm started (after metadata)
	latest     swarm.Progress
	haveLast   bool
	lastLine   time.Time
	lastDrawn  string // the bar or status line now on the terminal
	completed  bool   // the "complete" event was sent (seeding follows)
	seedLast   swarm.Progress
	maxPeers   int
	used       map[netip.AddrPort]bool // peers that sent us piece data
	finished   bool
	partials   []partialFile
	completeAt time.Time // when the download first reported complete
	stopped    bool      // seeding was ended by the user
}

// stoppedSeeding records that the user ended the seeding that followed a
// complete download: a normal end, said as "stopped".
func (e *events) stoppedSeeding() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
}

// partial records the unselected files the download left partly written,
// for the end of the output.
func (e *events) partial(ps []partialFile) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.partials = ps
}

func newEvents(out, errw io.Writer, asJSON bool) *events {
	e := &events{out: out, err: errw, json: asJSON, start: time.Now(), enc: json.NewEncoder(out),
		tty: isTerminal(errw), used: map[netip.AddrPort]bool{}}
	e.width = func() int { return termWidth(errw) }
	return e
}

// Write passes a log line through, clearing the bar first so the two do
// not share a line.
func (e *events) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clearDrawn()
	return e.err.Write(p)
}

// emit writes one JSON event; the caller holds mu.
func (e *events) emit(kind string, fields map[string]any) {
	fields["event"] = kind
	fields["elapsed_ms"] = time.Since(e.start).Milliseconds()
	_ = e.enc.Encode(fields)
}

// line prints a human line, first clearing a bar or status line drawn in
// place; the caller holds mu.
func (e *events) line(format string, args ...any) {
	e.clearDrawn()
	fmt.Fprintf(e.err, format+"\n", args...)
}

func (e *events) clearDrawn() {
	if e.tty && e.lastDrawn != "" {
		fmt.Fprint(e.err, "\r\x1b[K")
		e.lastDrawn = ""
	}
}

// draw shows s in place of the previous bar on a terminal.
func (e *events) draw(s string) {
	e.lastDrawn = s
	fmt.Fprint(e.err, "\r"+s+"\x1b[K")
}

func (e *events) columns() int {
	if w := e.width(); w > 0 {
		return w
	}
	return 80
}

// redraw draws the last bar again at the terminal's current width (after a
// SIGWINCH).
func (e *events) redraw() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.tty || e.json || e.lastDrawn == "" || e.finished {
		return
	}
	if e.haveLast {
		e.draw(renderBar(e.latest, e.columns()))
	}
}

func (e *events) event(kind string, fields map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.json {
		e.emit(kind, fields)
		return
	}
	switch kind {
	case "metadata":
		e.line("fetching metadata for %s", fields["infohash"])
	case "start":
		e.dlStart = time.Now()
		e.line("downloading %s (%s) into %s", esc(fields["name"].(string)), humanBytes(fields["size"].(int64)), esc(fields["dir"].(string)))
	default:
		if msg, ok := fields["message"].(string); ok {
			e.line("%s", esc(msg))
		}
	}
}

// status shows what a command is waiting for (peers, metadata): redrawn in
// place on a terminal, a line every 10 s otherwise, a "waiting" event with
// --json at most every 10 s.
func (e *events) status(msg string, fields map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.json {
		if now.Sub(e.lastLine) < 10*time.Second {
			return
		}
		e.lastLine = now
		fields["message"] = msg
		e.emit("waiting", fields)
		return
	}
	if e.tty {
		e.draw(fit(msg, e.columns()))
		return
	}
	if now.Sub(e.lastLine) < 10*time.Second {
		return
	}
	e.lastLine = now
	fmt.Fprintln(e.err, msg)
}

// last returns the latest progress the swarm reported.
func (e *events) last() swarm.Progress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.latest
}

// peerStats records which peers have sent us data, for the summary.
func (e *events) peerStats(ps []swarm.PeerStat) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range ps {
		if p.Down > 0 {
			e.used[p.Addr] = true
		}
	}
}

func (e *events) progress(p swarm.Progress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.latest, e.haveLast = p, true
	e.maxPeers = max(e.maxPeers, p.Peers)
	if e.dlStart.IsZero() {
		e.dlStart = time.Now()
	}
	now := time.Now()
	if p.Complete && e.completed {
		e.seeding(p, now)
		return
	}
	// The first complete report is a progress event like the others (with
	// complete true); while seeding after it, seeding() reports sparingly.
	if p.Complete && !e.completed {
		e.completeAt = now
	}
	e.completed = e.completed || p.Complete
	if e.json {
		f := map[string]any{"done": p.Done, "total": p.Total, "down": p.Down, "up": p.Up,
			"rate_down": int64(p.RateDown), "rate_up": int64(p.RateUp), "peers": p.Peers, "complete": p.Complete}
		if p.WebSeeds > 0 || p.WebSeedDown > 0 {
			f["web_seed_down"], f["web_seeds"] = p.WebSeedDown, p.WebSeeds
		}
		e.emit("progress", f)
		return
	}
	if e.tty {
		e.draw(renderBar(p, e.columns()))
		return
	}
	if now.Sub(e.lastLine) < 5*time.Second && !p.Complete {
		return
	}
	e.lastLine = now
	fmt.Fprintln(e.err, renderBar(p, 0))
}

// seeding reports a complete download that goes on uploading: quietly, at
// most every 30 s and only when something changed; the caller holds mu.
func (e *events) seeding(p swarm.Progress, now time.Time) {
	if now.Sub(e.lastLine) < 30*time.Second || (p.Up == e.seedLast.Up && p.Peers == e.seedLast.Peers) {
		if e.tty && !e.json && p.Up != e.seedLast.Up {
			e.seedLast = p
			e.draw(fit(seedLine(p), e.columns()))
		}
		return
	}
	e.lastLine, e.seedLast = now, p
	switch {
	case e.json:
		e.emit("seeding", map[string]any{"up": p.Up, "rate_up": int64(p.RateUp), "peers": p.Peers})
	case e.tty:
		e.draw(fit(seedLine(p), e.columns()))
	default:
		fmt.Fprintln(e.err, seedLine(p))
	}
}

func seedLine(p swarm.Progress) string {
	return fmt.Sprintf("seeding: uploaded %s, %s/s, %d peers", humanBytes(p.Up), humanBytes(int64(p.RateUp)), p.Peers)
}

// summary is the last line of a download that ended.
type summary struct {
	Size, Down, Up int64
	WebDown        int64         // the part of Down from web seeds
	Took           time.Duration // since the swarm started
	Peers          int
}

func (e *events) summary() summary {
	p := e.latest
	end := time.Now()
	if !e.completeAt.IsZero() {
		end = e.completeAt // seeding afterwards is not download time
	}
	took := end.Sub(e.dlStart)
	if e.dlStart.IsZero() {
		took = 0
	}
	peers := len(e.used)
	if peers == 0 && p.Down > 0 {
		peers = e.maxPeers
	}
	return summary{Size: p.Total, Down: p.Down, Up: p.Up, WebDown: p.WebSeedDown, Took: took, Peers: peers}
}

func (s summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in %s", humanBytes(s.Size), roundDur(s.Took))
	if s.Down > 0 {
		fmt.Fprintf(&b, ", downloaded %s at %s/s average from %d %s", humanBytes(s.Down),
			humanBytes(int64(rate(s.Down, s.Took))), s.Peers, plural(s.Peers, "peer", "peers"))
		if s.WebDown > 0 {
			fmt.Fprintf(&b, " (%s of it from web seeds)", humanBytes(s.WebDown))
		}
	} else {
		b.WriteString(", nothing to download")
	}
	fmt.Fprintf(&b, ", uploaded %s", humanBytes(s.Up))
	return b.String()
}

// done ends the output: the summary on success, and with --json a "done"
// event whatever happened (ok false with the error on failure).
func (e *events) done(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.finished {
		return
	}
	e.finished = true
	s := e.summary()
	if e.json {
		f := map[string]any{"ok": err == nil}
		if e.haveLast {
			f["size"], f["down"], f["up"], f["peers"], f["took_ms"] = s.Size, s.Down, s.Up, s.Peers, s.Took.Milliseconds()
			if s.WebDown > 0 {
				f["web_seed_down"] = s.WebDown
			}
		}
		if err != nil {
			f["error"] = userMessage(err)
		}
		if len(e.partials) > 0 {
			f["partial_files"] = e.partials
		}
		if e.stopped {
			f["seeding"] = "stopped"
		}
		e.emit("done", f)
		return
	}
	e.clearDrawn()
	if err == nil {
		fmt.Fprintf(e.err, "done: %s; every piece verified\n", s)
		if e.stopped {
			fmt.Fprintln(e.err, "seeding stopped")
		}
		if len(e.partials) > 0 {
			var parts []string
			for _, p := range e.partials {
				parts = append(parts, fmt.Sprintf("%d %s (%s of %s)", p.Index, esc(p.Path), humanBytes(p.Have), humanBytes(p.Size)))
			}
			fmt.Fprintf(e.err, "not selected but partly written, sharing a piece with a selected file: %s\n", strings.Join(parts, ", "))
		}
	}
}

// rate is bytes per second over d, 0 for no time at all.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// fit cuts s to fewer than width columns (the last column is left free so
// the terminal never wraps); width 0 means no limit.
func fit(s string, width int) string {
	if width <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) < width {
		return s
	}
	if width < 2 {
		return ""
	}
	return string(r[:width-2]) + "…"
}

// renderBar formats a progress line for a terminal width columns wide
// (0: no limit, no bar). Fields are dropped, least useful first, until the
// line fits; the bar takes what room is left.
func renderBar(p swarm.Progress, width int) string {
	pct := 100.0
	if p.Total > 0 {
		pct = 100 * float64(p.Done) / float64(p.Total)
	}
	eta := ""
	if p.RateDown > 0 && p.Total > p.Done {
		eta = "eta " + (time.Duration(float64(p.Total-p.Done)/p.RateDown) * time.Second).Round(time.Second).String()
	}
	type field struct {
		text string
		prio int // higher is kept longer
	}
	fields := []field{
		{fmt.Sprintf("%5.1f%%", pct), 9},
		{humanBytes(p.Done) + "/" + humanBytes(p.Total), 5},
		{"down " + humanBytes(int64(p.RateDown)) + "/s", 7},
		{"up " + humanBytes(int64(p.RateUp)) + "/s", 2},
		{fmt.Sprintf("peers %d", p.Peers), 4},
		{eta, 6},
	}
	if p.WebSeeds > 0 || p.WebSeedDown > 0 {
		// Web-seed bytes apart: "down" counts both, this says how much came over HTTP.
		fields = append(fields, field{fmt.Sprintf("web %s (%d)", humanBytes(p.WebSeedDown), p.WebSeeds), 3})
	}
	if p.Peers == 0 && p.WebSeeds == 0 && p.RateDown < 1 && !p.Complete {
		// Say what it waits for rather than "down 0 B/s".
		fields[2] = field{"waiting for peers", 7}
	}
	join := func(fs []field) string {
		var parts []string
		for _, f := range fs {
			if f.text != "" {
				parts = append(parts, f.text)
			}
		}
		return strings.Join(parts, "  ")
	}
	if width <= 0 {
		return join(fields)
	}
	drop := func(fs []field) []field {
		low := 0
		for i, f := range fs {
			if f.prio < fs[low].prio {
				low = i
			}
		}
		return append(fs[:low:low], fs[low+1:]...)
	}
	// First with a bar, dropping fields down to percentage, rate and eta;
	// then, on a very narrow terminal, without one.
	withBar := fields
	for {
		text := join(withBar)
		// Room for "[" bar "] ": a bar shorter than 10 tells nothing.
		if room := width - 1 - len(text) - 3; room >= 10 {
			n := min(room, 40)
			fill := int(pct / 100 * float64(n))
			return "[" + strings.Repeat("=", fill) + strings.Repeat(" ", n-fill) + "] " + text
		}
		if len(withBar) <= 3 {
			break
		}
		withBar = drop(withBar)
	}
	for {
		text := join(fields)
		if len(text) < width || len(fields) == 1 {
			return fit(text, width)
		}
		fields = drop(fields)
	}
}

// activeMeter measures a transfer's rate over the time it was active: a
// seeder idle for an hour that sent 3 MiB in 20 ms did not upload at
// 850 B/s. Each progress report (about every 0.5 s) whose counter grew
// adds the time since the previous report.
type activeMeter struct {
	last   int64
	lastAt time.Time
	active time.Duration
}

func (m *activeMeter) add(n int64, now time.Time) {
	if n > m.last && !m.lastAt.IsZero() {
		m.active += min(now.Sub(m.lastAt), 2*time.Second)
	}
	m.last, m.lastAt = n, now
}

// describe says how much went and how fast while it went: "2.9 MiB in
// under a second", "300 MiB at 12.0 MiB/s while active".
func (m *activeMeter) describe(n int64) string {
	switch {
	case n == 0:
		return "0 B"
	case m.active < time.Second:
		return humanBytes(n) + " in under a second"
	default:
		return fmt.Sprintf("%s at %s/s while active", humanBytes(n), humanBytes(int64(rate(n, m.active))))
	}
}
