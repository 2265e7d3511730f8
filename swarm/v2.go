package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"net/netip"
	"strconv"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/swarm/picker"
	"github.com/magnetget/magnetget/swarm/storage"
	"github.com/magnetget/magnetget/torrentfile"
)

// BitTorrent v2 (BEP 52) in the swarm.
//
// A v2-only torrent is laid out as a v1 byte stream with BEP 47 padding between files (each file
// starts on a piece boundary, so piece i of that stream is v2 piece i) and its pieces are checked
// as merkle trees of 16 KiB blocks against the files' piece layers. A hybrid torrent is stored
// and checked through its v1 half (SHA-1 is cheaper and says the same); its v2 half serves hash
// requests and, when a piece fails its SHA-1 check and its v2 hash is known, tells the bad blocks
// apart as for a v2-only torrent (hybridLeaves), so only those are fetched again. Piece layers come from Config.PieceLayers (the .torrent) or, for the files that lack
// them, from peers: hash requests for the piece layer with the uncles up to the file's root, each
// answer checked against the root from the info dict. A piece of a v2-only torrent is not picked
// before its layer is known, so nothing is fetched that cannot be checked.

const (
	// hashChunk is how many piece-layer hashes one of our hash requests asks for: the answer
	// (16 KiB plus uncles) fits any peer's message limit; libtorrent asks for 512 too.
	hashChunk = 512
	// hashOutPerPeer bounds the hash requests outstanding at one peer.
	hashOutPerPeer = 4
	// hashTimeout: a hash request unanswered this long goes to another peer.
	hashTimeout = 20 * time.Second
	// maxHashRejects: a peer that rejected this many of our hash requests is not asked again.
	maxHashRejects = 4
)

// v2State is the swarm's BitTorrent v2 side; nil for a v1-only torrent. Guarded by s.mu except
// where noted.
type v2State struct {
	tor    *torrentfile.Torrent // V2 and PieceLayers (grown as layers arrive); read-only V2
	verify bool                 // pieces are checked with merkle (v2-only), not SHA-1 (hybrid)
	roots  map[merkle.Hash]int  // pieces root -> file index; read-only
	known  picker.Bitfield      // pieces whose merkle hash is known
	fetch  map[int]*layerFetch  // file index -> its piece layer being fetched from peers
	trees  map[int]*merkle.Tree // file index -> tree for answering hash requests, built on demand
	// files maps a v2-only torrent's layout files (padding included) to V2.Files indexes, -1 for
	// padding: Config.Select counts V2.Files. Nil for a hybrid (its v1 file list is the layout).
	files []int
}

// layerFetch is one file's missing piece layer, asked of peers in chunks of hashChunk hashes.
type layerFetch struct {
	file     int
	f        torrentfile.FileV2
	base     int   // the piece layer's index in the file's tree (0 = leaves)
	chunkLen int64 // hashes per request: hashChunk, or the whole (padded) layer when shorter
	proof    int   // proof layers: the uncles up to the root
	got      [][]merkle.Hash
	asked    []*peer     // per chunk: the peer asked, nil when none
	askedAt  []time.Time // per chunk
}

func (lf *layerFetch) request(chunk int) merkle.HashRequest {
	return merkle.HashRequest{BaseLayer: lf.base, Index: int64(chunk) * lf.chunkLen, Length: lf.chunkLen, ProofLayers: lf.proof}
}

