package webseed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// serveDir serves dir with net/http's file server (Range support, keep-alive) on 127.0.0.1.
func serveDir(t *testing.T, dir string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// readAll reads [off, off+n) through s with a small buffer, so chunks are exercised.
func readAll(ctx context.Context, s *Seed, off, n int64) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096+17)
	err := s.Read(ctx, off, n, buf, func(b []byte) error {
		out = append(out, b...)
		return nil
	})
	return out, err
}

func mustNew(t *testing.T, u string, tor Torrent, o Options) *Seed {
	t.Helper()
	s, err := New(u, tor, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestSingleFile(t *testing.T) {
	dir := t.TempDir()
	data := randBytes(300_000, 1)
	if err := os.WriteFile(filepath.Join(dir, "image.iso"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := serveDir(t, dir, nil)
	tor := Torrent{Name: "image.iso", Files: []File{{Length: int64(len(data))}}}
	for _, u := range []string{srv.URL + "/image.iso", srv.URL + "/"} {
		s := mustNew(t, u, tor, Options{})
		for _, span := range [][2]int64{{0, 300_000}, {12345, 1}, {299_999, 1}, {65536, 100_000}} {
			got, err := readAll(context.Background(), s, span[0], span[1])
			if err != nil {
				t.Fatalf("%s %v: %v", u, span, err)
			}
			if !bytes.Equal(got, data[span[0]:span[0]+span[1]]) {
				t.Fatalf("%s %v: wrong bytes", u, span)
			}
		}
		if _, err := readAll(context.Background(), s, 299_999, 2); err == nil {
			t.Fatal("a span past the end was accepted")
		}
	}
}

// TestMultiFile: URL + name + '/' + path, escaped; a span crossing several files (one of them
// empty, one padding) is fetched as several ranges and comes back as the stream.
func TestMultiFile(t *testing.T) {
	dir := t.TempDir()
	names := [][]string{{"a b", "100%.bin"}, {"empty"}, {"#hash?q", "ünï"}, {"c.dat"}}
	sizes := []int{5000, 0, 70_001, 4096}
	var files []File
	var stream []byte
	for i, p := range names {
		d := randBytes(sizes[i], uint64(i)+10)
		fp := filepath.Join(append([]string{dir, "My Torrent"}, p...)...)
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, d, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: p, Length: int64(len(d))})
		stream = append(stream, d...)
		if i == 0 { // a BEP 47 pad file after the first: never requested
			files = append(files, File{Path: []string{".pad", "3000"}, Length: 3000, Pad: true})
			stream = append(stream, make([]byte, 3000)...)
		}
	}
	var mu sync.Mutex
	var paths []string
	srv := serveDir(t, dir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			paths = append(paths, r.URL.Path)
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	tor := Torrent{Name: "My Torrent", Files: files, MultiFile: true}
	for _, base := range []string{srv.URL, srv.URL + "/"} {
		s := mustNew(t, base, tor, Options{})
		if got, want := s.FileURL(0), srv.URL+"/My%20Torrent/a%20b/100%25.bin"; got != want {
			t.Errorf("file URL %s, want %s", got, want)
		}
		got, err := readAll(context.Background(), s, 0, int64(len(stream)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, stream) {
			t.Fatal("wrong bytes for the whole stream")
		}
		got, err = readAll(context.Background(), s, 4000, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, stream[4000:14000]) {
			t.Fatal("wrong bytes for a span across files")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if strings.Contains(p, ".pad") || strings.HasSuffix(p, "/empty") {
			t.Errorf("requested %s", p)
		}
	}
}

// TestKeepAlive: many small reads reuse one connection.
func TestKeepAlive(t *testing.T) {
	dir := t.TempDir()
	data := randBytes(1<<20, 2)
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	srv := httptest.NewUnstartedServer(http.FileServer(http.Dir(dir)))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := mustNew(t, srv.URL+"/f", Torrent{Name: "f", Files: []File{{Length: 1 << 20}}}, Options{})
	for i := range 50 {
		off := int64(i) * 20000
		got, err := readAll(context.Background(), s, off, 20000)
		if err != nil || !bytes.Equal(got, data[off:off+20000]) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 50 sequential ranges, want 1 (keep-alive)", n)
	}
}

// TestRetryAfter: a 503 carries the server's Retry-After out to Health, which waits that long.
func TestRetryAfter(t *testing.T) {
	dir := t.TempDir()
	data := randBytes(10000, 3)
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	var calls atomic.Int32
	srv := serveDir(t, dir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch calls.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusServiceUnavailable)
			case 2:
				w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
				w.WriteHeader(http.StatusTooManyRequests)
			default:
				h.ServeHTTP(w, r)
			}
		})
	})
	s := mustNew(t, srv.URL+"/f", Torrent{Name: "f", Files: []File{{Length: 10000}}}, Options{})
	var h Health
	start := time.Now()
	_, err := readAll(context.Background(), s, 0, 100)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 503 || he.RetryAfter != 7*time.Second {
		t.Fatalf("err %v, want 503 with Retry-After 7s", err)
	}
	if drop := h.Failed(err, start, start); drop != "" || h.ReadyAt().Sub(start) < 7*time.Second {
		t.Fatalf("after 503 Retry-After 7: drop %q, ready in %v", drop, h.ReadyAt().Sub(start))
	}
	_, err = readAll(context.Background(), s, 0, 100)
	if !errors.As(err, &he) || he.Status != 429 || he.RetryAfter < 80*time.Second || he.RetryAfter > 91*time.Second {
		t.Fatalf("err %v, want 429 with Retry-After about 90s", err)
	}
	got, err := readAll(context.Background(), s, 100, 900)
	if err != nil || !bytes.Equal(got, data[100:1000]) {
		t.Fatalf("after the server recovered: %v", err)
	}
}

