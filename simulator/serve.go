package simulator

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// tokenPath is where hardened-mode tokens are issued.
const tokenPath = "/latest/api/token"

// Header names, in canonical form for direct map access.
var (
	tokenHeader = http.CanonicalHeaderKey("X-aliyun-ecs-metadata-token")
	ttlHeader   = http.CanonicalHeaderKey("X-aliyun-ecs-metadata-token-ttl-seconds")
)

// serveHTTP is the one entry point: control surface, then counting,
// faults, throttling, the token exchange and the metadata tree.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeText(w, http.StatusServiceUnavailable, "simulator closed\n")
		return
	}
	defer s.active.Done()
	if isControl(r.URL.Path) {
		s.control(w, r)
		return
	}
	s.stats.arrived(r)
	if f, ok := s.faults.take(cleanPath(r.URL.Path)); ok && s.inject(w, r, f) {
		return
	}
	if !s.allow() {
		s.fail(w, http.StatusTooManyRequests)
		return
	}
	if r.URL.Path == tokenPath {
		s.serveToken(w, r)
		return
	}
	s.serveMetadata(w, r)
}

// inject applies f and reports whether it replaced the answer.
func (s *Server) inject(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Latency > 0 && !s.pause(r.Context(), f.Latency) {
		panic(http.ErrAbortHandler) // client gone or closing: send nothing
	}
	switch {
	case f.Hang:
		s.pause(r.Context(), -1)
		panic(http.ErrAbortHandler)
	case f.Drop:
		drop(w)
	case f.Status != 0:
		s.stats.answered(f.Status)
		writeText(w, f.Status, fmt.Sprintf("simulated fault: %d %s\n",
			f.Status, http.StatusText(f.Status)))
	default:
		return false
	}
	return true
}

// pause waits d (forever when d < 0) and reports whether it waited it all
// rather than ending because ctx is done or the server is closing.
func (s *Server) pause(ctx context.Context, d time.Duration) bool {
	var elapsed <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case <-elapsed:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

// drop closes the connection without an answer, or aborts the response
// where the connection cannot be taken over (HTTP/2, recorders).
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", http.MethodPut)
		s.fail(w, http.StatusMethodNotAllowed)
		return
	}
	if hasHeader(r.Header, "X-Forwarded-For") {
		s.fail(w, http.StatusForbidden)
		return
	}
	ttl, err := parseTTL(r.Header.Values(ttlHeader))
	if err != nil {
		s.fail(w, http.StatusBadRequest)
		return
	}
	tok := s.tokens.issue(s.now(), ttl)
	s.stats.issued()
	writeBody(w, http.StatusOK, ctypeText, []byte(tok))
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if !isRead(r.Method) {
		w.Header().Set("Allow", "GET, HEAD")
		s.fail(w, http.StatusMethodNotAllowed)
		return
	}
	if !s.authorized(r.Header) {
		s.fail(w, http.StatusUnauthorized)
		return
	}
	a, ok := s.resolve(r.URL)
	if !ok {
		s.fail(w, http.StatusNotFound)
		return
	}
	writeBody(w, http.StatusOK, a.ctype, a.body)
}

// authorized: a token, when sent, must be known and unexpired; without
// one, reads are allowed unless hardened mode only is on.
func (s *Server) authorized(h http.Header) bool {
	vals, ok := h[tokenHeader]
	if !ok {
		return !s.hardened.Load()
	}
	return len(vals) == 1 && s.tokens.valid(vals[0], s.now())
}

// answer is a 200 answer's content.
type answer struct {
	body  []byte
	ctype string
}

// resolve finds the answer for u's path now.
func (s *Server) resolve(u *url.URL) (answer, bool) {
	n, ok := s.tree.Load().lookup(u.EscapedPath())
	if !ok {
		return answer{}, false
	}
	switch n.kind {
	case kindCredentials:
		return answer{s.creds.get(s.now()).body(), ctypeJSON}, true
	case kindPKCS7:
		return answer{pkcs7(n.body, u.Query().Get("audience")), n.ctype}, true
	}
	return answer{n.body, n.ctype}, true
}

// pkcs7 is a stand-in signature: deterministic base64 that depends on the
// document bytes and the audience. It is not a real PKCS#7 structure.
func pkcs7(doc []byte, audience string) []byte {
	var sig []byte
	for i := range 4 {
		h := sha512.New()
		h.Write([]byte{byte(i)})
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(audience))))
		h.Write([]byte(audience))
		h.Write(doc)
		sig = h.Sum(sig)
	}
	return []byte(base64.StdEncoding.EncodeToString(sig))
}

// fail answers status with a small HTML page, as the real service does.
func (s *Server) fail(w http.ResponseWriter, status int) {
	s.stats.answered(status)
	text := http.StatusText(status)
	page := fmt.Sprintf("<!DOCTYPE html>\n<html><head><title>%d %s</title></head>"+
		"<body><h1>%d %s</h1></body></html>\n", status, text, status, text)
	writeBody(w, status, ctypeHTML, []byte(page))
}

func writeText(w http.ResponseWriter, status int, text string) {
	writeBody(w, status, ctypeText, []byte(text))
}

// writeBody answers with an exact Content-Length; net/http drops the body
// of answers to HEAD.
func writeBody(w http.ResponseWriter, status int, ctype string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func isControl(p string) bool {
	return p == "/_simulator" || strings.HasPrefix(p, "/_simulator/")
}
