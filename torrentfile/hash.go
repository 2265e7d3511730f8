package torrentfile

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/magnetget/magnetget/internal/merkle"
)

// chunkSize is how much the reader hands a worker at once: large sequential reads are what make
// hashing fast, and a few MiB per job keeps the channel traffic negligible.
const chunkSize = 4 << 20

// maxBufferMemory bounds the memory held in chunk buffers, whatever the piece length and workers.
const maxBufferMemory = 256 << 20

type chunk struct {
	buf        []byte
	firstPiece int64
}

// hashPieces reads files as one stream, in order, and returns the concatenated SHA-1 of each
// pieceLen-byte piece (the last may be shorter).
func hashPieces(ctx context.Context, files []entry, total, pieceLen int64, workers int, progress func(done, total int64)) ([]byte, error) {
	pieces, _, err := hashStream(ctx, files, total, pieceLen, workers, progress, true, nil)
	return pieces, err
}

// v2Pieces says, for each piece of a piece-aligned stream (BEP 52: every file starts a piece),
// how many of its bytes are file data (the rest is padding) and how many leaves its merkle hash
// covers (merkle.PieceWidth of its file).
type v2Pieces struct {
	dataLen []int32
	width   []int32
}

// hashStream reads files (padding entries give zeros) as one stream, in order. With v1 it returns
// the concatenated SHA-1 of each pieceLen-byte piece (the last may be shorter); with v2 non-nil,
// each piece's BEP 52 merkle hash. One goroutine reads sequentially into a small pool of buffers
// holding whole pieces; workers hash them; the calling goroutine reports progress.
func hashStream(ctx context.Context, files []entry, total, pieceLen int64, workers int, progress func(done, total int64), v1 bool, v2 *v2Pieces) ([]byte, []merkle.Hash, error) {
	numPieces := (total + pieceLen - 1) / pieceLen
	var pieces []byte
	if v1 {
		pieces = make([]byte, numPieces*sha1.Size)
	}
	var v2hashes []merkle.Hash
	if v2 != nil {
		v2hashes = make([]merkle.Hash, numPieces)
	}
	bufSize := pieceLen
	if bufSize < chunkSize {
		bufSize = chunkSize // a multiple of pieceLen: both are powers of two
	}
	if bufSize > total {
		bufSize = total // one chunk holds everything; do not allocate 16 MiB for a small file
	}
	nbuf := workers + 2 // one being filled, one queued per worker, one spare
	if limit := int(max(3, maxBufferMemory/bufSize)); nbuf > limit {
		nbuf = limit
	}
	if workers > nbuf {
		workers = nbuf
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	free := make(chan []byte, nbuf)
	jobs := make(chan chunk, nbuf)
	done := make(chan int64, nbuf)
	free <- make([]byte, bufSize) // the others are allocated on demand
	allocated := 1
	getBuf := func() ([]byte, error) {
		select {
		case b := <-free:
			return b, nil
		default:
		}
		if allocated < nbuf {
			allocated++
			return make([]byte, bufSize), nil
		}
		select {
		case b := <-free:
			return b, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		if err := readChunks(ctx, files, pieceLen, getBuf, jobs); err != nil {
			cancel(err)
		}
	})
	for range workers {
		wg.Go(func() {
			for {
				var c chunk
				select {
				case c = <-jobs:
				case <-ctx.Done():
					return
				}
				if c.buf == nil {
					return // jobs closed
				}
				for off, i := int64(0), c.firstPiece; off < int64(len(c.buf)); off, i = off+pieceLen, i+1 {
					piece := c.buf[off:min(off+pieceLen, int64(len(c.buf)))]
					if v1 {
						sum := sha1.Sum(piece)
						copy(pieces[i*sha1.Size:], sum[:])
					}
					if v2 != nil {
						v2hashes[i] = merkle.PieceHash(piece[:v2.dataLen[i]], int64(v2.width[i]))
					}
				}
				n := int64(len(c.buf))
				free <- c.buf[:cap(c.buf)] // never blocks: free holds every buffer there is
				select {
				case done <- n:
				case <-ctx.Done():
					return
				}
			}
		})
	}

	var hashed int64
	for hashed < total {
		select {
		case n := <-done:
			hashed += n
			if progress != nil {
				progress(hashed, total)
			}
		case <-ctx.Done():
			cancel(nil)
			wg.Wait()
			return nil, nil, context.Cause(ctx)
		}
	}
	wg.Wait()
	return pieces, v2hashes, nil
}

// readChunks streams the files into buffers from getBuf and sends each full buffer (the last one
// possibly partial) on jobs.
func readChunks(ctx context.Context, files []entry, pieceLen int64, getBuf func() ([]byte, error), jobs chan<- chunk) error {
	var buf []byte      // taken from getBuf only when there is data for it
	var fill int        // bytes in buf
	var nextPiece int64 // index of the first piece in buf
	send := func() error {
		select {
		case jobs <- chunk{buf: buf[:fill], firstPiece: nextPiece}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		nextPiece += int64(fill) / pieceLen
		buf, fill = nil, 0
		return nil
	}
	for _, f := range files {
		if f.size == 0 {
			continue
		}
		if f.pad {
			for left := f.size; left > 0; {
				if buf == nil {
					var err error
					if buf, err = getBuf(); err != nil {
						return err
					}
				}
				n := int(min(int64(len(buf)-fill), left))
				clear(buf[fill : fill+n]) // buffers are reused: padding must be written as zeros
				fill += n
				left -= int64(n)
				if fill == len(buf) {
					if err := send(); err != nil {
						return err
					}
				}
			}
			continue
		}
		if err := func() error {
			fh, err := os.Open(f.osPath)
			if err != nil {
				return err
			}
			defer fh.Close()
			for left := f.size; left > 0; {
				if err := ctx.Err(); err != nil {
					return context.Cause(ctx)
				}
				if buf == nil {
					if buf, err = getBuf(); err != nil {
						return err
					}
				}
				n := int(min(int64(len(buf)-fill), left))
				if _, err := io.ReadFull(fh, buf[fill:fill+n]); err != nil {
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						return fmt.Errorf("%s shrank while hashing (expected %d bytes)", f.osPath, f.size)
					}
					return err
				}
				fill += n
				left -= int64(n)
				if fill == len(buf) {
					if err := send(); err != nil {
						return err
					}
				}
			}
			return nil
		}(); err != nil {
			return err
		}
	}
	if fill > 0 {
		return send()
	}
	return nil
}
