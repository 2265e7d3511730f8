// Package httpbound holds what every HTTP GET of ours to a stranger's server shares (a
// tracker's announce, a .torrent's download): the redirect policy, the header size, and a body
// read that costs at most its limit. Web seeds (swarm/webseed) stream ranges and bound them
// their own way.
package httpbound

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

const (
	// MaxRedirects bounds the redirects followed (CheckRedirect).
	MaxRedirects = 5
	// MaxHeaderBytes is the http.Transport.MaxResponseHeaderBytes to use.
	MaxHeaderBytes = 64 << 10
)

// ErrNotHTTP: a URL (or a redirect) that is not http or https.
var ErrNotHTTP = errors.New("not an http or https URL")

// CheckRedirect is an http.Client.CheckRedirect: at most MaxRedirects, to http or https only
// (never file:// or anything else a server names).
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return fmt.Errorf("more than %d redirects", MaxRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %q: %w", req.URL.Scheme, ErrNotHTTP)
	}
	return nil
}

// ReadBody reads resp's body, at most limit bytes (after any gzip Go's transport undid): a
// Content-Length above limit, or a body that goes on past it, is tooLarge. The buffer grows as
// bytes arrive, so a server that announces nothing or lies costs what it sends, never more than
// limit+1; the caller's context ends one that trickles.
func ReadBody(resp *http.Response, limit int64, tooLarge error) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge
	}
	return body, nil
}
