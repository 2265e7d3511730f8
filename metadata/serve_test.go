package metadata_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
)

// servePair connects a client (with the given extended handshake) to a server conn that
// advertises ut_metadata, and reads both extended handshakes.
func servePair(t *testing.T, clientExt peerwire.ExtHandshake) (client, server *peerwire.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := make(chan *peerwire.Conn, 1)
	go func() {
		defer close(ch)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c, err := peerwire.Accept(ctx, nc, func([20]byte) bool { return true }, peerwire.Options{ExtHandshake: metadata.LocalExtHandshake(len(singleInfo))})
		if err == nil {
			ch <- c
		}
	}()
	client, err = peerwire.Dial(ctx, ln.Addr().(*net.TCPAddr).AddrPort(), [20]byte{9}, peerwire.Options{ExtHandshake: clientExt})
	if err != nil {
		t.Fatal(err)
	}
	server = <-ch
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	for _, c := range []*peerwire.Conn{client, server} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if m, err := c.ReadMsg(); err != nil || m.ExtID != 0 {
			t.Fatalf("extended handshake: %v %v", m, err)
		}
	}
	return client, server
}

func TestServe(t *testing.T) {
	const clientID = 7
	client, server := servePair(t, peerwire.ExtHandshake{M: map[string]int{metadata.ExtName: clientID}})
	serverID := byte(client.PeerExt().M[metadata.ExtName])
	n := (len(singleInfo) + metadata.PieceSize - 1) / metadata.PieceSize
	cases := []struct {
		req, want string
		data      []byte
	}{
		{"d8:msg_typei0e5:piecei0ee", "d8:msg_typei1e5:piecei0e10:total_sizei" + strconv.Itoa(len(singleInfo)) + "ee", singleInfo[:metadata.PieceSize]},
		{"d8:msg_typei0e5:piecei" + strconv.Itoa(n-1) + "ee", "d8:msg_typei1e5:piecei" + strconv.Itoa(n-1) + "e10:total_sizei" + strconv.Itoa(len(singleInfo)) + "ee", singleInfo[(n-1)*metadata.PieceSize:]},
		{"d8:msg_typei0e5:piecei" + strconv.Itoa(n) + "ee", "d8:msg_typei2e5:piecei" + strconv.Itoa(n) + "ee", nil},
	}
	for _, tc := range cases {
		if err := client.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: serverID, Payload: []byte(tc.req)}); err != nil {
			t.Fatal(err)
		}
		m, err := server.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if err := metadata.Serve(server, singleInfo, m); err != nil {
			t.Fatalf("Serve(%s): %v", tc.req, err)
		}
		r, err := client.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte(tc.want), tc.data...)
		if r.ID != peerwire.Extended || r.ExtID != clientID || string(r.Payload) != string(want) {
			t.Errorf("reply to %s: ext id %d, %.80q; want id %d, %.80q", tc.req, r.ExtID, r.Payload, clientID, want)
		}
	}
	// A data message sent to us needs no answer; garbage is an error.
	for _, tc := range []struct {
		payload string
		wantErr bool
	}{{"d8:msg_typei2e5:piecei0ee", false}, {"d8:msg_typei9e5:piecei0ee", false}, {"not bencode", true}} {
		client.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: serverID, Payload: []byte(tc.payload)})
		m, err := server.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if err := metadata.Serve(server, singleInfo, m); (err != nil) != tc.wantErr || (tc.wantErr && !errors.Is(err, metadata.ErrBadMessage)) {
			t.Errorf("Serve(%q) = %v, want error %v", tc.payload, err, tc.wantErr)
		}
	}
}

func TestServeWithoutInfoRejects(t *testing.T) {
	client, server := servePair(t, peerwire.ExtHandshake{M: map[string]int{metadata.ExtName: 3}})
	client.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: byte(client.PeerExt().M[metadata.ExtName]), Payload: []byte("d8:msg_typei0e5:piecei0ee")})
	m, _ := server.ReadMsg()
	if err := metadata.Serve(server, nil, m); err != nil {
		t.Fatal(err)
	}
	r, err := client.ReadMsg()
	if err != nil || string(r.Payload) != "d8:msg_typei2e5:piecei0ee" {
		t.Fatalf("reply %q, %v; want a reject", r.Payload, err)
	}
}

func TestServePeerWithoutUTMetadata(t *testing.T) {
	client, server := servePair(t, peerwire.ExtHandshake{M: map[string]int{"ut_pex": 1}})
	client.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: byte(client.PeerExt().M[metadata.ExtName]), Payload: []byte("d8:msg_typei0e5:piecei0ee")})
	m, _ := server.ReadMsg()
	if err := metadata.Serve(server, singleInfo, m); !errors.Is(err, metadata.ErrBadMessage) {
		t.Fatalf("Serve to a peer that announced no ut_metadata id: %v", err)
	}
	// And a message that is not ut_metadata at all.
	if err := metadata.Serve(server, singleInfo, peerwire.Message{ID: peerwire.Have}); !errors.Is(err, metadata.ErrBadMessage) {
		t.Fatalf("Serve(have): %v", err)
	}
}