// newV2 prepares the v2 side of a torrent whose info has a v2 half. verify says its pieces are
// checked with merkle (v2-only).
func newV2(info []byte, layers map[[32]byte][]byte, verify bool) (*v2State, error) {
	tor, err := torrentfile.FromInfoV2(info, layers, nil)
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	if tor.PieceLayers == nil {
		tor.PieceLayers = make(map[[32]byte][]byte)
	}
	v := tor.V2
	st := &v2State{tor: tor, verify: verify, roots: make(map[merkle.Hash]int, len(v.Files)),
		known: picker.NewBitfield(int(v.NumPieces)), fetch: make(map[int]*layerFetch), trees: make(map[int]*merkle.Tree)}
	for fi, f := range v.Files {
		if f.Length == 0 {
			continue
		}
		st.roots[f.PiecesRoot] = fi
		if _, ok := tor.PieceLayers[f.PiecesRoot]; ok || !f.HasPieceLayer(v.PieceLength) {
			st.markKnown(fi)
			continue
		}
		width := merkle.PieceWidth(v.PieceLength, f.Length)
		layerLen := merkle.NumLeaves(f.Length) / width
		lf := &layerFetch{file: fi, f: f, base: merkle.NumLayers(width) - 1, chunkLen: min(hashChunk, layerLen)}
		lf.proof = merkle.NumLayers(merkle.NumLeaves(f.Length)) - 2 - lf.base
		n := int((f.NumPieces(v.PieceLength) + lf.chunkLen - 1) / lf.chunkLen)
		lf.got, lf.asked, lf.askedAt = make([][]merkle.Hash, n), make([]*peer, n), make([]time.Time, n)
		st.fetch[fi] = lf
	}
	return st, nil
}

func (st *v2State) markKnown(fi int) {
	f := st.tor.V2.Files[fi]
	for i := f.FirstPiece; i < f.FirstPiece+f.NumPieces(st.tor.V2.PieceLength); i++ {
		st.known.Set(int(i))
	}
}

// v2Layout lays a v2-only torrent out as a v1 stream: its files in file tree order, padding
// before each non-empty file that would not start on a piece boundary and after the last one,
// as libtorrent lays it out (it requests and serves every piece of a v2 torrent whole, the last
// one too). Piece hashes are left zero (pieces are checked by merkle, see pieceOK). files maps
// each layout file to its index in v.Files, -1 for padding.
func v2Layout(v *torrentfile.InfoV2) (l *storage.Layout, files []int, err error) {
	mi := &metainfo.Info{Name: v.Name, PieceLength: v.PieceLength}
	var pad []bool
	padTo := func(off int64) int64 {
		if r := off % v.PieceLength; r != 0 {
			n := v.PieceLength - r
			mi.Files = append(mi.Files, metainfo.FileInfo{Path: []string{".pad", strconv.FormatInt(n, 10)}, Length: n})
			pad = append(pad, true)
			files = append(files, -1)
			return n
		}
		return 0
	}
	if v.Single {
		mi.Name, mi.Length = v.Files[0].Path[0], v.Files[0].Length
		files = []int{0}
	} else {
		var off int64
		for fi, f := range v.Files {
			if f.Length > 0 {
				off += padTo(off)
			}
			mi.Files = append(mi.Files, metainfo.FileInfo{Path: f.Path, Length: f.Length})
			pad = append(pad, false)
			files = append(files, fi)
			off += f.Length
		}
		padTo(off)
	}
	mi.Pieces = make([]byte, 20*v.NumPieces)
	if v.Single {
		l, err = storage.NewLayout(mi)
	} else {
		l, err = storage.NewLayoutPadded(mi, pad)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("swarm: %w", err)
	}
	if v.Single {
		// A single-file layout has no padding entries: add the tail by hand.
		if r := l.Total % v.PieceLength; r != 0 {
			l.Files = append(l.Files, storage.File{Path: l.Files[0].Path + ".pad", Length: v.PieceLength - r, Offset: l.Total, Pad: true})
			l.Total += v.PieceLength - r
			files = append(files, -1)
		}
	}
	if int64(l.NumPieces()) != v.NumPieces || l.Total != v.NumPieces*v.PieceLength {
		return nil, nil, fmt.Errorf("swarm: %w: v2 layout of %d pieces, %d bytes; the file tree has %d pieces", storage.ErrBadInfo, l.NumPieces(), l.Total, v.NumPieces)
	}
	return l, files, nil
}

