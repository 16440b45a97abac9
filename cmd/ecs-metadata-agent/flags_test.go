package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestBadValuesExit2NamingTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--token-ttl", "7h"}, nil, `"7h0m0s" for --token-ttl`},
		{[]string{"--token-ttl", "soon"}, nil, "(--token-ttl: lifetime of the upstream token, 1s"},
		{[]string{"--socket-group", "no-such-group-here"}, nil, "--socket-group"},
		{[]string{"--socket-mode", "0999"}, nil, "socket-mode"},
		{[]string{"--log-level", "loud"}, nil, `"loud" for --log-level`},
		{[]string{"--log-format", "xml"}, nil, "log-format"},
		{[]string{"--upstream", "ftp://x"}, nil, "--upstream"},
		{[]string{"--listen", "nowhere"}, nil, `"nowhere" for --listen`},
		{[]string{"stray"}, nil, `unexpected argument "stray"`},
		{nil, map[string]string{"ECS_METADATA_AGENT_CACHE_ENTRIES": "many"},
			"ECS_METADATA_AGENT_CACHE_ENTRIES"},
		{nil, map[string]string{"ECS_METADATA_AGENT_TOKEN_TTL": "0s"}, "--token-ttl"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+strings.Join(keys(tt.env), ""), func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tt.args, env(tt.env), &out)
			if code := exitCode(err, &out); code != 2 {
				t.Fatalf("exit %d, want 2 (err %v)", code, err)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", out.String(), tt.want)
			}
		})
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestEnvironmentSetsFlagsAndFlagsWin(t *testing.T) {
	e := env(map[string]string{
		"ECS_METADATA_AGENT_LISTEN":    "127.0.0.1:1, unix:/tmp/a.sock",
		"ECS_METADATA_AGENT_TOKEN_TTL": "1h",
		"ECS_METADATA_AGENT_SIMULATE":  "true",
		"ECS_METADATA_AGENT_UPSTREAM":  "http://127.0.0.1:9",
	})
	s, err := parseSettings([]string{"--token-ttl", "2h"}, e, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.agent
	if len(c.Listen) != 2 || c.Listen[1] != "unix:/tmp/a.sock" || c.TokenTTL != 2*time.Hour ||
		!c.Simulate || c.Upstream != "http://127.0.0.1:9" {
		t.Errorf("settings %+v", c)
	}
}

func TestHelpExits0(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"-h"}, env(nil), &out)
	if exitCode(err, &out) != 0 || !strings.Contains(out.String(), "-upstream") {
		t.Errorf("help: %v, output %q", err, out.String())
	}
}
