// Package webseed fetches torrent data from HTTP servers: BEP 19 ("GetRight-style") web seeds,
// the url-list of a .torrent and the ws= of a magnet.
//
// Vocabulary: the torrent is one byte stream, the concatenation of its files (as in package
// storage); a web seed is one base URL. For a single-file torrent the URL is the file itself
// (or URL + name when the URL ends in '/'); for a multi-file torrent each file is at
// URL + name + '/' + path, every element percent-escaped.
//
// Flow: Seed.Read fetches a span of the stream. A span that crosses files becomes one HTTP
// Range request per file, made one after another on a keep-alive connection (HTTP/2 when a
// TLS server offers it); the caller runs several Reads at once to keep several ranges in
// flight. Every response is checked against what was asked (status, Content-Range, length)
// and read through a limit, so a server can never make us read more than we asked for, and a
// stall watchdog ends requests that stop moving. A server that answers a Range request with
// the whole file (200) is read only when the span starts near the file's head (the bytes
// before it are skipped); further in, Read fails with ErrRangeIgnored and the caller drops the
// seed, because each piece would cost a download of the file up to it.
//
// Health is the per-seed policy the caller applies to Read's errors: exponential backoff,
// Retry-After on 503 and 429, and dropping a seed after repeated failures or bad data.
package webseed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Errors callers branch on. Errors from Read wrap one of them, an *HTTPError, or the context's.
var (
	// ErrRangeIgnored: the server answered a Range request with the whole file, too far
	// from the file's start to skip to. Such a seed is useless: drop it.
	ErrRangeIgnored = errors.New("server ignores Range requests")
	// ErrFileMismatch: the server's file has another size than the torrent's: another
	// version of the file, not this torrent's. Drop the seed.
	ErrFileMismatch = errors.New("server's file has another size than the torrent's")
	// ErrBadResponse: a response that does not answer the request (wrong Content-Range or
	// length, body shorter than announced).
	ErrBadResponse = errors.New("bad response")
	// ErrStalled: no byte arrived for Options.StallTimeout.
	ErrStalled = errors.New("server stalled")
	// ErrRedirect: a redirect to something other than http/https, or too many of them.
	ErrRedirect = errors.New("bad redirect")
	// ErrBadURL: the web seed URL is not an absolute http or https URL.
	ErrBadURL = errors.New("bad web seed URL")
	// ErrNotFound: the server has no such file (404 or 410). The file is then Missing on
	// this seed; a mirror may lack some files of a multi-file torrent and serve the others.
	ErrNotFound = errors.New("file not on the server")
)

// HTTPError is a response status other than 200 and 206. RetryAfter is the server's
// Retry-After (on 503 and 429), zero when absent.
type HTTPError struct {
	Status     int
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return s
}

// File is one file of the torrent as a web seed serves it.
type File struct {
	Path   []string // path elements below the torrent's name (multi-file torrents only)
	Length int64
	Pad    bool // BEP 47 padding: zeros, never requested
}

// Torrent is the geometry a web seed needs: names and lengths, in info-dictionary order.
type Torrent struct {
	Name      string
	Files     []File
	MultiFile bool // the info dictionary has "files" (even if only one)
}

// Options tune a Seed. The zero value is what a user wants.
type Options struct {
	TLSConfig    *tls.Config   // nil: the system's roots; certificates are always verified
	MaxConns     int           // connections kept alive to the server; 0 = 4 (match the caller's Reads in flight)
	MaxRedirects int           // redirects followed per request; 0 = 5
	StallTimeout time.Duration // less than 16 KiB in this long ends a request with ErrStalled; 0 = 30s
}

