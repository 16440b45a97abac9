package agent

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// leanHead is what the lean path reads of a request head. Its strings
// alias the connection's read buffer: they are valid until the next read,
// and lookup copies the key before anything keeps it.
type leanHead struct {
	method, target string
	host           string
	hosts          int
	token          string // the first consumer token header
	tokens         int
	loop           bool // the agents' hop header is present
	close          bool // Connection: close
}

var crlfcrlf = []byte("\r\n\r\n")

// headLen returns the length of the request head at the start of b, with
// its blank line, or 0 when b does not yet hold all of it. plain is false
// when b holds a line that does not end in CRLF, which net/http reads and
// the lean path does not.
func headLen(b []byte) (n int, plain bool) {
	if i := bytes.Index(b, crlfcrlf); i >= 0 {
		return i + len(crlfcrlf), true
	}
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return 0, false
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return 0, true
}

// parseHead reads head (from headLen) into h. It reports false for any
// head outside the lean subset: a method other than GET or HEAD, a target
// that is not a plain origin-form path, a version other than HTTP/1.1, a
// header line that is not "Name: value" in plain ASCII, a header that
// announces a body or changes the connection, or not exactly one Host.
func parseHead(head []byte, h *leanHead) bool {
	line, rest, ok := cutLine(head)
	if !ok || !h.requestLine(line) {
		return false
	}
	for {
		if line, rest, ok = cutLine(rest); !ok {
			return false
		}
		if len(line) == 0 {
			return h.hosts == 1
		}
		if !h.header(line) {
			return false
		}
	}
}

// cutLine splits off one CRLF-terminated line.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

func (h *leanHead) requestLine(line []byte) bool {
	method, rest, _ := bytes.Cut(line, []byte{' '})
	target, proto, _ := bytes.Cut(rest, []byte{' '})
	switch string(method) { // no allocation: the compiler compares in place
	case http.MethodGet:
		h.method = http.MethodGet
	case http.MethodHead:
		h.method = http.MethodHead
	default:
		return false
	}
	if string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' ||
		!allOf(target, &targetBytes) {
		return false
	}
	h.target = alias(target)
	return true
}

// header reads one header line. Of the headers net/http acts on, the lean
// path understands Host and Connection: close or keep-alive; the others
// (a body, Expect, Upgrade) make the request not plain.
func (h *leanHead) header(line []byte) bool {
	name, value, found := bytes.Cut(line, []byte{':'})
	if !found || len(name) == 0 || !allOf(name, &tokenBytes) {
		return false
	}
	value = bytes.Trim(value, " \t")
	if !allOf(value, &valueBytes) {
		return false
	}
	switch {
	case equalFold(name, "Host"):
		h.hosts++
		h.host = alias(value)
		return allOf(value, &hostBytes)
	case equalFold(name, "Connection"):
		// As net/http: any "close" closes, whatever other lines say.
		closing := equalFold(value, "close")
		h.close = h.close || closing
		return closing || equalFold(value, "keep-alive")
	case equalFold(name, tokenHeader):
		if h.tokens == 0 {
			h.token = alias(value)
		}
		h.tokens++
	case equalFold(name, loopHeader):
		h.loop = true
	case equalFold(name, "Content-Length"), equalFold(name, "Transfer-Encoding"),
		equalFold(name, "Expect"), equalFold(name, "Upgrade"):
		return false
	}
	return true
}

