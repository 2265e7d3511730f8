package torrenturl

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// serve runs h on 127.0.0.1 for the test and returns its base URL.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

func TestGet(t *testing.T) {
	want := []byte("d8:announce3:url4:infod4:name1:xee")
	base := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a.torrent":
			w.Write(want)
		case "/moved":
			http.Redirect(w, r, "/a.torrent", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/ftp":
			http.Redirect(w, r, "ftp://127.0.0.1/a.torrent", http.StatusFound)
		case "/big":
			w.Header().Set("Content-Length", "100000000")
			w.Write(bytes.Repeat([]byte("x"), 1<<16))
		default:
			http.Error(w, "no\x1b[31m such thing", http.StatusNotFound)
		}
	})
	ctx := context.Background()
	for _, path := range []string{"/a.torrent", "/moved"} {
		got, err := Get(ctx, base+path, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get %s = %q, %v; want the .torrent", path, got, err)
		}
	}
	for _, c := range []struct {
		path string
		want string
	}{
		{"/missing?passkey=secret", "404 Not Found"},
		{"/loop", "redirects"},
		{"/ftp", ErrNotHTTP.Error()},
		{"/big", ErrTooLarge.Error()},
	} {
		_, err := Get(ctx, base+c.path, 1<<20)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Get %s: %v, want an error saying %q", c.path, err, c.want)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\x1b") || strings.Contains(fmt.Sprint(err), "secret") {
			t.Errorf("Get %s: the error quotes what it should not: %q", c.path, err)
		}
	}
	for _, bad := range []string{"ftp://127.0.0.1/a.torrent", "/tmp/a.torrent", "magnet:?xt=urn:btih:00", "http://"} {
		if _, err := Get(ctx, bad, 1<<20); !errors.Is(err, ErrNotHTTP) {
			t.Errorf("Get %q = %v, want ErrNotHTTP", bad, err)
		}
	}
}

// A server that sends without end, announced or not, gzip-compressed or not, costs at most
// about the limit: the body is read as it arrives and cut at maxSize+1.
func TestGetBoundsHostileBodies(t *testing.T) {
	const limit = 1 << 20
	base := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("d"), 32<<10)
		var out interface{ Write([]byte) (int, error) } = w
		if r.URL.Path == "/gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			out = zw
		}
		for range 64 << 20 / len(chunk) { // 64 MiB, or 64 MiB inflated
			if _, err := out.Write(chunk); err != nil {
				return
			}
		}
	})
	for _, path := range []string{"/plain", "/gzip"} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Get(context.Background(), base+path, limit)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: %v, want ErrTooLarge", path, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*limit {
			t.Errorf("%s: %d MiB allocated for a %d MiB limit", path, alloc>>20, limit>>20)
		}
	}
}

// A server that trickles its answer is given up when the caller's context ends, not when it
// pleases.
func TestGetSlowServer(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	base := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("d"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Get(ctx, base+"/slow", 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a 1-byte answer of a promised 1000 was taken as a .torrent")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Get did not return when its context ended")
	}
}