// TestIgnoresRange: a server that sends the whole file with 200. Near the file's head we skip
// to the span and read only it; further in, ErrRangeIgnored, and nothing past the span is read.
func TestIgnoresRange(t *testing.T) {
	data := randBytes(3<<20, 4)
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(200)
		for off := 0; off < len(data); off += 16 << 10 {
			n, err := w.Write(data[off : off+16<<10])
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	s := mustNew(t, srv.URL+"/f", Torrent{Name: "f", Files: []File{{Length: int64(len(data))}}}, Options{})
	got, err := readAll(context.Background(), s, 1000, 50000)
	if err != nil || !bytes.Equal(got, data[1000:51000]) {
		t.Fatalf("span near the head from a 200: %v", err)
	}
	_, err = readAll(context.Background(), s, 2<<20, 1000)
	if !errors.Is(err, ErrRangeIgnored) {
		t.Fatalf("span 2 MiB in from a 200: %v, want ErrRangeIgnored", err)
	}
	var h Health
	if drop := h.Failed(err, time.Now(), time.Now()); drop == "" {
		t.Error("a seed that ignores Range is not dropped")
	}
}

// TestRedirect: redirects are followed to http(s), a bounded number of times.
func TestRedirect(t *testing.T) {
	dir := t.TempDir()
	data := randBytes(20000, 5)
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	target := serveDir(t, dir, nil)
	var movedHits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/moved/f", func(w http.ResponseWriter, r *http.Request) {
		movedHits.Add(1)
		http.Redirect(w, r, target.URL+"/f", http.StatusFound)
	})
	var expiring atomic.Bool
	mux.HandleFunc("/node/f", func(w http.ResponseWriter, r *http.Request) {
		if expiring.Load() {
			http.Error(w, "token expired", http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	})
	mux.HandleFunc("/tokens/f", func(w http.ResponseWriter, r *http.Request) {
		movedHits.Add(1)
		http.Redirect(w, r, "/node/f", http.StatusFound)
	})
	mux.HandleFunc("/loop/f", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop/f", http.StatusFound)
	})
	mux.HandleFunc("/ftp/f", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://127.0.0.1/f", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tor := Torrent{Name: "f", Files: []File{{Length: 20000}}}
	moved := mustNew(t, srv.URL+"/moved/f", tor, Options{})
	for i := range 5 {
		got, err := readAll(context.Background(), moved, int64(i)*1000, 15000)
		if err != nil || !bytes.Equal(got, data[i*1000:i*1000+15000]) {
			t.Fatalf("through a redirect: %v", err)
		}
	}
	if n := movedHits.Swap(0); n != 1 {
		t.Errorf("the redirecting URL was asked %d times for 5 ranges, want 1 (then its target directly)", n)
	}
	// A target that stops serving (an expired token): the seed's own URL is asked again.
	tokens := mustNew(t, srv.URL+"/tokens/f", tor, Options{})
	for i := range 3 {
		if i == 2 {
			expiring.Store(true)
		}
		got, err := readAll(context.Background(), tokens, 0, 100)
		if i < 2 && (err != nil || !bytes.Equal(got, data[:100])) {
			t.Fatalf("range %d through a redirect: %v", i, err)
		}
		if i == 2 && !errors.As(err, new(*HTTPError)) {
			t.Fatalf("expired target: %v", err)
		}
	}
	if n := movedHits.Load(); n != 2 {
		t.Errorf("the redirecting URL was asked %d times, want 2 (once, and again when its target failed)", n)
	}
	for _, p := range []string{"/loop/f", "/ftp/f"} {
		_, err := readAll(context.Background(), mustNew(t, srv.URL+p, tor, Options{}), 0, 10)
		if !errors.Is(err, ErrRedirect) {
			t.Errorf("%s: %v, want ErrRedirect", p, err)
		}
	}
}

// TestSlowServer: a server that stops sending is bounded by ctx, and by the stall timeout.
func TestSlowServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-99999/100000")
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	tor := Torrent{Name: "f", Files: []File{{Length: 100000}}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := readAll(ctx, mustNew(t, srv.URL+"/f", tor, Options{}), 0, 100000)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow server under a ctx deadline: %v", err)
	}
	_, err = readAll(context.Background(), mustNew(t, srv.URL+"/f", tor, Options{StallTimeout: 200 * time.Millisecond}), 0, 100000)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("slow server with a stall timeout: %v", err)
	}
}

