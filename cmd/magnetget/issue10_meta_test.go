package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

// TestMetaTakesMetadataFromPeerThatDialsUs: meta of a magnet whose tracker names nobody (no
// x.pe, no DHT) listens on --listen, tells the tracker that port, and writes the .torrent
// when the only seeder dials us, as a seed told where its leechers are does. Before, meta did
// not listen at all and told trackers port 6881: it waited until --timeout.
func TestMetaTakesMetadataFromPeerThatDialsUs(t *testing.T) {
	src := t.TempDir()
	mi, _ := payload(t, src, "m.bin", 96<<10, torrentfile.Options{})
	ih := mi.HashInfoBytes()
	seeder, _ := runSwarm(t, swarm.Config{InfoHash: ih, Info: mi.InfoBytes, Dir: src, Seed: true, ReadOnly: true}, "")
	rt := newRecordingTracker(t)

	const client = "127.0.223.1"
	us := netip.AddrPortFrom(netip.MustParseAddr(client), freePort(t, client))
	dst := filepath.Join(t.TempDir(), "m.torrent")
	m := &magnet.Magnet{InfoHash: ih, HasV1: true, Trackers: []string{rt.srv.URL + "/announce"}}
	p := startIn(t, "meta", m.String(), "-o", dst, "--timeout", "30s", "--bootstrap-file", "/dev/null",
		"--data-dir", t.TempDir(), "--listen", fmt.Sprintf("/ip4/%s/tcp/%d", client, us.Port()))
	// Once meta answers for the infohash (a handshake from elsewhere succeeds), the seeder dials us.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	waitFor(t, 30*time.Second, "meta to answer a handshake for the infohash on --listen", func() bool {
		c, err := peerwire.Dial(ctx, us, ih, peerwire.Options{LocalAddr: netip.MustParseAddr("127.0.223.9"), Timeout: 2 * time.Second})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	seeder.AddPeer(us)
	if code := p.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("meta: exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout.String(), p.stderr.String())
	}
	got, err := torrentfile.Load(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.InfoBytes, mi.InfoBytes) {
		t.Fatal("the written .torrent has another info dict")
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.port) == 0 {
		t.Fatal("the tracker heard nothing")
	}
	for i, port := range rt.port {
		if port != strconv.Itoa(int(us.Port())) {
			t.Errorf("announce %q told the tracker port %s, want the --listen port %d", rt.events[i], port, us.Port())
		}
	}
}
