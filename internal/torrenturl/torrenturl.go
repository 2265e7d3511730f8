// Package torrenturl downloads a .torrent file over HTTP: the URL a user gives
// instead of a magnet or a path, or a magnet's xs= ("exact source").
//
// The server is a stranger: the body, the headers, the redirects and the time
// it takes are all bounded, and nothing it sends is quoted back beyond its
// status line.
package torrenturl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/magnetget/magnetget/internal/httpbound"
)

// Sentinel errors, wrapped by what Get returns.
var (
	ErrNotHTTP  = httpbound.ErrNotHTTP
	ErrTooLarge = errors.New(".torrent larger than allowed")
)

const (
	// DefaultTimeout bounds one Get whole: connect, redirects, headers and body.
	DefaultTimeout = 30 * time.Second
)

// IsURL reports whether s is an http or https URL (what Get fetches), so a
// caller can tell one apart from a path or a magnet.
func IsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Get downloads the .torrent at rawURL, at most maxSize bytes (after any gzip
// the server applied), within ctx and DefaultTimeout. Only a 200 answer is a
// .torrent; the caller parses and checks what comes back.
func Get(ctx context.Context, rawURL string, maxSize int) ([]byte, error) {
	if !IsURL(rawURL) {
		return nil, fmt.Errorf("torrenturl: %q: %w", rawURL, ErrNotHTTP)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("torrenturl: %w", err)
	}
	req.Header.Set("Accept", "application/x-bittorrent, */*;q=0.5")
	req.Header.Set("User-Agent", "magnetget")
	// One transport per Get: nothing to keep alive between the few fetches a
	// run makes, and no idle connection outlives the call.
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  15 * time.Second,
		MaxResponseHeaderBytes: httpbound.MaxHeaderBytes,
		DisableKeepAlives:      true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: httpbound.CheckRedirect}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, fmt.Errorf("torrenturl: %s: no answer within %v: %w", Redact(rawURL), DefaultTimeout, err)
		}
		return nil, fmt.Errorf("torrenturl: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("torrenturl: %s: server answered %s", Redact(rawURL), quoteStatus(resp.Status))
	}
	body, err := httpbound.ReadBody(resp, int64(maxSize), fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, maxSize))
	if err != nil {
		return nil, fmt.Errorf("torrenturl: %s: %w", Redact(rawURL), err)
	}
	return body, nil
}

// Redact drops a URL's user info and query (they may carry a passkey) for
// messages.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the URL"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

// quoteStatus keeps a status line short and printable: the server wrote it.
func quoteStatus(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