// alias returns b as a string without copying; see leanHead.
func alias(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// equalFold compares b with s in ASCII, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// byteSet is a set of bytes, for checking a field in one pass.
type byteSet [256]bool

func newByteSet(ranges ...string) *byteSet {
	var s byteSet
	for _, r := range ranges {
		for i := 0; i < len(r); i++ {
			s[r[i]] = true
		}
	}
	return &s
}

var (
	alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	// targetBytes are those a plain target may hold: unreserved and
	// sub-delimiters, ':' '@' '/' '?', so never '%', '#', ';' or '\'.
	targetBytes = *newByteSet(alnum, "-._~!$&'()*+,=:@/?")
	// tokenBytes are those of a header name (RFC 9110 token).
	tokenBytes = *newByteSet(alnum, "!#$%&'*+-.^_`|~")
	// hostBytes are those of an address or a name, with a port.
	hostBytes = *newByteSet(alnum, "-._:[]")
	// valueBytes are visible ASCII, space and tab.
	valueBytes = func() byteSet {
		s := *newByteSet("\t")
		for c := ' '; c < 0x7f; c++ {
			s[c] = true
		}
		return s
	}()
)

// allOf reports whether every byte of b is in set.
func allOf[T string | []byte](b T, set *byteSet) bool {
	for i := 0; i < len(b); i++ {
		if !set[b[i]] {
			return false
		}
	}
	return true
}

// answer answers one plain request head. It returns errNotLean, having
// written nothing, when the head is not plain; keep is false when the
// connection is to close after the answer.
func (c *leanConn) answer(head []byte) (keep bool, err error) {
	var h leanHead
	if !parseHead(head, &h) {
		return false, errNotLean
	}
	resp, err := c.s.a.leanRead(&h, c.who)
	c.now = time.Now()
	// Draining: this answer is the connection's last, as net/http makes it
	// once keep-alives are off, even for a client that keeps pipelining.
	h.close = h.close || c.s.closing.Load()
	if err != nil {
		c.writeError(err, &h)
	} else {
		c.writeResponse(resp, &h)
	}
	return !h.close, nil
}

// leanRead makes ServeHTTP's checks, in its order, for a plain read and
// looks its key up.
func (a *Agent) leanRead(h *leanHead, who *Consumer) (*response, error) {
	if h.loop {
		return nil, errLoop
	}
	if err := checkHost(h.host, who); err != nil {
		return nil, err
	}
	path, query, _ := strings.Cut(h.target, "?")
	if path == tokenPath {
		return nil, errTokenMethod
	}
	q := readRequest{method: h.method, path: path, query: query,
		token: h.token, tokens: h.tokens, who: who}
	if err := a.checkRead(&q); err != nil {
		return nil, err
	}
	key := h.target
	if query == "" {
		key = path // "?" alone is no query
	}
	return a.lookup(context.Background(), key, who)
}

// writeResponse writes resp as ServeHTTP's write does through net/http:
// the same status line and headers, and the body but to HEAD.
func (c *leanConn) writeResponse(resp *response, h *leanHead) {
	c.s.a.m.respond(resp.status)
	w := c.writer()
	_, _ = w.WriteString(statusLine(resp.status))
	withBody := bodyAllowed(resp.status)
	if withBody {
		writeHeader(w, "Content-Length: ", resp.head.contentLength)
	}
	if withBody || resp.status != http.StatusNotModified {
		writeHeader(w, "Content-Type: ", resp.head.contentType)
	}
	writeHeader(w, "Location: ", resp.head.location)
	c.endHead(h, true)
	if withBody && h.method != http.MethodHead {
		_, _ = w.Write(resp.body)
	}
}

// writeError writes err as ServeHTTP's fail does through net/http.
func (c *leanConn) writeError(err error, h *leanHead) {
	var he *httpError
	if !errors.As(err, &he) {
		he = errGateway
	}
	c.s.a.m.respond(he.status)
	w := c.writer()
	_, _ = w.WriteString(statusLine(he.status))
	if he.allow != "" {
		writeHeader(w, "Allow: ", []string{he.allow})
	}
	// net/http's order: the handler's headers sorted, then the ones it
	// adds itself.
	_, _ = w.WriteString("Content-Type: text/plain; charset=utf-8\r\n" +
		"X-Content-Type-Options: nosniff\r\n")
	_, _ = w.Write(c.s.date.line(c.now))
	_, _ = w.WriteString("Content-Length: ")
	_, _ = w.Write(strconv.AppendInt(c.scratch[:0], int64(len(he.msg)+1), 10))
	_, _ = w.WriteString("\r\n")
	c.endHead(h, false)
	if h.method != http.MethodHead {
		_, _ = w.WriteString(he.msg)
		_ = w.WriteByte('\n')
	}
}

// endHead writes the Date (unless written) and, for a request that asked
// for it, Connection: close, and ends the head.
func (c *leanConn) endHead(h *leanHead, date bool) {
	w := c.writer()
	if date {
		_, _ = w.Write(c.s.date.line(c.now))
	}
	if h.close {
		_, _ = w.WriteString("Connection: close\r\n")
	}
	_, _ = w.WriteString("\r\n")
}

type headerWriter interface {
	WriteString(string) (int, error)
}

func writeHeader(w headerWriter, prefix string, values []string) {
	for _, v := range values {
		_, _ = w.WriteString(prefix)
		_, _ = w.WriteString(v)
		_, _ = w.WriteString("\r\n")
	}
}

// bodyAllowed mirrors net/http: 1xx, 204 and 304 answers have no body
// and no Content-Length.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// statusLines are the status lines net/http writes, built once.
var statusLines = func() []string {
	lines := make([]string, 600)
	for code := range lines {
		text := http.StatusText(code)
		if text == "" {
			text = "status code " + strconv.Itoa(code)
		}
		lines[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
	}
	return lines
}()

func statusLine(code int) string {
	if code >= 100 && code < len(statusLines) {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n"
}

// dateCache holds the Date header line of the current second, so that
// answers format a date once a second rather than once each. It is safe
// for concurrent use; the zero value is ready.
type dateCache struct {
	p atomic.Pointer[dateLine]
}

type dateLine struct {
	unix int64
	line []byte // "Date: ...\r\n"
}

func (d *dateCache) line(now time.Time) []byte {
	sec := now.Unix()
	if l := d.p.Load(); l != nil && l.unix == sec {
		return l.line
	}
	b := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	l := &dateLine{unix: sec, line: append(b, "\r\n"...)}
	d.p.Store(l)
	return l.line
}