// newPieceHash returns the hash piece i is checked with: SHA-1, or for a v2-only torrent the
// merkle root of the piece's blocks (bytes past the file's end, padding, are not hashed).
func (s *Swarm) newPieceHash(i int) hash.Hash {
	if s.v2 == nil || !s.v2.verify {
		return sha1.New()
	}
	p, _ := s.v2.tor.PieceV2(int64(i))
	return &merkleHash{width: p.Width, limit: p.Length}
}

// pieceOK reports whether sum (from newPieceHash(i)) is piece i's hash. A v2 piece whose layer
// is not known yet is never OK (and is not picked: see pickable).
func (s *Swarm) pieceOK(i int, sum []byte) bool {
	if s.v2 == nil || !s.v2.verify {
		return bytes.Equal(sum, s.layout.Hashes[i][:])
	}
	s.mu.Lock()
	p, ok := s.v2.tor.PieceV2(int64(i))
	s.mu.Unlock()
	return ok && p.Known && bytes.Equal(sum, p.Hash[:])
}

// pickableLocked reports whether piece i can be checked once fetched.
func (s *Swarm) pickableLocked(i int) bool {
	return s.v2 == nil || !s.v2.verify || s.v2.known.Has(i)
}

// merkleHash is a hash.Hash giving the BEP 52 merkle root of a piece: SHA-256 of each 16 KiB
// block of its first limit bytes, padded with zero leaves to width. It keeps the leaves.
type merkleHash struct {
	width, limit int64
	n            int64 // bytes of the piece taken, at most limit
	buf          []byte
	leaves       []merkle.Hash
}

func (m *merkleHash) Write(p []byte) (int, error) {
	total := len(p)
	if rem := m.limit - m.n; int64(len(p)) > rem {
		p = p[:max(rem, 0)]
	}
	m.n += int64(len(p))
	if len(m.buf) > 0 {
		k := min(len(p), merkle.BlockSize-len(m.buf))
		m.buf = append(m.buf, p[:k]...)
		p = p[k:]
		if len(m.buf) == merkle.BlockSize {
			m.leaves = append(m.leaves, sha256.Sum256(m.buf))
			m.buf = m.buf[:0]
		}
	}
	for len(p) >= merkle.BlockSize {
		m.leaves = append(m.leaves, sha256.Sum256(p[:merkle.BlockSize]))
		p = p[merkle.BlockSize:]
	}
	if len(p) > 0 {
		if m.buf == nil {
			m.buf = make([]byte, 0, merkle.BlockSize)
		}
		m.buf = append(m.buf, p...)
	}
	return total, nil
}

func (m *merkleHash) Sum(b []byte) []byte {
	leaves := m.leaves
	if len(m.buf) > 0 {
		leaves = append(leaves[:len(leaves):len(leaves)], sha256.Sum256(m.buf))
	}
	if int64(len(leaves)) > m.width {
		return append(b, make([]byte, merkle.HashSize)...) // cannot happen for a PieceV2 width
	}
	r := merkle.Root(leaves, merkle.Hash{}, m.width)
	return append(b, r[:]...)
}

func (m *merkleHash) Reset()         { m.n, m.buf, m.leaves = 0, m.buf[:0], m.leaves[:0] }
func (m *merkleHash) Size() int      { return merkle.HashSize }
func (m *merkleHash) BlockSize() int { return merkle.BlockSize }

// askHashesLocked sends p hash requests for missing piece layers, if it speaks v2 and has room.
func (s *Swarm) askHashesLocked(p *peer) {
	if s.v2 == nil || len(s.v2.fetch) == 0 || p.leaving() || !s.speaksV2(p) || p.hashRejects >= maxHashRejects {
		return
	}
	var ms []peerwire.Message
	now := time.Now()
	for _, lf := range s.v2.fetch {
		for c := range lf.got {
			if p.hashOut >= hashOutPerPeer {
				break
			}
			if lf.got[c] != nil || lf.asked[c] != nil {
				continue
			}
			lf.asked[c], lf.askedAt[c] = p, now
			p.hashOut++
			ms = append(ms, peerwire.Message{ID: peerwire.HashRequest, Payload: merkle.AppendRequest(nil, lf.f.PiecesRoot, lf.request(c))})
		}
	}
	p.enqueue(ms...)
}

