package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRunReportsRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("i-test"))
	}))
	defer srv.Close()
	tests := []struct {
		name string
		args []string
		want int64
	}{
		{"count", []string{"-c", "3", "-d", "0", "-n", "50"}, 50},
		{"herd", []string{"-herd", "20"}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"-target", srv.URL, "-json", "-label", "x"}, tt.args...)
			if err := run(context.Background(), args, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			var got jsonResult
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v in %s", err, out.String())
			}
			if got.Requests != tt.want || got.Status["200"] != tt.want || got.Label != "x" {
				t.Errorf("requests %d, status %v, label %q; want %d 200s labelled x",
					got.Requests, got.Status, got.Label, tt.want)
			}
		})
	}
}

func TestRunTextOutput(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	var out bytes.Buffer
	args := []string{"-target", srv.URL, "-c", "1", "-d", "0", "-n", "5", "-path", "/x"}
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5 answered, 0 errors", "404=5", "p99.9"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	tests := [][]string{
		{},
		{"-target", "http://100.100.100.200:80"},
		{"-target", "http://127.0.0.1:1", "-d", "0"},
		{"-target", "http://127.0.0.1:1", "-herd", "-1"},
		{"-target", "http://127.0.0.1:1", "extra"},
		{"-target", "http://127.0.0.1:1", "-pid", "x"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
				t.Error("no error")
			}
		})
	}
}