const (
	defaultMaxConns     = 4
	defaultMaxRedirects = 5
	defaultStall        = 30 * time.Second
	// maxSkip bounds what Read discards from a 200 answer to reach the span's start: a file's
	// head is worth taking from a server without ranges, a gigabyte into it is not.
	maxSkip = 1 << 20
	// minProgress is what a server must send per StallTimeout.
	minProgress = 16 << 10
	// flushWait is how long received bytes may wait for more before they are handed on.
	flushWait = 20 * time.Millisecond
	// maxRetryAfter caps the Retry-After we parse (Health decides whether to wait that long).
	maxRetryAfter = 24 * time.Hour
)

// fileURL is one file's place in the stream and where the seed serves it.
type fileURL struct {
	url    string
	off    int64
	length int64
	pad    bool
}

// Seed is one web seed. It is safe for concurrent use: each Read is one request at a time
// on a connection of its own.
type Seed struct {
	base   string
	files  []fileURL
	total  int64
	client *http.Client
	tr     *http.Transport
	stall  time.Duration

	mu      sync.Mutex     // guards the following
	moved   map[int]string // file index -> where its URL last redirected to
	missing map[int]bool   // files the server answered 404 or 410 for
}

// New prepares a seed at rawURL for t. It fails with ErrBadURL for anything but an absolute
// http or https URL; it sends nothing.
func New(rawURL string, t Torrent, o Options) (*Seed, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("webseed: %w: %w", ErrBadURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("webseed: %w: %q is not an http or https URL", ErrBadURL, rawURL)
	}
	u.Fragment, u.RawFragment = "", ""
	s := &Seed{base: u.Redacted(), stall: o.StallTimeout}
	if s.stall <= 0 {
		s.stall = defaultStall
	}
	for _, f := range t.Files {
		var elems []string
		switch {
		case t.MultiFile:
			elems = append([]string{t.Name}, f.Path...)
		case strings.HasSuffix(u.Path, "/"):
			elems = []string{t.Name}
		}
		s.files = append(s.files, fileURL{url: join(u, elems), off: s.total, length: f.Length, pad: f.Pad})
		s.total += f.Length
	}
	maxConns := o.MaxConns
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	maxRedirects := o.MaxRedirects
	if maxRedirects <= 0 {
		maxRedirects = defaultMaxRedirects
	}
	var tlsConf *tls.Config
	if o.TLSConfig != nil {
		tlsConf = o.TLSConfig.Clone()
	}
	s.tr = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true, // we set our own TLS config and dialer, which turns it off otherwise
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 15 * time.Second,
		MaxIdleConnsPerHost: maxConns + 1,
		IdleConnTimeout:     90 * time.Second,
		// Byte offsets are into the file, never into a compressed encoding of it.
		DisableCompression: true,
		ReadBufferSize:     64 << 10,
	}
	s.client = &http.Client{
		Transport: s.tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("%w: more than %d redirects", ErrRedirect, maxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: to %s", ErrRedirect, req.URL.Redacted())
			}
			return nil
		},
	}
	return s, nil
}

// join appends escaped path elements to u (which keeps its query).
func join(u *url.URL, elems []string) string {
	if len(elems) == 0 {
		return u.String()
	}
	v := *u
	path, raw := u.Path, u.EscapedPath()
	if !strings.HasSuffix(path, "/") {
		path += "/"
		raw += "/"
	}
	esc := make([]string, len(elems))
	for i, e := range elems {
		esc[i] = url.PathEscape(e)
	}
	v.Path = path + strings.Join(elems, "/")
	v.RawPath = raw + strings.Join(esc, "/")
	return v.String()
}

// URL returns the seed's base URL (without a password), for messages.
func (s *Seed) URL() string { return s.base }

// FileURL returns the URL file i is fetched from.
func (s *Seed) FileURL(i int) string { return s.files[i].url }

// Close drops the seed's idle connections.
func (s *Seed) Close() { s.tr.CloseIdleConnections() }