// speaksV2 reports whether p understands hash requests: it joined under the v2 infohash, or set
// the BEP 52 bit. (libtorrent 2.0.8 does not set the bit in its answer to our handshake, though
// it answers hash requests on a connection under the v2 infohash.)
func (s *Swarm) speaksV2(p *peer) bool {
	return p.c.InfoHash() == s.hashes.TruncatedV2() || p.c.SupportsV2()
}

// askAllHashesLocked spreads unasked layer chunks over the peers.
func (s *Swarm) askAllHashesLocked() {
	if s.v2 == nil || len(s.v2.fetch) == 0 {
		return
	}
	for p := range s.peers {
		s.askHashesLocked(p)
	}
}

// forgetHashesLocked returns p's outstanding hash requests (or those older than hashTimeout when
// p is nil) to be asked of others.
func (s *Swarm) forgetHashesLocked(p *peer, now time.Time) {
	if s.v2 == nil {
		return
	}
	for _, lf := range s.v2.fetch {
		for c, q := range lf.asked {
			if q != nil && (q == p || p == nil && now.Sub(lf.askedAt[c]) > hashTimeout) {
				lf.asked[c] = nil
				q.hashOut--
				if p == nil {
					q.hashRejects++ // a peer that does not answer is asked less
				}
			}
		}
	}
}

