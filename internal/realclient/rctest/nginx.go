package rctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Nginx serves root with Debian's nginx, a child process on 127.0.0.1 with a generated
// config (no daemon, no master, everything it writes in a temp dir), and returns its base URL.
// Without nginx the test is skipped, except under CI=true, where .ci/run installs it.
func Nginx(tb testing.TB, root string) string {
	tb.Helper()
	return NginxConf(tb, root, "")
}

// NginxConf is Nginx with extra directives for the location (e.g. "limit_rate 8m;").
func NginxConf(tb testing.TB, root, extra string) string {
	tb.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatal("nginx is not installed (apt-get install nginx-light); CI must run this test")
			}
			tb.Skip("nginx not installed (apt-get install nginx-light); skipping the test against a real HTTP server")
		}
	}
	tmp := tb.TempDir()
	var lastErr error
	for range 5 { // the free port found may be taken before nginx binds it
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		conf := filepath.Join(tmp, "nginx.conf")
		// master_process off: one process, which runs as us (root in CI) and so reads root
		// whatever its permissions; no user directive needed.
		text := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:%[2]d;
		root %[3]s;
		location / { %[4]s }
	}
}
`, tmp, port, root, extra)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, "-p", tmp, "-e", filepath.Join(tmp, "error.log"), "-c", conf)
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				log, _ := os.ReadFile(filepath.Join(tmp, "error.log"))
				lastErr = fmt.Errorf("nginx exited: %v: %s", err, log)
			default:
			}
			if lastErr != nil {
				break
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				tb.Cleanup(func() {
					_ = cmd.Process.Kill()
					<-exited
				})
				return "http://" + addr + "/"
			}
			time.Sleep(20 * time.Millisecond)
		}
		if lastErr == nil {
			_ = cmd.Process.Kill()
			<-exited
			lastErr = fmt.Errorf("nginx did not listen on %s", addr)
		}
	}
	tb.Fatal(lastErr)
	return ""
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
