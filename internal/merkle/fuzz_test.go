package merkle

import (
	"runtime"
	"testing"
)

// FuzzVerifyHashes feeds arbitrary hashes-message fields (as they arrive from a peer) to Check
// and VerifyHashes: no panic, allocation bounded by the hashes received (whatever the request
// fields say), and an answer accepted
// only when it really leads to the root.
func FuzzVerifyHashes(f *testing.F) {
	data := content(21, 5*64<<10+999)
	layers := fullTree(data)
	root := layers[len(layers)-1][0]
	f.Add(int64(len(data)), uint32(0), uint32(8), uint32(4), uint32(3), make([]byte, 32*5))
	f.Add(int64(len(data)), uint32(2), uint32(0), uint32(8), uint32(0), make([]byte, 32*8))
	f.Add(int64(1<<40), uint32(0), uint32(1<<31), uint32(8192), uint32(30), make([]byte, 32))
	f.Add(int64(-1), uint32(1<<31), uint32(1<<31), uint32(1<<31), uint32(1<<31), []byte{})
	f.Fuzz(func(t *testing.T, fileLen int64, base, index, length, proof uint32, raw []byte) {
		// Wire fields are 32-bit; a file's length comes from a parsed info dict (bounded).
		if fileLen > 1<<50 {
			fileLen = 1 << 50
		}
		r := HashRequest{BaseLayer: int(base), Index: int64(index), Length: int64(length), ProofLayers: int(proof)}
		hashes, err := ParseHashes(raw)
		if err != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = VerifyHashes(root, fileLen, r, hashes, nil)
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > uint64(2*len(raw)+64<<10) {
			t.Fatalf("VerifyHashes of %d hashes allocated %d bytes", len(hashes), got)
		}
		if err == nil && (fileLen != int64(len(data)) || !answerIsTrue(layers, r, hashes)) {
			t.Fatalf("accepted a false answer to %+v for a file of %d bytes", r, fileLen)
		}
	})
}

// answerIsTrue compares an answer with the naive tree's nodes.
func answerIsTrue(layers [][]Hash, r HashRequest, hashes []Hash) bool {
	for i := range r.Length {
		if hashes[i] != layers[r.BaseLayer][r.Index+i] {
			return false
		}
	}
	idx, l := r.Index/r.Length, r.BaseLayer+NumLayers(r.Length)-1
	for _, u := range hashes[r.Length:] {
		if u != layers[l][idx^1] {
			return false
		}
		idx >>= 1
		l++
	}
	return true
}