// onHashes takes a peer's answer to one of our hash requests.
func (p *peer) onHashes(m peerwire.Message) error {
	s := p.s
	root, r, hashes, err := merkle.ParseHashesMsg(m.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", errProtocol, err)
	}
	if s.v2 == nil {
		return nil
	}
	s.mu.Lock()
	lf, c := s.v2.pendingLocked(p, root, r)
	s.mu.Unlock()
	if lf == nil {
		// With 16 KiB pieces the piece layer is the block layer (base 0): a layer chunk asked
		// for is matched first, anything else at base 0 is block hashes of a failed piece.
		if r.BaseLayer == 0 {
			return p.onLeaves(root, r, hashes)
		}
		return nil // not asked (or answered by another already): ignored
	}
	if err := merkle.VerifyHashes(root, lf.f.Length, r, hashes, nil); err != nil {
		return fmt.Errorf("%w: hashes for %s: %w", errProtocol, showPath(lf.f.Path), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lf.asked[c] != p || s.v2.fetch[lf.file] != lf {
		return nil
	}
	lf.asked[c] = nil
	p.hashOut--
	lf.got[c] = hashes[:r.Length]
	for _, g := range lf.got {
		if g == nil {
			s.askHashesLocked(p)
			return nil
		}
	}
	// Every chunk verified against the root: the layer is the first NumPieces hashes.
	n := lf.f.NumPieces(s.v2.tor.V2.PieceLength)
	layer := make([]byte, 0, n*merkle.HashSize)
	for _, g := range lf.got {
		for _, h := range g {
			if int64(len(layer)) < n*merkle.HashSize {
				layer = append(layer, h[:]...)
			}
		}
	}
	s.v2.tor.PieceLayers[lf.f.PiecesRoot] = layer
	delete(s.v2.fetch, lf.file)
	s.v2.markKnown(lf.file)
	s.log.Debug("piece layer from peer", "file", showPath(lf.f.Path), "pieces", n, "peer", p.addr)
	for q := range s.peers {
		s.fillLocked(q) // its pieces in that file can be picked now
	}
	s.askHashesLocked(p)
	return nil
}

// pendingLocked finds the layer chunk r asks for, if it is outstanding at p.
func (st *v2State) pendingLocked(p *peer, root merkle.Hash, r merkle.HashRequest) (*layerFetch, int) {
	fi, ok := st.roots[root]
	if !ok {
		return nil, 0
	}
	lf := st.fetch[fi]
	if lf == nil || r.BaseLayer != lf.base || r.Length != lf.chunkLen || r.ProofLayers != lf.proof || r.Index%lf.chunkLen != 0 {
		return nil, 0
	}
	c := r.Index / lf.chunkLen
	if c < 0 || c >= int64(len(lf.got)) || lf.asked[c] != p {
		return nil, 0
	}
	return lf, int(c)
}

// onHashReject: the peer will not answer; ask another.
func (p *peer) onHashReject(m peerwire.Message) error {
	s := p.s
	root, r, err := merkle.ParseRequest(m.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", errProtocol, err)
	}
	if s.v2 == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLeavesLocked(p, root, &r)
	if lf, c := s.v2.pendingLocked(p, root, r); lf != nil {
		lf.asked[c] = nil
		p.hashOut--
		p.hashRejects++
		s.askAllHashesLocked()
	}
	return nil
}

// onHashRequest answers a peer's hash request from the piece layers we know and, below the
// piece layer, from pieces we have (read back from disk); anything else is rejected.
func (p *peer) onHashRequest(m peerwire.Message) error {
	s := p.s
	root, r, err := merkle.ParseRequest(m.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", errProtocol, err)
	}
	reject := func() error {
		p.enqueue(peerwire.Message{ID: peerwire.HashReject, Payload: bytes.Clone(m.Payload)})
		return nil
	}
	if s.v2 == nil {
		return reject()
	}
	s.mu.Lock()
	tree, fi := s.treeLocked(root)
	s.mu.Unlock()
	if tree == nil {
		return reject()
	}
	v := s.v2.tor.V2
	f := v.Files[fi]
	// Hashes below the piece layer are read back from disk and hashed: bound what one request
	// may cost (libtorrent asks for one piece's blocks at a time).
	width := merkle.PieceWidth(v.PieceLength, f.Length)
	if r.BaseLayer < merkle.NumLayers(width)-1 { // below the piece layer: a dozen layers at most
		if pieces := max(1, (r.Length<<r.BaseLayer)/width); pieces > 1 && pieces*v.PieceLength > maxLeafAnswer {
			return reject()
		}
	}
	leaves := func(piece int64) ([]merkle.Hash, error) {
		i := int(f.FirstPiece + piece)
		s.mu.Lock()
		have := s.picker.Have(i)
		s.mu.Unlock()
		if !have {
			return nil, fmt.Errorf("%w: piece %d not here", merkle.ErrBadRequest, i)
		}
		off := piece * v.PieceLength
		buf := make([]byte, min(v.PieceLength, f.Length-off))
		if err := s.store.ReadAt(buf, int64(i)*s.layout.PieceLength); err != nil {
			return nil, err
		}
		return merkle.LeafHashes(nil, buf), nil
	}
	hashes, err := tree.Answer(r, leaves)
	if err != nil {
		return reject()
	}
	out := merkle.AppendHashes(nil, root, r, hashes)
	if len(out)+1 > peerwire.MaxHashesLen {
		return reject()
	}
	p.enqueue(peerwire.Message{ID: peerwire.Hashes, Payload: out})
	return nil
}

// treeLocked returns the merkle tree of the file with pieces root root, when its piece layer
// is known (built once, then kept).
func (s *Swarm) treeLocked(root merkle.Hash) (*merkle.Tree, int) {
	fi, ok := s.v2.roots[root]
	if !ok {
		return nil, 0
	}
	if t := s.v2.trees[fi]; t != nil {
		return t, fi
	}
	v := s.v2.tor.V2
	f := v.Files[fi]
	var layer []merkle.Hash
	if f.HasPieceLayer(v.PieceLength) {
		b, ok := s.v2.tor.PieceLayers[root]
		if !ok {
			return nil, 0
		}
		layer, _ = merkle.ParseHashes(b)
	} else {
		layer = []merkle.Hash{root}
	}
	t, err := merkle.NewTree(layer, v.PieceLength, f.Length)
	if err != nil || t.Root() != root {
		return nil, 0
	}
	s.v2.trees[fi] = t
	return t, fi
}

// PieceLayers returns the piece layers the swarm knows for a v2 or hybrid torrent, those given
// in Config and those received from peers: with the info dict, what a .torrent needs
// (torrentfile.Assemble). Nil for a v1 torrent.
func (s *Swarm) PieceLayers() map[[32]byte][]byte {
	if s.v2 == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[[32]byte][]byte, len(s.v2.tor.PieceLayers))
	for k, v := range s.v2.tor.PieceLayers {
		out[k] = v
	}
	return out
}

func showPath(p []string) string {
	var b bytes.Buffer
	for i, c := range p {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strconv.Quote(c))
	}
	return b.String()
}

