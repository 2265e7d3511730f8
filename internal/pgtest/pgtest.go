// Package pgtest runs a real, private PostgreSQL server for tests: the
// binaries of Debian's postgresql package (initdb and postgres under
// /usr/lib/postgresql/*/bin), a fresh cluster in a temporary directory,
// listening only on a Unix socket in that directory (no TCP port), with
// fsync off. When the tests run as root the cluster belongs to an
// unprivileged user (postgres, else nobody), because PostgreSQL refuses to
// run as root.
//
// One server serves a whole test binary: the first New starts it and
// Main stops it after the tests. Each New returns a fresh database on it,
// so tests do not see each other's rows.
//
// Without the binaries New skips the test with a note, except under
// CI=true, where it fails: CI installs postgresql and must run these tests.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// server is the shared instance.
type server struct {
	bin  string // directory of initdb and postgres
	dir  string // temp dir: data/, the socket, the log
	cred *syscall.Credential
	port int

	mu   sync.Mutex // guards cmd and waited
	cmd  *exec.Cmd
	wait chan struct{} // closed when cmd exited
}

var (
	once     sync.Once
	shared   *server
	startErr error
	dbSeq    int
	dbSeqMu  sync.Mutex
)

var errNoBinaries = errors.New("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")

// skipOrFail skips the test when the binaries are missing, except under
// CI=true; other start errors fail it.
func skipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, errNoBinaries) {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("pgtest: %v (CI=true: .ci/run installs postgresql, so this must run)", err)
		}
		tb.Skipf("pgtest: %v; install Debian's postgresql package to run this test", err)
	}
	tb.Fatalf("pgtest: %v", err)
}

// Private starts a server of the test's own (for packages whose TestMain
// is not pgtest.Main), stopped and removed at the test's cleanup, and
// returns the URL of its postgres database and functions to stop and
// start it again.
func Private(tb testing.TB) (url string, stop, start func()) {
	tb.Helper()
	s, err := startServer()
	if err != nil {
		skipOrFail(tb, err)
	}
	tb.Cleanup(func() {
		s.stop()
		os.RemoveAll(s.dir)
	})
	return s.url("postgres"), s.stop, func() {
		if err := s.run(); err != nil {
			tb.Errorf("pgtest: restart: %v", err)
		}
	}
}

// Main runs the package's tests and then stops the shared server, if one
// was started. Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.stop()
		os.RemoveAll(shared.dir)
	}
	return code
}

// Available reports whether the binaries are installed (benchmarks use it
// to skip quietly).
func Available() bool { return binDir() != "" }

func binDir() string {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		return ""
	}
	// The highest major version.
	slices.SortFunc(m, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return va - vb
	})
	bin := filepath.Dir(m[len(m)-1])
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		return ""
	}
	return bin
}

// New returns the URL of a fresh, empty database on the shared server,
// starting the server first if needed.
func New(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { shared, startErr = startServer() })
	if startErr != nil {
		skipOrFail(tb, startErr)
	}
	dbSeqMu.Lock()
	dbSeq++
	name := fmt.Sprintf("t%d", dbSeq)
	dbSeqMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, shared.url("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return shared.url(name)
}

// Stop shuts the shared server down (fast shutdown: clients are cut off),
// to test what clients do during an outage. Start brings it back.
func Stop(tb testing.TB) {
	tb.Helper()
	if shared == nil {
		tb.Fatal("pgtest: Stop before New")
	}
	shared.stop()
}

// Start starts the shared server again after Stop, on the same socket and
// data.
func Start(tb testing.TB) {
	tb.Helper()
	if shared == nil {
		tb.Fatal("pgtest: Start before New")
	}
	if err := shared.run(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

func (s *server) url(db string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(s.port)}, "sslmode": {"disable"}}
	return "postgres://postgres@/" + db + "?" + q.Encode()
}

func startServer() (*server, error) {
	bin := binDir()
	if bin == "" {
		return nil, errNoBinaries
	}
	base := ""
	if os.Geteuid() == 0 && !othersCanEnter(os.TempDir()) {
		// The unprivileged user must reach the directory.
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin, dir: dir, port: 5432}
	if os.Geteuid() == 0 {
		// PostgreSQL will not run as root: hand the directory to an
		// unprivileged user and run the binaries as that user.
		var u *user.User
		for _, name := range []string{"postgres", "nobody"} {
			if u, err = user.Lookup(name); err == nil {
				break
			}
		}
		if u == nil {
			os.RemoveAll(dir)
			return nil, errors.New("running as root and neither a postgres nor a nobody user exists")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := s.command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	// Settings for a throwaway test server: no TCP, no durability, small.
	conf := fmt.Sprintf("\nlisten_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 128MB\nmax_connections = 100\nlogging_collector = off\n", dir, s.port)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.run(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// othersCanEnter reports whether every directory from / down to dir is
// searchable by other users.
func othersCanEnter(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

func (s *server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run starts the postmaster as our child (so it dies with the test binary
// even if Main never runs) and waits until it accepts connections.
func (s *server) run() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	wait := make(chan struct{})
	go func() {
		cmd.Wait()
		close(wait)
	}()
	s.mu.Lock()
	s.cmd, s.wait = cmd, wait
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-wait:
			log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			return fmt.Errorf("postgres exited at start: %s", tail(log, 2000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("postgres did not accept connections within 60s: %v", err)
		}
	}
}

// stop asks for a fast shutdown (SIGINT), then kills after 20 s.
func (s *server) stop() {
	s.mu.Lock()
	cmd, wait := s.cmd, s.wait
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-wait:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-wait
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
