package agent

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// response is an upstream answer as the agent caches and serves it. Its
// header values are built once, so that serving a hit allocates nothing
// for them.
type response struct {
	status        int
	contentType   []string // nil: upstream sent none, and none is invented
	contentLength []string
	body          []byte
	location      []string  // Location of a 3xx, passed on as upstream gave it
	revalidate    bool      // a stale copy is served while a refresh runs
	expires       time.Time // with revalidate: never served at or past this
}

func newResponse(status int, contentType []string, body []byte) *response {
	if len(contentType) > 0 {
		contentType = []string{contentType[0]}
	} else {
		contentType = nil
	}
	return &response{
		status:        status,
		contentType:   contentType,
		contentLength: []string{strconv.Itoa(len(body))},
		body:          body,
	}
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