// finishLayers computes, once a hybrid's pieces are verified (by SHA-1), the piece layers no peer
// supplied, from the data on disk, each checked against its file's root: seeding then answers
// hash requests, and PieceLayers is complete for a .torrent. Only files whose pieces are all
// here are done. A v2-only torrent needs no such pass: its layers came before its pieces.
func (s *Swarm) finishLayers(ctx context.Context) {
	if s.v2 == nil || s.v2.verify {
		return
	}
	v := s.v2.tor.V2
	s.mu.Lock()
	var files []int
	for fi := range s.v2.fetch {
		f := v.Files[fi]
		all := true
		for i := f.FirstPiece; i < f.FirstPiece+f.NumPieces(v.PieceLength) && all; i++ {
			all = s.picker.Have(int(i))
		}
		if all {
			files = append(files, fi)
		}
	}
	s.mu.Unlock()
	buf := make([]byte, v.PieceLength)
	for _, fi := range files {
		if ctx.Err() != nil {
			return
		}
		f := v.Files[fi]
		n := f.NumPieces(v.PieceLength)
		width := merkle.PieceWidth(v.PieceLength, f.Length)
		layer := make([]byte, 0, n*merkle.HashSize)
		for k := range n {
			data := buf[:min(v.PieceLength, f.Length-k*v.PieceLength)]
			if err := s.store.ReadAt(data, (f.FirstPiece+k)*s.layout.PieceLength); err != nil {
				s.log.Warn("reading back a piece for its v2 hashes", "file", showPath(f.Path), "err", err)
				return
			}
			h := merkle.PieceHash(data, width)
			layer = append(layer, h[:]...)
		}
		if root, err := merkle.RootFromPieceLayer(layer, v.PieceLength, f.Length); err != nil || root != f.PiecesRoot {
			// SHA-1 pieces verified, yet the v2 half disagrees: a hybrid whose halves differ.
			s.log.Warn("hybrid torrent: the file's data does not hash to its v2 root", "file", showPath(f.Path))
			continue
		}
		s.mu.Lock()
		if lf := s.v2.fetch[fi]; lf != nil {
			for c, q := range lf.asked {
				if q != nil {
					q.hashOut--
					lf.asked[c] = nil
				}
			}
			delete(s.v2.fetch, fi)
			s.v2.tor.PieceLayers[f.PiecesRoot] = layer
			s.v2.markKnown(fi)
		}
		s.mu.Unlock()
	}
}

// leafWait is a failed v2 piece waiting for its block hashes (leaves) from a peer.
type leafWait struct {
	peer *peer
	at   time.Time // asked; zero: given up (the peer left or rejected)
	root merkle.Hash
	req  merkle.HashRequest
	data []merkle.Hash // the hashes of the blocks we have
}

// maxLeafAnswer bounds the piece data one hash request for block hashes makes us read and hash
// (a variable for tests).
var maxLeafAnswer int64 = 16 << 20

// maxLeafRounds bounds how often one piece download asks for block hashes.
const maxLeafRounds = 3

