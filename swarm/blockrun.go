package swarm

import (
	"fmt"
	"hash"
	"sync"
)

// Received blocks are not written one by one. The reader goroutine reads each block straight
// from the socket buffer into the tail of its peer's run: a pooled buffer of blocks contiguous
// within one piece. A run is handed to the peer's disk goroutine when it is full, when a block
// arrives that does not extend it, or when the socket has nothing more buffered (so nothing is
// held while the reader waits). The disk goroutine feeds the run to the piece's SHA-1 when it
// continues exactly where the hash left off, which is the usual case (a piece fetched from one
// peer arrives in order), writes it with one pwrite, and queues the piece for verification
// once all its blocks are on disk; the verifier then only reads back from disk what was not
// hashed in memory. Reading the network and hashing plus writing thus run in parallel, one
// goroutine each per peer, and the disk goroutine keeps each peer's runs in order.
//
// Memory stays flat whatever the piece size or peer count: at most maxRuns run buffers exist;
// a reader that needs one while all are in use waits (and so stops reading its socket). A run
// buffer is only ever held while its bytes are in memory: it is taken for a block that has
// wholly arrived and that we asked that peer for, and the run is handed on before the reader
// waits for the network again. A peer that stalls therefore cannot pin one.

const (
	runSize = 16 * blockSize // a run buffer: sixteen 16 KiB blocks per pwrite
	maxRuns = 16             // run buffers in use at once, across peers (4 MiB)
	diskQ   = 4              // runs queued per peer for its disk goroutine
)

var runPool = sync.Pool{New: func() any { b := make([]byte, runSize); return &b }}

// blockRun is a peer's unwritten blocks: buf[:n] holds bytes [begin, begin+n) of piece, made
// of blocks whole blocks. The reader goroutine fills it, then hands it to the disk goroutine.
type blockRun struct {
	buf    *[]byte // from runPool, holding a slot of Swarm.runSlots; nil when empty
	piece  uint32
	begin  uint32
	n      int
	ps     *pieceState
	blocks int
	single []byte // a block that came without blockDst (pushed back by Unread), instead of buf
}

// pieceHash is the in-memory SHA-1 of a piece's leading bytes.
type pieceHash struct {
	mu     sync.Mutex // guards h and hashed
	h      hash.Hash  // nil until the first bytes are hashed
	hashed int64      // bytes of the piece fed to h, from its start
}

// blockDst tells peerwire where to read a block: the tail of p's run when the block extends it,
// else (after handing the run to the disk goroutine) the start of a new run. peerwire calls it
// only once the whole block is in memory, so a run buffer is never held while waiting for the
// network. A block we did not ask this peer for (or of another length than we asked) gets no
// buffer at all: nil has peerwire skip it, and onPiece counts it as wasted. Without that check
// a peer sending the head of an unrequested block could hold a shared run buffer (issue 9).
func (p *peer) blockDst(index, begin uint32, n int) []byte {
	r := &p.recv
	s := p.s
	s.mu.Lock()
	req, ok := p.outstanding[blockKey{index, begin}]
	s.mu.Unlock()
	if !ok || int(req.length) != n || n > runSize {
		return nil
	}
	if r.n > 0 && (index != r.piece || begin != r.begin+uint32(r.n) || r.n+n > runSize) {
		if err := p.flushRun(); err != nil {
			p.runErr = err
			return nil
		}
	}
	if r.buf == nil {
		select {
		case s.runSlots <- struct{}{}:
		case <-p.ctx.Done():
			p.runErr = p.ctx.Err()
			return nil
		}
		r.buf = runPool.Get().(*[]byte)
	}
	if r.n == 0 {
		r.piece, r.begin = index, begin
	}
	return (*r.buf)[r.n : r.n+n]
}

// commitBlock adds the block just read into the run's tail to the run; onPiece calls it for
// blocks it accepted. It reports whether the block was in the run.
func (p *peer) commitBlock(ps *pieceState, index, begin uint32, block []byte) bool {
	r := &p.recv
	if r.buf == nil || r.piece != index || r.begin+uint32(r.n) != begin || r.n+len(block) > runSize ||
		len(block) == 0 || &(*r.buf)[r.n] != &block[0] {
		return false
	}
	r.ps = ps
	r.n += len(block)
	r.blocks++
	return true
}

