package load

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// seqMark in a path is replaced by a sequence number, so that one run can
// ask for many distinct keys.
const seqMark = "{seq}"

// requests builds the bytes of the GETs a run sends. It is safe for
// concurrent use.
type requests struct {
	fixed    [][]byte // one prepared request per path without seqMark
	patterns []string // paths with seqMark, split around it later
	host     string
	headers  string
	keys     uint64 // sequence numbers cycle below keys; 0: no bound
	seq      atomic.Uint64
}

func newRequests(t Target, paths, headers []string, keys int) (*requests, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no path to request")
	}
	rs := &requests{host: t.Host, keys: uint64(max(keys, 0))}
	var hb strings.Builder
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("header %q: want Name: value", h)
		}
		hb.WriteString(strings.TrimSpace(name) + ": " + strings.TrimSpace(value) + "\r\n")
	}
	rs.headers = hb.String()
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \r\n") {
			return nil, fmt.Errorf("path %q: want /PATH with no spaces", p)
		}
		if strings.Contains(p, seqMark) {
			rs.patterns = append(rs.patterns, p)
			continue
		}
		rs.fixed = append(rs.fixed, rs.build(p))
	}
	return rs, nil
}

func (rs *requests) build(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + rs.host +
		"\r\nUser-Agent: ecs-metadata-loadgen\r\n" + rs.headers + "\r\n")
}

// count is how many distinct paths the run cycles through.
func (rs *requests) count() int { return len(rs.fixed) + len(rs.patterns) }

// get returns the i-th request of the cycle; patterns take the next
// sequence number.
func (rs *requests) get(i int) []byte {
	i %= rs.count()
	if i < len(rs.fixed) {
		return rs.fixed[i]
	}
	n := rs.seq.Add(1) - 1
	if rs.keys > 0 {
		n %= rs.keys
	}
	p := rs.patterns[i-len(rs.fixed)]
	return rs.build(strings.ReplaceAll(p, seqMark, strconv.FormatUint(n, 10)))
}
