package simulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"strings"
	"sync"
	"time"
)

// Fault is a failure injected into the answers to matching requests. The
// latency comes first; then Hang, Drop or Status, in that order of
// precedence, replaces the answer; with none of them the real answer
// follows the latency.
type Fault struct {
	// Latency is waited before answering; it ends early when the client
	// goes away or the server closes, and then no answer is sent.
	Latency time.Duration
	// Status, when not 0, is answered with a short text body instead of
	// the real answer. Values outside 200-599 are answered as 500.
	Status int
	// Hang accepts the request and never answers until the client goes
	// away or the server closes.
	Hang bool
	// Drop closes the connection without an answer.
	Drop bool
	// Count limits the fault to the next Count matching requests; 0 means
	// until cleared.
	Count int
}

// faultJSON is the wire form of a Fault, with the latency as a Go
// duration string such as "50ms".
type faultJSON struct {
	Latency string `json:"latency"`
	Status  int    `json:"status"`
	Hang    bool   `json:"hang"`
	Drop    bool   `json:"drop"`
	Count   int    `json:"count"`
}

// MarshalJSON writes f as {"latency":"50ms","status":0,...}.
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultJSON{f.Latency.String(), f.Status, f.Hang, f.Drop, f.Count})
}

// UnmarshalJSON reads the form MarshalJSON writes. Unknown fields, a bad
// duration, a status outside 200-599 (other than 0) and negative values are
// errors. Absent fields are zero.
func (f *Fault) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j faultJSON
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("decode fault: %w", err)
	}
	var lat time.Duration
	if j.Latency != "" {
		var err error
		if lat, err = time.ParseDuration(j.Latency); err != nil || lat < 0 {
			return fmt.Errorf("decode fault: latency %q: want a duration "+
				"such as \"50ms\", not negative", j.Latency)
		}
	}
	if j.Status != 0 && (j.Status < 200 || j.Status > 599) {
		return fmt.Errorf("decode fault: status %d: want 0 or 200-599", j.Status)
	}
	if j.Count < 0 {
		return fmt.Errorf("decode fault: count %d: want 0 or more", j.Count)
	}
	*f = Fault{Latency: lat, Status: j.Status, Hang: j.Hang, Drop: j.Drop, Count: j.Count}
	return nil
}

// normalized returns f with out-of-range values made harmless.
func (f Fault) normalized() Fault {
	f.Latency = max(f.Latency, 0)
	f.Count = max(f.Count, 0)
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		f.Status = 500
	}
	return f
}

// active reports whether f changes anything.
func (f Fault) active() bool {
	return f.Latency > 0 || f.Status != 0 || f.Hang || f.Drop
}

// faultSet holds the faults by path prefix. It is safe for concurrent use.
type faultSet struct {
	mu       sync.Mutex
	byPrefix map[string]Fault
}

func newFaultSet() *faultSet {
	return &faultSet{byPrefix: map[string]Fault{}}
}

// normalizePrefix makes a non-empty prefix absolute.
func normalizePrefix(prefix string) string {
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		return "/" + prefix
	}
	return prefix
}

// set installs f for prefix, or removes the prefix's fault when f does
// nothing.
func (fs *faultSet) set(prefix string, f Fault) {
	f = f.normalized()
	prefix = normalizePrefix(prefix)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !f.active() {
		delete(fs.byPrefix, prefix)
		return
	}
	fs.byPrefix[prefix] = f
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	clear(fs.byPrefix)
}

func (fs *faultSet) snapshot() map[string]Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return maps.Clone(fs.byPrefix)
}

// take returns the fault with the longest prefix matching the cleaned
// path p, and uses up one of its Count.
func (fs *faultSet) take(p string) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	best, found := "", false
	for prefix := range fs.byPrefix {
		if matchPrefix(p, prefix) && (!found || len(prefix) > len(best)) {
			best, found = prefix, true
		}
	}
	if !found {
		return Fault{}, false
	}
	f := fs.byPrefix[best]
	switch {
	case f.Count == 1:
		delete(fs.byPrefix, best)
	case f.Count > 1:
		fs.byPrefix[best] = Fault{f.Latency, f.Status, f.Hang, f.Drop, f.Count - 1}
	}
	return f, true
}

// matchPrefix matches p or, so that "/a/" covers a request for "/a", p
// with a slash added.
func matchPrefix(p, prefix string) bool {
	return strings.HasPrefix(p, prefix) || p+"/" == prefix
}

// cleanPath is path.Clean that keeps a trailing slash.
func cleanPath(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