// flushRun hands the run to the disk goroutine (an empty run's buffer goes back to the pool).
func (p *peer) flushRun() error {
	r := &p.recv
	if r.n == 0 {
		if r.buf != nil {
			p.s.putRun(r.buf)
			r.buf = nil
		}
		return nil
	}
	run := *r
	*r = blockRun{}
	return p.submit(run)
}

// submit queues a run for the disk goroutine, waiting while its queue is full.
func (p *peer) submit(run blockRun) error {
	var err error
	select {
	case p.diskq <- run:
		return nil
	case <-p.diskDone:
		err = p.diskErr // it stopped early, on this error
	case <-p.ctx.Done():
		err = p.ctx.Err()
	}
	if run.buf != nil {
		p.s.putRun(run.buf)
	}
	return err
}

// putRun returns a run buffer to the pool and frees its slot.
func (s *Swarm) putRun(b *[]byte) {
	runPool.Put(b)
	<-s.runSlots
}

// disk is p's disk goroutine: it hashes and writes the runs the reader submits, in order, until
// diskq is closed. On a storage error it stops the swarm (setFatal) and closes the connection.
func (p *peer) disk() {
	defer close(p.diskDone)
	for run := range p.diskq {
		data := run.single
		if run.buf != nil {
			data = (*run.buf)[:run.n]
		}
		err := p.writeBlocks(run.ps, run.piece, run.begin, data, run.blocks)
		if run.buf != nil {
			p.s.putRun(run.buf)
		}
		if err != nil {
			p.diskErr = err
			_ = p.c.Close()
			for run := range p.diskq { // release what is still queued
				if run.buf != nil {
					p.s.putRun(run.buf)
				}
			}
			return
		}
	}
}

// writeBlocks feeds data (bytes [begin, begin+len) of piece idx, made of nblocks whole blocks)
// to the piece's hash when it continues it, writes it, and queues the piece for verification
// once every block is on disk.
func (p *peer) writeBlocks(ps *pieceState, idx, begin uint32, data []byte, nblocks int) error {
	s := p.s
	ph := &ps.hash
	ph.mu.Lock()
	if ph.hashed == int64(begin) {
		if ph.h == nil {
			ph.h = s.newPieceHash(int(idx))
		}
		ph.h.Write(data)
		ph.hashed += int64(len(data))
	}
	ph.mu.Unlock()
	off := int64(idx)*s.layout.PieceLength + int64(begin)
	if err := s.store.WriteAt(data, off); err != nil {
		err = fmt.Errorf("%w: %w", ErrStorage, err)
		s.setFatal(err)
		return err
	}
	s.mu.Lock()
	ps.written += nblocks
	verify := ps.written == len(ps.claimed)
	if verify {
		ps.verifying = true
	}
	s.mu.Unlock()
	if verify {
		select {
		case s.verifyCh <- verifyJob{int(idx), ps}:
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
	return nil
}

// verifyJob is a piece whose blocks are all on disk.
type verifyJob struct {
	piece int
	ps    *pieceState
}

// checkPiece finishes the piece's hash, reading from disk what was not hashed in memory, and
// compares it with the info dictionary.
func (s *Swarm) checkPiece(j verifyJob, buf []byte) (bool, error) {
	ph := &j.ps.hash
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if ph.h == nil {
		ph.h = s.newPieceHash(j.piece)
		ph.hashed = 0
	}
	size := s.layout.PieceSize(j.piece)
	base := int64(j.piece) * s.layout.PieceLength
	for ph.hashed < size {
		k := int(min(int64(len(buf)), size-ph.hashed))
		if err := s.store.ReadAt(buf[:k], base+ph.hashed); err != nil {
			return false, err
		}
		ph.h.Write(buf[:k])
		ph.hashed += int64(k)
	}
	return s.pieceOK(j.piece, ph.h.Sum(nil)), nil
}