// rawServer answers every connection with resp, then writes filler until the client leaves.
func rawServer(t *testing.T, resp string, endless bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, resp)
				fill := bytes.Repeat([]byte{'x'}, 64<<10)
				for endless {
					n, err := c.Write(fill)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/f", &sent
}

// TestHugeContentLength: what a server claims never sizes what we read or allocate.
func TestHugeContentLength(t *testing.T) {
	tor := Torrent{Name: "f", Files: []File{{Length: 1 << 30}}}
	cases := []struct {
		name, resp string
		want       error
	}{
		{"206 claiming more than the range", "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/1073741824\r\nContent-Length: 99999999999999999\r\n\r\n", ErrBadResponse},
		{"200 claiming a huge file", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n", ErrFileMismatch},
		{"206 for a huge file", "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/999999999999999999\r\nContent-Length: 100\r\n\r\n", ErrFileMismatch},
		{"206 with a short body", "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/1073741824\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort", ErrBadResponse},
		{"206 for other bytes", "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-104/1073741824\r\nContent-Length: 100\r\n\r\n", ErrBadResponse},
		{"garbled Content-Range", "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99999999999999999999999/5\r\nContent-Length: 100\r\n\r\n", ErrBadResponse},
	}
	for _, c := range cases {
		u, _ := rawServer(t, c.resp, strings.Contains(c.name, "huge"))
		_, err := readAll(context.Background(), mustNew(t, u, tor, Options{}), 0, 100)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// No length at all, the body endless: exactly the span is read, and Read returns.
	u, sent := rawServer(t, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", true)
	got, err := readAll(context.Background(), mustNew(t, u, tor, Options{}), 0, 100_000)
	if err != nil || len(got) != 100_000 || got[99_999] != 'x' {
		t.Fatalf("endless 200: %d bytes, %v", len(got), err)
	}
	_ = sent
}

// TestTLS: certificates are verified; HTTP/2 is used where the server offers it.
func TestTLS(t *testing.T) {
	data := randBytes(50000, 6)
	var proto atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tor := Torrent{Name: "f", Files: []File{{Length: 50000}}}
	_, err := readAll(context.Background(), mustNew(t, srv.URL+"/f", tor, Options{}), 0, 100)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed server accepted without its CA: %v", err)
	}
	conf := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	got, err := readAll(context.Background(), mustNew(t, srv.URL+"/f", tor, Options{TLSConfig: conf}), 1000, 40000)
	if err != nil || !bytes.Equal(got, data[1000:41000]) {
		t.Fatalf("over TLS with its CA: %v", err)
	}
	if proto.Load() != 2 {
		t.Errorf("HTTP/%d over TLS, want HTTP/2", proto.Load())
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"ftp://example.org/f", "/relative", "http://", "file:///etc/passwd", "%zz"} {
		if _, err := New(u, Torrent{Name: "f"}, Options{}); !errors.Is(err, ErrBadURL) {
			t.Errorf("%q: %v, want ErrBadURL", u, err)
		}
	}
}

// TestFnError: an error from fn stops Read and comes back unchanged.
func TestFnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), randBytes(100000, 8), 0o644)
	srv := serveDir(t, dir, nil)
	s := mustNew(t, srv.URL+"/f", Torrent{Name: "f", Files: []File{{Length: 100000}}}, Options{})
	stop := errors.New("stop")
	calls := 0
	err := s.Read(context.Background(), 0, 100000, make([]byte, 1000), func([]byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}

// TestNotFound: a 404 marks that file Missing (a mirror may lack some files) and is not a
// failure of the seed; the other files are still served.
func TestNotFound(t *testing.T) {
	dir := t.TempDir()
	data := randBytes(5000, 9)
	os.MkdirAll(filepath.Join(dir, "t"), 0o755)
	os.WriteFile(filepath.Join(dir, "t", "b"), data, 0o644)
	srv := serveDir(t, dir, nil)
	s := mustNew(t, srv.URL, Torrent{Name: "t", MultiFile: true, Files: []File{{Path: []string{"a"}, Length: 100}, {Path: []string{"b"}, Length: 5000}}}, Options{})
	_, err := readAll(context.Background(), s, 0, 200)
	if !errors.Is(err, ErrNotFound) || !s.Missing(0) || s.Missing(1) {
		t.Fatalf("404: err %v, missing %v %v", err, s.Missing(0), s.Missing(1))
	}
	var h Health
	if drop := h.Failed(err, time.Now(), time.Now()); drop != "" || h.Failures() != 0 || !h.ReadyAt().IsZero() {
		t.Errorf("a 404 counted against the seed: drop %q, failures %d", drop, h.Failures())
	}
	got, err := readAll(context.Background(), s, 100, 5000)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file the mirror has: %v", err)
	}
}

// TestTrickleStalls: a server that sends a little now and then, never silent for long, is
// ended all the same: it must send 16 KiB per stall timeout.
func TestTrickleStalls(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-99999/100000")
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusPartialContent)
		for range 2000 {
			if _, err := w.Write(make([]byte, 50)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	s := mustNew(t, srv.URL+"/f", Torrent{Name: "f", Files: []File{{Length: 100000}}}, Options{StallTimeout: 300 * time.Millisecond})
	if _, err := readAll(context.Background(), s, 0, 100000); !errors.Is(err, ErrStalled) {
		t.Fatalf("trickling server: %v, want ErrStalled", err)
	}
}
