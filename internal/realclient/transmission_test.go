package realclient_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// transmission-show agrees with MakePayload on the infohash, name, piece
// count and file list, empty file included.
func TestTransmissionShowAgreesWithPayload(t *testing.T) {
	rctest.Require(t, realclient.TransmissionAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{
		Name: "tree", PieceLength: 32 << 10,
		Files: []realclient.FileSpec{{Path: "x/one", Size: 100000}, {Path: "x/zero", Size: 0}, {Path: "two words.txt", Size: 5}},
	})
	ts, err := realclient.TransmissionShow(t.Context(), p.Torrent)
	if err != nil {
		t.Fatal(err)
	}
	if ts.InfoHash != p.InfoHash || ts.Name != "tree" || ts.Pieces != p.Info.NumPieces() {
		t.Fatalf("transmission-show: hash %x name %q pieces %d; want %x %q %d", ts.InfoHash, ts.Name, ts.Pieces, p.InfoHash, "tree", p.Info.NumPieces())
	}
	var got []string
	for _, f := range ts.Files {
		got = append(got, f.Path)
	}
	want := []string{"tree/two words.txt", "tree/x/one", "tree/x/zero"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("files %q, want %q", got, want)
	}
}

func TestTransmissionShowRejectsNonTorrent(t *testing.T) {
	rctest.Require(t, realclient.TransmissionAvailable)
	path := t.TempDir() + "/bad.torrent"
	if err := os.WriteFile(path, []byte("not bencode"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := realclient.TransmissionShow(t.Context(), path); err == nil {
		t.Fatal("transmission-show accepted a file that is not a torrent")
	}
}

// Output captured from transmission-show 3.00 on a mktorrent 1.1 file with
// two tracker tiers and a web seed (testdata/mktorrent-multi.torrent).
func TestParseTransmissionShowCaptured(t *testing.T) {
	out, err := os.ReadFile("testdata/transmission-show-multi.txt")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := realclient.ParseTransmissionShow(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if ts.HashString != "dd2cfc2a9f4900abe923408af0867ad1ca7f5160" || ts.Name != "d" || ts.Pieces != 4 || ts.PieceSize != "32.00 KiB" || ts.Private {
		t.Errorf("general section parsed as %+v", ts)
	}
	if got := strings.Join(ts.Trackers, " "); got != "http://127.0.0.1:1/announce http://127.0.0.2:2/a udp://127.0.0.3:3" {
		t.Errorf("trackers %q", got)
	}
	if len(ts.WebSeeds) != 1 || ts.WebSeeds[0] != "http://127.0.0.1:9/ws/" {
		t.Errorf("web seeds %q", ts.WebSeeds)
	}
	want := []realclient.ShowFile{{"d/a.bin", "100.0 kB"}, {"d/sub/b c.txt", "0.01 kB"}, {"d/sub/zero", "0.00 kB"}}
	if len(ts.Files) != len(want) {
		t.Fatalf("files %+v, want %+v", ts.Files, want)
	}
	for i := range want {
		if ts.Files[i] != want[i] {
			t.Errorf("file %d = %+v, want %+v", i, ts.Files[i], want[i])
		}
	}
}

func TestParseTransmissionShowErrors(t *testing.T) {
	for _, out := range []string{
		"",
		"GENERAL\n\n  Name: x\n",
		"GENERAL\n\n  Hash: zz\n",
		"GENERAL\n\n  Hash: dd2cfc2a9f4900abe923408af0867ad1ca7f5160\n  Piece Count: many\n",
		"GENERAL\n\n  Hash: dd2cfc2a9f4900abe923408af0867ad1ca7f5160\nFILES\n\n  no size\n",
	} {
		if _, err := realclient.ParseTransmissionShow(out); err == nil {
			t.Errorf("ParseTransmissionShow(%q) succeeded", out)
		}
	}
}

func FuzzParseTransmissionShow(f *testing.F) {
	if out, err := os.ReadFile("testdata/transmission-show-multi.txt"); err == nil {
		f.Add(string(out))
	}
	f.Add("GENERAL\n\n  Hash: dd2cfc2a9f4900abe923408af0867ad1ca7f5160\nFILES\n\n  a (1 B)\n")
	f.Fuzz(func(t *testing.T, out string) {
		ts, err := realclient.ParseTransmissionShow(out)
		if err == nil && ts.HashString == "" {
			t.Fatal("success without a hash")
		}
	})
}

// Transmission never dials loopback peers, but a seeder that dials it
// gets it the whole torrent. Transmission only turns interested on its 10 s
// rechoke pulse, so this takes 10-15 s: run it beside the other slow tests.
func TestTransmissionLeechesFromDialingSeeder(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.TransmissionAvailable)
	rctest.Require(t, realclient.LibtorrentAvailable)
	// No empty file: Transmission does not create those.
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "tr", PieceLength: 64 << 10,
		Files: []realclient.FileSpec{{Path: "a", Size: 1<<20 + 3}, {Path: "b/c", Size: 70000}}})
	s := rctest.Seeder(t, p, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	dir := t.TempDir()
	tr, err := realclient.StartTransmission(ctx, realclient.TransmissionConfig{URI: p.Torrent, Dir: dir, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	start := time.Now()
	if err := s.Connect(ctx, tr.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := tr.WaitDone(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("transmission finished %d bytes %v after the seeder dialled it", p.Length, time.Since(start).Round(time.Millisecond))
	rctest.Compare(t, p, dir)
}
