package metadata

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/torrentfile"
)

// ErrNoPieceLayers: no connection gave every piece layer a v2 or hybrid .torrent needs.
var ErrNoPieceLayers = errors.New("metadata: peers did not give the piece layers")

// layerChunk is how many piece-layer hashes one hash request asks for (as the swarm does).
const layerChunk = 512

// FetchPieceLayers gets the piece layers of a v2 or hybrid info dict from peers, with BEP 52 hash
// requests on conns (open connections to its swarm, such as Result.Conns; peers answer on
// connections made under the v2 infohash, Hashes.SwarmHash when Matched is V2). Each answer is
// checked against its file's root from the info dict. With info's bytes, the layers are what
// torrentfile.Assemble needs to write the .torrent byte-exact. Only connections that speak v2 are
// asked (see speaksV2): a v1-only peer ignores a hash request or drops the connection, and waiting
// on it would cost RequestTimeout for nothing. Those are tried in turn, one request at a time
// (RequestTimeout each); one that fails or rejects is left for the next at once. The
// layers got so far are returned with an error wrapping ErrNoPieceLayers when some are missing;
// a v1 info dict needs none (nil, nil). Conns stay open; messages read meanwhile that are not
// answers (have, bitfield, ...) are pushed back for the swarm, within the bounds Fetch keeps.
func FetchPieceLayers(ctx context.Context, info []byte, conns []*peerwire.Conn, o Options) (map[[32]byte][]byte, error) {
	o = o.withDefaults()
	tor, err := torrentfile.FromInfoV2(info, nil, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[[32]byte][]byte)
	missing := tor.MissingPieceLayers()
	if tor.V2 == nil || len(missing) == 0 {
		return nil, nil
	}
	pl := tor.V2.PieceLength
	v2ih := sha256.Sum256(info)
	conns = slices.DeleteFunc(slices.Clone(conns), func(c *peerwire.Conn) bool { return !speaksV2(c, [20]byte(v2ih[:20])) })
	lastErr := errors.New("no connection speaks BitTorrent v2")
	for _, fi := range missing {
		f := tor.V2.Files[fi]
		width := merkle.PieceWidth(pl, f.Length)
		layerLen := merkle.NumLeaves(f.Length) / width
		base := merkle.NumLayers(width) - 1
		chunkLen := min(layerChunk, layerLen)
		r := merkle.HashRequest{BaseLayer: base, Length: chunkLen, ProofLayers: merkle.NumLayers(merkle.NumLeaves(f.Length)) - 2 - base}
		n := f.NumPieces(pl)
		layer := make([]byte, 0, n*merkle.HashSize)
	chunks:
		for r.Index = 0; r.Index < n; r.Index += chunkLen {
			for len(conns) > 0 {
				if err := ctx.Err(); err != nil {
					return out, err
				}
				hs, err := askHashes(ctx, conns[0], f, r, o)
				if err == nil {
					for _, h := range hs[:chunkLen] {
						if int64(len(layer)) < n*merkle.HashSize {
							layer = append(layer, h[:]...)
						}
					}
					continue chunks
				}
				lastErr = err
				conns = conns[1:] // this peer will not do: the next one
			}
			return out, fmt.Errorf("%w: file %q: %w", ErrNoPieceLayers, f.Path, lastErr)
		}
		out[f.PiecesRoot] = layer
	}
	return out, nil
}

// speaksV2 reports whether c understands BEP 52 hash requests: both sides set the v2 bit, or it
// was made under the torrent's truncated v2 infohash (libtorrent 2.0.8 does not set the bit when
// answering a handshake under a v2 infohash, though it answers hash requests there). This is the
// swarm's rule too.
func speaksV2(c *peerwire.Conn, truncV2 [20]byte) bool {
	return c.SupportsV2() || c.InfoHash() == truncV2
}

// askHashes sends one hash request on c and waits for its answer, checked against f's root.
func askHashes(ctx context.Context, c *peerwire.Conn, f torrentfile.FileV2, r merkle.HashRequest, o Options) ([]merkle.Hash, error) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	defer c.SetDeadline(time.Time{})
	_ = c.SetDeadline(time.Now().Add(o.RequestTimeout))
	if err := c.WriteMsg(peerwire.Message{ID: peerwire.HashRequest, Payload: merkle.AppendRequest(nil, f.PiecesRoot, r)}); err != nil {
		return nil, err
	}
	var (
		stash    []peerwire.Message
		bytes    int
		overflow bool // more than Fetch keeps for the swarm: none is kept
	)
	defer func() {
		if !overflow {
			c.Unread(stash...)
		}
	}()
	for {
		m, err := c.ReadMsg()
		if err != nil {
			return nil, fmt.Errorf("peer %v: %w", c.RemoteAddr(), err)
		}
		switch m.ID {
		case peerwire.Hashes:
			root, got, hs, err := merkle.ParseHashesMsg(m.Payload)
			if err != nil || root != f.PiecesRoot || got != r {
				continue // not the answer (a late one, or to someone else's question)
			}
			if err := merkle.VerifyHashes(f.PiecesRoot, f.Length, r, hs, nil); err != nil {
				return nil, fmt.Errorf("peer %v: %w", c.RemoteAddr(), err)
			}
			return hs, nil
		case peerwire.HashReject:
			if root, got, err := merkle.ParseRequest(m.Payload); err == nil && root == f.PiecesRoot && got == r {
				return nil, fmt.Errorf("peer %v: hash request rejected", c.RemoteAddr())
			}
			continue
		}
		if !m.Keepalive && !overflow {
			bytes += len(m.Bitfield) + len(m.Block) + len(m.Payload)
			stash = append(stash, m)
			if len(stash) > maxStashMsgs || bytes > maxStashBytes {
				overflow, stash = true, nil
			}
		}
	}
}