// hybridLeaves returns the block hashes of failed piece i of a hybrid, read back from disk, when
// the piece's v2 hash is known (its file's piece layer came with the .torrent or from peers) and
// it has more than one block; nil otherwise. A hybrid's pieces are hashed with SHA-1 only, so
// these are computed after a failure, never on the download path. v1 piece i is v2 piece i
// (torrentfile checks that the halves agree); padding past the file's end is not hashed.
func (s *Swarm) hybridLeaves(i int, buf []byte) []merkle.Hash {
	if s.v2 == nil || s.v2.verify {
		return nil
	}
	s.mu.Lock()
	pc, ok := s.v2.tor.PieceV2(int64(i))
	s.mu.Unlock()
	if !ok || !pc.Known || pc.Width < 2 {
		return nil
	}
	m := &merkleHash{width: pc.Width, limit: pc.Length}
	base := int64(i) * s.layout.PieceLength
	for off := int64(0); off < pc.Length; {
		k := min(int64(len(buf)), pc.Length-off)
		if err := s.store.ReadAt(buf[:k], base+off); err != nil {
			return nil // the piece fails whole; a storage fault shows on the next read
		}
		m.Write(buf[:k])
		off += k
	}
	return m.Leaves()
}

// Leaves returns the block hashes of what was written, the last short block included.
func (m *merkleHash) Leaves() []merkle.Hash {
	if len(m.buf) > 0 {
		return append(m.leaves[:len(m.leaves):len(m.leaves)], sha256.Sum256(m.buf))
	}
	return m.leaves
}

// askLeavesLocked asks a peer for the block hashes of failed piece i of a v2 or hybrid torrent,
// so that only its bad blocks are fetched again. It reports false when that cannot be done (no
// peer speaking v2 has the piece, a piece of one block, its v2 hash not known yet): the piece
// then fails whole.
func (s *Swarm) askLeavesLocked(i int, ps *pieceState, data []merkle.Hash) bool {
	if s.v2 == nil || ps.leafRounds >= maxLeafRounds || len(data) == 0 {
		return false
	}
	pc, ok := s.v2.tor.PieceV2(int64(i))
	if !ok || !pc.Known || pc.Width < 2 {
		return false
	}
	var q *peer
	for c := range s.peers {
		if c.leaving() || !s.speaksV2(c) || !c.has.Has(i) || c.hashRejects >= maxHashRejects {
			continue
		}
		if q == nil || ps.contrib[q.addr.Addr()] && !ps.contrib[c.addr.Addr()] {
			q = c // rather one that sent none of the piece
		}
	}
	if q == nil {
		return false
	}
	f := s.v2.tor.V2.Files[pc.File]
	k := int64(i) - f.FirstPiece
	lw := &leafWait{peer: q, at: time.Now(), root: f.PiecesRoot, data: data,
		req: merkle.HashRequest{BaseLayer: 0, Index: k * pc.Width, Length: pc.Width}}
	ps.leaves = lw
	ps.leafRounds++
	q.hashOut++
	q.enqueue(peerwire.Message{ID: peerwire.HashRequest, Payload: merkle.AppendRequest(nil, lw.root, lw.req)})
	return true
}

// leafPieceLocked finds the piece waiting for p's answer to r.
func (s *Swarm) leafPieceLocked(p *peer, root merkle.Hash, r merkle.HashRequest) (int, *pieceState) {
	fi, ok := s.v2.roots[root]
	if !ok || r.BaseLayer != 0 || r.Length < 2 {
		return 0, nil
	}
	f := s.v2.tor.V2.Files[fi]
	i := int(f.FirstPiece + r.Index/r.Length)
	ps := s.pieces[i]
	if ps == nil || ps.leaves == nil || ps.leaves.peer != p || ps.leaves.root != root || ps.leaves.req != r {
		return 0, nil
	}
	return i, ps
}

