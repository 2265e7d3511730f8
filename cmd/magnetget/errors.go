package main

import (
	"strings"
)

// packagePrefixes are the "pkg:" prefixes our packages and their
// dependencies put on errors. They help a caller that logs a wrapped chain;
// a user reading one line needs the sentence at the end, so the CLI drops
// them when it prints an error.
var packagePrefixes = map[string]bool{
	"swarm": true, "storage": true, "storage error": true, "metadata": true, "maddr": true,
	"magnet": true, "peerwire": true, "trackers": true, "torrentfile": true, "dht": true,
	"routing": true, "index": true, "crawl": true, "bencode": true, "tracker": true,
}

// userMessage formats an error for the one line a user reads: the package
// prefixes of a wrapped chain removed ("swarm: storage error: storage:
// write a.bin: no space left" reads "write a.bin: no space left"), a
// segment repeated by two layers said once ("metadata: metadata: ..."),
// only the first line, and control characters escaped. Callers still wrap
// with %w; only the top formats.
func userMessage(err error) string {
	if err == nil {
		return ""
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	parts := strings.Split(msg, ": ")
	var keep []string
	for i, p := range parts {
		t := strings.TrimSpace(p)
		// The multiaddr parser repeats the input and its own steps
		// ("failed to parse multiaddr \"/ip4/x\"", "failed to parse ip4
		// addr"); the value was already named and the last step says what
		// is wrong with it.
		if i < len(parts)-1 && strings.HasPrefix(t, "failed to parse ") {
			continue
		}
		if t == "must begin with /" {
			t = "want HOST:PORT or a multiaddr such as /ip4/1.2.3.4/udp/6881"
			if len(keep) > 0 && keep[len(keep)-1] == "bad multiaddr" {
				keep = keep[:len(keep)-1]
			}
		}
		// A prefix is only a prefix when something follows it.
		if i < len(parts)-1 && packagePrefixes[strings.ToLower(t)] {
			continue
		}
		if len(keep) > 0 && keep[len(keep)-1] == t {
			continue
		}
		// A last segment that only repeats a value already quoted.
		if i == len(parts)-1 && i > 0 && strings.Contains(msg, `"`+t+`"`) {
			continue
		}
		keep = append(keep, t)
	}
	return esc(strings.Join(keep, ": "))
}