// Read fetches bytes [off, off+n) of the torrent's stream and hands them to fn in order, in
// chunks of at most len(buf) bytes read into buf (fn must not keep the slice). Padding files
// are zeros, fetched from nowhere. Read stops at the first error, the server's or fn's, and
// returns it; bytes already given to fn stay given.
func (s *Seed) Read(ctx context.Context, off, n int64, buf []byte, fn func([]byte) error) error {
	if off < 0 || n < 0 || off+n > s.total || off+n < off {
		return fmt.Errorf("webseed: span %d+%d outside the torrent's %d bytes", off, n, s.total)
	}
	if len(buf) == 0 {
		return errors.New("webseed: empty buffer")
	}
	i := sort.Search(len(s.files), func(i int) bool { return s.files[i].off+s.files[i].length > off })
	for ; n > 0 && i < len(s.files); i++ {
		f := s.files[i]
		if f.length == 0 {
			continue
		}
		start := off - f.off
		k := min(n, f.length-start)
		var err error
		if f.pad {
			err = zeros(k, buf, fn)
		} else {
			err = s.fetch(ctx, i, start, k, buf, fn)
		}
		if err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

func zeros(n int64, buf []byte, fn func([]byte) error) error {
	clear(buf)
	for n > 0 {
		k := int(min(n, int64(len(buf))))
		if err := fn(buf[:k]); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// fetch gets bytes [start, start+n) of file i. A file whose URL redirected (archive.org
// sends every request on to a data node) is asked at the redirect's target directly, which
// saves a round trip per range; when the target fails before any byte (an expired token, a
// node gone), the file's own URL is asked again at once.
func (s *Seed) fetch(ctx context.Context, i int, start, n int64, buf []byte, fn func([]byte) error) error {
	err := s.fetchVia(ctx, i, start, n, buf, fn)
	if errors.Is(err, ErrNotFound) {
		s.mu.Lock()
		if s.missing == nil {
			s.missing = make(map[int]bool)
		}
		s.missing[i] = true
		s.mu.Unlock()
	}
	return err
}

// Missing reports whether the server answered 404 or 410 for file i.
func (s *Seed) Missing(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.missing[i]
}

func (s *Seed) fetchVia(ctx context.Context, i int, start, n int64, buf []byte, fn func([]byte) error) error {
	f := s.files[i]
	s.mu.Lock()
	target := s.moved[i]
	s.mu.Unlock()
	if target == "" {
		return s.get(ctx, i, f.url, start, n, buf, fn)
	}
	delivered := false
	err := s.get(ctx, i, target, start, n, buf, func(b []byte) error {
		delivered = true
		return fn(b)
	})
	if err == nil || delivered || ctx.Err() != nil {
		return err
	}
	s.mu.Lock()
	if s.moved[i] == target {
		delete(s.moved, i)
	}
	s.mu.Unlock()
	return s.get(ctx, i, f.url, start, n, buf, fn)
}

// get fetches bytes [start, start+n) of file i from target (its URL or where that redirected).
func (s *Seed) get(ctx context.Context, i int, target string, start, n int64, buf []byte, fn func([]byte) error) (err error) {
	f := s.files[i]
	f.url = target
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog covers the whole exchange: connecting, the headers and every read.
	watchdog := time.AfterFunc(s.stall, func() { cancel(ErrStalled) })
	defer watchdog.Stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
				err = fmt.Errorf("webseed: %s: %w (no data for %v)", f.url, ErrStalled, s.stall)
			} else {
				err = fmt.Errorf("webseed: %s: %w", f.url, cause)
			}
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return fmt.Errorf("webseed: %w: %w", ErrBadURL, err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, start+n-1))
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "magnetget")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webseed: %s: %w", f.url, err)
	}
	defer resp.Body.Close()
	watchdog.Reset(s.stall)
	fail := func(kind error, format string, args ...any) error {
		return fmt.Errorf("webseed: %s: %w: %s", f.url, kind, fmt.Sprintf(format, args...))
	}
	skip := int64(0)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		first, last, size, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fail(ErrBadResponse, "%v", err)
		}
		if size >= 0 && size != f.length {
			return fail(ErrFileMismatch, "%d bytes, the torrent says %d", size, f.length)
		}
		if first != start || last != start+n-1 {
			return fail(ErrBadResponse, "asked for bytes %d-%d, got %d-%d", start, start+n-1, first, last)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != n {
			return fail(ErrBadResponse, "Content-Length %d for %d bytes", resp.ContentLength, n)
		}
		if final := resp.Request.URL.String(); final != target {
			s.mu.Lock()
			if s.moved == nil {
				s.moved = make(map[int]string)
			}
			s.moved[i] = final
			s.mu.Unlock()
		}
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != f.length {
			return fail(ErrFileMismatch, "%d bytes, the torrent says %d", resp.ContentLength, f.length)
		}
		if start > maxSkip {
			return fail(ErrRangeIgnored, "whole file sent for bytes from %d", start)
		}
		skip = start
	default:
		e := &HTTPError{Status: resp.StatusCode}
		if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests {
			e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		if e.Status == http.StatusNotFound || e.Status == http.StatusGone {
			return fmt.Errorf("webseed: %s: %w: %w", f.url, ErrNotFound, e)
		}
		return fmt.Errorf("webseed: %s: %w", f.url, e)
	}
	body := io.LimitReader(resp.Body, skip+n)
	var progress int64 // bytes since the watchdog was last reset
	for skip+n > 0 {
		want := min(skip+n, int64(len(buf)))
		if skip > 0 {
			want = min(want, skip)
		}
		// Fill buf (one hash update and one write per chunk downstream), but hand on what has
		// arrived once it is flushWait old: a slow server's bytes are not held back.
		k, err := 0, error(nil)
		var first time.Time
		for k < int(want) && err == nil {
			var m int
			m, err = body.Read(buf[k:want])
			if m > 0 {
				// A server must keep sending, not trickle a byte now and then.
				if progress += int64(m); progress >= minProgress {
					watchdog.Reset(s.stall)
					progress = 0
				}
				if k == 0 {
					first = time.Now()
				}
				k += m
			}
			if k > 0 && time.Since(first) >= flushWait {
				break
			}
		}
		if err != nil && (k == 0 || err != io.EOF) {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fail(ErrBadResponse, "body ended %d bytes early", skip+n-int64(k))
			}
			return fmt.Errorf("webseed: %s: %w", f.url, err)
		}
		if skip > 0 {
			skip -= int64(k)
			continue
		}
		if err := fn(buf[:k]); err != nil {
			return err
		}
		n -= int64(k)
	}
	if resp.StatusCode == http.StatusPartialContent {
		// Reading the (empty) rest lets the transport see the end and reuse the connection.
		var one [1]byte
		_, _ = resp.Body.Read(one[:])
	}
	return nil
}

// parseContentRange parses "bytes first-last/size" (size -1 for "*").
func parseContentRange(s string) (first, last, size int64, err error) {
	first, last, size, ok := parseContentRangeOK(s)
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", truncate(s, 80))
	}
	return first, last, size, nil
}

func parseContentRangeOK(s string) (first, last, size int64, ok bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	span, total, ok := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok {
		return 0, 0, 0, false
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return 0, 0, 0, false
	}
	if first, ok = parseInt(a); !ok {
		return 0, 0, 0, false
	}
	if last, ok = parseInt(b); !ok || last < first {
		return 0, 0, 0, false
	}
	size = -1
	if total != "*" {
		if size, ok = parseInt(total); !ok || last >= size {
			return 0, 0, 0, false
		}
	}
	return first, last, size, true
}

// parseInt parses a non-negative decimal of at most 18 digits (no sign, no overflow).
func parseInt(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseRetryAfter parses Retry-After: delay-seconds or an HTTP date. Absent or unparsable:
// zero (the caller's own backoff applies).
func parseRetryAfter(s string, now time.Time) time.Duration {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	if v, ok := parseInt(s); ok {
		return min(time.Duration(min(v, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(s); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
