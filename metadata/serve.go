package metadata

import (
	"fmt"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// Serve answers one ut_metadata message m (m.ID == peerwire.Extended, m.ExtID ==
// c.LocalExt().M[ExtName]) on c: a request for a piece in range gets a data message (msg_type 1,
// total_size), any other request a reject (msg_type 2). info may be nil (we do not have the
// metadata yet: every request is rejected). Data and reject messages and unknown msg_types need no
// answer and return nil. The reply goes to the id the peer announced in c.PeerExt().
func Serve(c *peerwire.Conn, info []byte, m peerwire.Message) error {
	if m.ID != peerwire.Extended || m.ExtID == 0 || int(m.ExtID) != c.LocalExt().M[ExtName] {
		return fmt.Errorf("%w: not a ut_metadata message (%v)", ErrBadMessage, m)
	}
	req, err := parseUTMsg(m.Payload)
	if err != nil {
		return err
	}
	if req.Type != msgRequest {
		return nil // BEP 9: unknown msg_types are ignored; data/reject are not for Serve
	}
	id := c.PeerExt().M[ExtName]
	if id <= 0 {
		return fmt.Errorf("%w: peer asked for metadata but announced no ut_metadata id", ErrBadMessage)
	}
	reply := utMsg{Type: msgReject, Piece: req.Piece}
	if len(info) > 0 && req.Piece < numPieces(len(info)) {
		start := req.Piece * PieceSize
		reply = utMsg{Type: msgData, Piece: req.Piece, TotalSize: len(info), Data: info[start : start+pieceLen(len(info), req.Piece)]}
	}
	return c.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: byte(id), Payload: appendUTMsg(nil, reply)})
}
