package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

// TestSeedHybridOneSource: `seed` of a hybrid (v1+v2) torrent whose tracker names one leecher
// under both swarm hashes. The tracker hears exactly one "started" and, at the end, one
// "stopped" under each hash, each "started" saying we have everything (left=0), and the
// leecher, which never dials, is dialled once and gets the whole file. Before, seed ran one
// peer source per hash beside the swarm's, each announcing "started" before it knew we seed.
func TestSeedHybridOneSource(t *testing.T) {
	src := t.TempDir()
	rt := newRecordingTracker(t)
	_, data := payload(t, src, "h.bin", 200<<10, torrentfile.Options{})
	tor, err := torrentfile.CreateTorrent(context.Background(), filepath.Join(src, "h.bin"),
		torrentfile.Options{Hybrid: true, PieceLength: 16 << 10, Trackers: []string{rt.srv.URL + "/announce"}})
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(t.TempDir(), "h.torrent")
	f, err := os.Create(tf)
	if err != nil {
		t.Fatal(err)
	}
	if err := torrentfile.WriteTorrent(f, tor); err != nil {
		t.Fatal(err)
	}
	f.Close()
	v1, _ := tor.HashV1()
	v2, _ := tor.HashV2()
	v2t := [20]byte(v2[:20])

	out := t.TempDir()
	complete := make(chan struct{})
	var once sync.Once
	_, cl := runSwarm(t, swarm.Config{InfoHash: v2t, Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers, Dir: out,
		OnProgress: func(p swarm.Progress) {
			if p.Complete {
				once.Do(func() { close(complete) })
			}
		}}, "127.0.221.2:0")
	rt.mu.Lock()
	rt.peers = []netip.AddrPort{cl.Addr().(*net.TCPAddr).AddrPort()}
	rt.mu.Unlock()

	const seedIP = "127.0.221.1"
	p := startIn(t, args("seed", "--torrent", tf, src, "--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(),
		"--listen", "/ip4/"+seedIP+"/udp/0")...)
	select {
	case <-complete:
	case <-time.After(30 * time.Second):
		t.Fatalf("the leecher got nothing within 30s; seed stderr:\n%s", p.stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(out, "h.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("leecher's file differs (err %v)", err)
	}
	p.cancel()
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("seed: exit %d after Ctrl-C\nstderr:\n%s", code, p.stderr.String())
	}
	if n := cl.counts()[netip.MustParseAddr(seedIP)]; n != 1 {
		t.Errorf("the leecher, named under both hashes, was dialled %d times, want once", n)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	count := map[[20]byte]map[string]int{}
	for i, ev := range rt.events {
		if ev == "started" && rt.left[i] != "0" {
			t.Errorf("hash %x: \"started\" said left=%s, want 0: we seed", rt.hashes[i], rt.left[i])
		}
		if count[rt.hashes[i]] == nil {
			count[rt.hashes[i]] = map[string]int{}
		}
		count[rt.hashes[i]][ev]++
	}
	for _, h := range []struct {
		name string
		ih   [20]byte
	}{{"v1", v1}, {"truncated v2", v2t}} {
		for _, ev := range []string{"started", "stopped"} {
			if n := count[h.ih][ev]; n != 1 {
				t.Errorf("%s hash %x: tracker got %d %q announces, want 1 (all: %v)", h.name, h.ih, n, ev, count)
			}
		}
	}
}
