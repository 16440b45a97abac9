package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFixedAnswersEveryPath(t *testing.T) {
	h := fixed([]byte("i-x"))
	for _, path := range []string{"/", "/latest/meta-data/instance-id", "/a?b=c"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != 200 || w.Body.String() != "i-x" || w.Header().Get("Content-Length") != "3" ||
			w.Header().Get("Content-Type") != "text/plain" {
			t.Errorf("GET %s: %d %q %v", path, w.Code, w.Body.String(), w.Header())
		}
	}
}
