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

// size is the weight of r for the cache's byte bound.
func (r *response) size() int64 { return int64(len(r.body)) + 128 }

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
	for _, root := range []string{"/latest/meta-data/", "/2016-01-01/meta-data/"} {
		if rest, ok := cutPrefixFold(p, root); ok {
			return strings.ToLower(rest), true
		}
	}
	return "", false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// isCredentials reports whether item (from metaDataItem) names one role's
// credentials rather than the role listing.
func isCredentials(item string) bool {
	role, ok := strings.CutPrefix(item, "ram/security-credentials/")
	return ok && role != "" && !strings.Contains(role, "/")
}
