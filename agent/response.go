package agent

import (
	"encoding/json"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// response is an upstream answer as the agent caches and serves it. Its
// header values are built once, so that serving a hit allocates nothing
// for them.
type response struct {
	status     int
	revalidate bool // a stale copy is served while a refresh runs
	head       *answerHead
	body       []byte
	expires    time.Time // with revalidate: never served at or past this
}

// answerHead holds the header values an answer is written with. Answers
// with the same Content-Type and length share one (see heads), so nothing
// may write to it or to its slices.
type answerHead struct {
	contentType   []string // nil: upstream sent none, and none is invented
	contentLength []string
	location      []string // Location of a 3xx, passed on as upstream gave it
}

func newResponse(status int, contentType []string, body []byte) *response {
	return &response{status: status, body: body, head: heads.get(contentType, len(body))}
}

// withLocation gives r, a 3xx, upstream's Location, in a head of its own.
func (r *response) withLocation(location []string) {
	h := *r.head
	h.location = cleanValues(location)
	r.head = &h
}

// heads holds the heads of answers: thousands of cached entries have a
// handful of Content-Types and lengths between them, and each entry
// keeping its own would cost as much memory as the bodies of small ones.
var heads = &headSet{m: make(map[string]*answerHead)}

// maxSharedHeads bounds the heads kept; past it, each answer gets its own.
const maxSharedHeads = 4096

// headSet is a bounded set of shared answer heads. It is safe for
// concurrent use.
type headSet struct {
	mu sync.Mutex
	m  map[string]*answerHead
}

// get returns the head of an answer of length bytes with upstream's
// Content-Type values (the first is kept, cleaned).
func (s *headSet) get(contentType []string, length int) *answerHead {
	h := &answerHead{contentLength: []string{strconv.Itoa(length)}}
	key := h.contentLength[0]
	if len(contentType) > 0 {
		h.contentType = cleanValues(contentType[:1])
		key += "\n" + h.contentType[0] // cleaned: it holds no newline
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if shared, ok := s.m[key]; ok {
		return shared
	}
	if len(s.m) < maxSharedHeads {
		s.m[key] = h
	}
	return h
}

// cleanValues copies header values as net/http's server would write
// them: newlines turned to spaces and the ends trimmed, so that what the
// lean path writes is what net/http writes, and neither can be split.
func cleanValues(values []string) []string {
	if len(values) == 0 {
		return nil
	}
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = textproto.TrimString(strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v))
	}
	return out
}

// entrySize is the weight of r cached under key, for the cache's byte
// bound: the key, the body and the entry's own bookkeeping.
func entrySize(key string, r *response) int64 {
	return int64(len(key)+len(r.body)) + 192
}

// credentialsExpiration reads Expiration from a credentials document. ok is
// false when there is none that parses: such a document is never cached.
func credentialsExpiration(body []byte) (exp time.Time, ok bool) {
	var doc struct {
		Expiration string
	}
	if json.Unmarshal(body, &doc) != nil {
		return time.Time{}, false
	}
	exp, err := time.Parse(time.RFC3339, doc.Expiration)
	return exp, err == nil
}

// metaDataItem returns the path below the meta-data root, lower-cased, and
// whether pathQuery is under one.
func metaDataItem(pathQuery string) (string, bool) {
	p, _, _ := strings.Cut(pathQuery, "?")
	root, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !isMetadataRoot("/"+root) || root == "" {
		return "", false
	}
	item, ok := cutPrefixFold(rest, "meta-data/")
	return strings.ToLower(item), ok
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// isCredentials reports whether item (from metaDataItem) is below the
// role listing: one role's credentials, in any spelling upstream accepts
// (a trailing slash included), handled as credentials or not cached.
func isCredentials(item string) bool {
	role, ok := strings.CutPrefix(item, "ram/security-credentials/")
	return ok && role != ""
}