// onLeaves takes the block hashes of a failed piece: checked against the piece's hash, they
// tell which blocks we have are bad. Only those are fetched again and only their senders are
// struck (merkle.BadBlocks' rule, on the hashes of the data we already computed).
func (p *peer) onLeaves(root merkle.Hash, r merkle.HashRequest, hashes []merkle.Hash) error {
	s := p.s
	s.mu.Lock()
	i, ps := s.leafPieceLocked(p, root, r)
	var pc torrentfile.PieceV2
	if ps != nil {
		pc, _ = s.v2.tor.PieceV2(int64(i))
	}
	s.mu.Unlock()
	if ps == nil {
		return nil
	}
	f := s.v2.tor.V2.Files[pc.File]
	top := merkle.NumLayers(pc.Width) - 1
	known := func(layer int, index int64) (merkle.Hash, bool) {
		return pc.Hash, layer == top && index == int64(i)-f.FirstPiece
	}
	if err := merkle.VerifyHashes(root, f.Length, r, hashes, known); err != nil {
		return fmt.Errorf("%w: block hashes of piece %d: %w", errProtocol, i, err)
	}
	var toClose []*peerwire.Conn
	s.mu.Lock()
	if s.pieces[i] != ps || ps.leaves == nil || ps.leaves.peer != p {
		s.mu.Unlock()
		return nil
	}
	lw := ps.leaves
	ps.leaves = nil
	p.hashOut--
	var bad []int
	for b, h := range lw.data {
		if b < len(ps.claimed) && h != hashes[b] {
			bad = append(bad, b)
		}
	}
	if len(bad) == 0 {
		// The blocks match and the piece did not: nothing to refetch selectively.
		toClose = s.finishPieceLocked(i, ps, false)
	} else {
		struck := map[netip.Addr]bool{}
		for _, b := range bad {
			if ps.from != nil && ps.from[b].IsValid() && !struck[ps.from[b]] {
				struck[ps.from[b]] = true
				toClose = append(toClose, s.strikeLocked(ps.from[b], 2, i)...) // proven: its block is bad
			}
			ps.claimed[b] = false
			ps.nclaimed--
			ps.written--
			if ps.reqs[b] == 0 {
				ps.unrequested++
			}
		}
		// The piece is hashed again from disk once the new blocks are written.
		ps.hash.h, ps.hash.hashed = nil, 0
		ps.verifying = false
		s.badBlocks += len(bad)
		s.log.Debug("refetching bad blocks", "piece", i, "blocks", bad)
		for q := range s.peers {
			s.fillLocked(q)
		}
	}
	s.askHashesLocked(p)
	s.mu.Unlock()
	closeAll(toClose)
	return nil
}

// expireLeaves fails whole the pieces whose block hashes did not come in time (or whose peer
// left or rejected the request).
func (s *Swarm) expireLeaves(now time.Time) {
	if s.v2 == nil {
		return
	}
	var toClose []*peerwire.Conn
	s.mu.Lock()
	for i, ps := range s.pieces {
		if lw := ps.leaves; lw != nil && (lw.at.IsZero() || now.Sub(lw.at) > hashTimeout) {
			ps.leaves = nil
			if !lw.at.IsZero() {
				lw.peer.hashOut--
				lw.peer.hashRejects++
			}
			toClose = append(toClose, s.finishPieceLocked(i, ps, false)...)
		}
	}
	s.mu.Unlock()
	closeAll(toClose)
}

// dropLeavesLocked gives up the leaf requests outstanding at p (it left or rejected one).
func (s *Swarm) dropLeavesLocked(p *peer, root merkle.Hash, r *merkle.HashRequest) {
	if s.v2 == nil {
		return
	}
	for _, ps := range s.pieces {
		if lw := ps.leaves; lw != nil && lw.peer == p && !lw.at.IsZero() && (r == nil || lw.root == root && lw.req == *r) {
			lw.at = time.Time{}
			p.hashOut--
		}
	}
}
