package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// errMalformed is returned for an answer that is not HTTP/1.x as parsed here.
var errMalformed = errors.New("malformed HTTP answer")

// conn is one keep-alive HTTP/1.1 connection. It is used by one goroutine.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

func newConn(nc net.Conn) *conn {
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}
}

func (c *conn) close() { _ = c.nc.Close() }

// roundTrip sends req, a complete GET request, and reads the answer,
// discarding its body. keep says whether the connection may be reused.
func (c *conn) roundTrip(req []byte, deadline time.Time) (status int, keep bool, err error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, false, err
	}
	return readAnswer(c.br)
}

// answerHead is what the status line and headers say about the body.
type answerHead struct {
	status  int
	length  int64 // -1: not given
	chunked bool
	keep    bool
}

// readAnswer reads one answer to a GET from br and discards its body.
func readAnswer(br *bufio.Reader) (status int, keep bool, err error) {
	h, err := readHead(br)
	if err != nil {
		return 0, false, err
	}
	switch {
	case h.status < 200 || h.status == 204 || h.status == 304:
	case h.chunked:
		err = discardChunked(br)
	case h.length >= 0:
		_, err = br.Discard(int(h.length))
	default: // the body runs to the end of the connection
		_, err = io.Copy(io.Discard, br)
		h.keep = false
	}
	return h.status, h.keep && err == nil, err
}

func readHead(br *bufio.Reader) (answerHead, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return answerHead{}, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return answerHead{}, errMalformed
	}
	h := answerHead{length: -1, keep: line[7] == '1'}
	status, ok := parseDecimal(line[9:12])
	if !ok {
		return answerHead{}, errMalformed
	}
	h.status = int(status)
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return answerHead{}, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return h, nil
		}
		if err := h.header(line); err != nil {
			return answerHead{}, err
		}
	}
}

// header notes what one header line says about framing and keep-alive.
func (h *answerHead) header(line []byte) error {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return errMalformed
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		n, ok := parseDecimal(value)
		if !ok {
			return errMalformed
		}
		h.length = n
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		h.chunked = bytes.EqualFold(value, []byte("chunked"))
	case bytes.EqualFold(name, []byte("Connection")):
		h.keep = connectionKeeps(value, h.keep)
	}
	return nil
}

func connectionKeeps(value []byte, keep bool) bool {
	switch {
	case bytes.EqualFold(value, []byte("close")):
		return false
	case bytes.EqualFold(value, []byte("keep-alive")):
		return true
	}
	return keep
}

// discardChunked reads chunks up to the last one and the trailers after it.
func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, size)
		}
		if n == 0 {
			return discardTrailers(br)
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func discardTrailers(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// parseDecimal reads 1 to 18 decimal digits without allocating.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
