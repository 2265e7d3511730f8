package index

import (
	"bufio"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// JSONEntry is the shape of one line of ExportJSONL.
type JSONEntry struct {
	InfoHash  string     `json:"infohash"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	SeenBy    []string   `json:"seen_by"`
	Peers     []string   `json:"peers,omitempty"`
	Metadata  string     `json:"metadata"`
	Attempts  int        `json:"attempts,omitempty"`
	NextRetry *time.Time `json:"next_retry,omitempty"`
	Name      string     `json:"name,omitempty"`
	Size      int64      `json:"size,omitempty"`
	Files     []JSONFile `json:"files,omitempty"`
}

// JSONFile is one file in a JSONEntry.
type JSONFile struct {
	Path   []string `json:"path"`
	Length int64    `json:"length"`
}

// JSON converts e to its export shape.
func (e *Entry) JSON() JSONEntry {
	j := JSONEntry{
		InfoHash:  hex.EncodeToString(e.InfoHash[:]),
		FirstSeen: e.FirstSeen,
		LastSeen:  e.LastSeen,
		SeenBy:    []string{},
		Metadata:  e.Meta.String(),
		Attempts:  e.Attempts,
	}
	if s := e.How.String(); s != "" {
		j.SeenBy = strings.Split(s, "|")
	}
	for _, p := range e.Peers {
		j.Peers = append(j.Peers, p.String())
	}
	if e.Meta != MetaFetched && !e.NextRetry.IsZero() {
		t := e.NextRetry
		j.NextRetry = &t
	}
	if e.Meta == MetaFetched {
		j.Name, j.Size = e.Name, e.Size
		for _, f := range e.Files {
			j.Files = append(j.Files, JSONFile{Path: f.Path, Length: f.Length})
		}
	}
	return j
}

// ExportJSONL writes one JSON object (JSONEntry) per line for every entry,
// in infohash order.
func (x *Index) ExportJSONL(w io.Writer) error { return ExportJSONL(w, x) }

// ExportJSONL writes s as JSON lines (see (*Index).ExportJSONL). It
// streams: s.ForEach never holds the whole index.
func ExportJSONL(w io.Writer, x Store) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var werr error
	err := x.ForEach(func(e Entry) bool {
		werr = enc.Encode(e.JSON())
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("export jsonl: %w", err)
	}
	return nil
}

// CSVHeader is the first record ExportCSV writes.
var CSVHeader = []string{"infohash", "first_seen", "last_seen", "seen_by", "metadata", "attempts", "name", "size", "files", "peers"}

// ExportCSV writes a header (CSVHeader) and one row per entry, in infohash
// order. seen_by is "|"-separated, files is the file count, peers are
// space-separated host:port; times are RFC 3339 UTC. Names come from the
// network: one a spreadsheet would run as a formula (leading = + - @ tab
// or CR) gets a leading apostrophe. JSONL keeps names verbatim.
func (x *Index) ExportCSV(w io.Writer) error { return ExportCSV(w, x) }

// ExportCSV writes s as CSV (see (*Index).ExportCSV).
func ExportCSV(w io.Writer, x Store) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("export csv: %w", err)
	}
	var werr error
	row := make([]string, len(CSVHeader))
	err := x.ForEach(func(e Entry) bool {
		peers := make([]string, len(e.Peers))
		for i, p := range e.Peers {
			peers[i] = p.String()
		}
		row[0] = hex.EncodeToString(e.InfoHash[:])
		row[1] = e.FirstSeen.UTC().Format(time.RFC3339)
		row[2] = e.LastSeen.UTC().Format(time.RFC3339)
		row[3] = e.How.String()
		row[4] = e.Meta.String()
		row[5] = strconv.Itoa(e.Attempts)
		row[6], row[7], row[8] = "", "", ""
		if e.Meta == MetaFetched {
			row[6] = csvSafe(e.Name)
			row[7] = strconv.FormatInt(e.Size, 10)
			row[8] = strconv.Itoa(len(e.Files))
		}
		row[9] = strings.Join(peers, " ")
		werr = cw.Write(row)
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		cw.Flush()
		err = cw.Error()
	}
	if err != nil {
		return fmt.Errorf("export csv: %w", err)
	}
	return nil
}

// csvSafe defuses spreadsheet formula injection in untrusted text.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
