package simulator_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

func TestNewOptionErrors(t *testing.T) {
	noNIC := simulator.DefaultInstance()
	noNIC.NICs = nil
	tests := []struct {
		name string
		opts simulator.Options
		want string
	}{
		{"negative rate", simulator.Options{RateLimit: -1}, "rate limit"},
		{"negative burst", simulator.Options{Burst: -1}, "burst"},
		{"negative lifetime", simulator.Options{CredentialLifetime: -time.Hour}, "negative"},
		{"rotate not below lifetime", simulator.Options{CredentialLifetime: time.Hour,
			RotateBefore: time.Hour}, "rotate before"},
		{"rotate above default lifetime", simulator.Options{RotateBefore: 7 * time.Hour},
			"rotate before"},
		{"invalid instance", simulator.Options{Instance: noNIC}, "network-interfaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := simulator.New(tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestStartBadAddress(t *testing.T) {
	if s, err := simulator.Start("127.0.0.1:notaport", simulator.Options{}); err == nil {
		s.Close()
		t.Fatal("Start accepted a bad address")
	}
}

func TestURLAndAddr(t *testing.T) {
	e := start(t, simulator.Options{})
	host, port, err := net.SplitHostPort(e.sim.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Errorf("Addr %q", e.sim.Addr())
	}
	if e.sim.URL() != "http://"+e.sim.Addr() {
		t.Errorf("URL %q, Addr %q", e.sim.URL(), e.sim.Addr())
	}
	s, err := simulator.New(simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL() != "" || s.Addr() != "" {
		t.Errorf("not listening, yet URL %q Addr %q", s.URL(), s.Addr())
	}
}

func TestCloseIdempotentThen503(t *testing.T) {
	s, err := simulator.New(simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", md+"mac", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("after Close: %d, want 503", rec.Code)
	}
}

func TestShutdown(t *testing.T) {
	e := start(t, simulator.Options{})
	e.sim.SetFault("", simulator.Fault{Hang: true})
	errc := make(chan error, 1)
	go func() {
		_, err := e.send(context.Background(), http.MethodGet, md)
		errc <- err
	}()
	waitFor(t, "request arrival", func() bool { return e.sim.Stats().Requests["GET "+md] == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.sim.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a hanging request: %v, want deadline exceeded", err)
	}
	if err := <-errc; err == nil {
		t.Error("hanging request got an answer")
	}
}

func TestHandlerWithoutListener(t *testing.T) {
	s, err := simulator.New(simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL + md + "region-id")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "cn-hangzhou" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}
}

func TestServeUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "imds.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets here: %v", err)
	}
	s, err := simulator.Serve(ln, simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL() != "" || s.Addr() != sock {
		t.Errorf("URL %q Addr %q", s.URL(), s.Addr())
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://imds" + md + "zone-id")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "cn-hangzhou-i" {
		t.Errorf("got %q", b)
	}
	s.Close()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
}

func TestInstanceIsCopied(t *testing.T) {
	inst := simulator.DefaultInstance()
	e := start(t, simulator.Options{Instance: inst})
	inst.InstanceID = "i-changed"
	inst.NICs[0].PrivateIPv4s[0] = "10.9.9.9"
	want200(t, "instance-id", e.get(md+"instance-id"), "i-bp1c7mxq2nd9ltws4k8e")
	want200(t, "private-ipv4s",
		e.get(md+"network/interfaces/macs/"+mac0+"/private-ipv4s"), `["192.168.0.10"]`)
}

func TestSetInstanceHotPlug(t *testing.T) {
	e := start(t, simulator.Options{})
	before, _ := e.sim.Credentials(role)
	inst := simulator.DefaultInstance()
	inst.NICs = append(inst.NICs, simulator.NIC{MAC: "00:16:3e:99:88:77",
		PrimaryIPAddress: "192.168.2.5", PrivateIPv4s: []string{"192.168.2.5"}})
	if err := e.sim.SetInstance(inst); err != nil {
		t.Fatal(err)
	}
	want200(t, "macs", e.get(md+"network/interfaces/macs/"),
		mac0+"/\n"+mac1+"/\n00:16:3e:99:88:77/")
	if after, _ := e.sim.Credentials(role); after != before {
		t.Error("credentials rotated although the role is unchanged")
	}
	inst.RAMRole = "OtherRole"
	if err := e.sim.SetInstance(inst); err != nil {
		t.Fatal(err)
	}
	want200(t, "role", e.get(md+"ram/security-credentials/"), "OtherRole")
	if after, _ := e.sim.Credentials("OtherRole"); !distinct(after, before) {
		t.Error("credentials kept across a role change")
	}
	inst.NICs = nil
	if err := e.sim.SetInstance(inst); !errors.Is(err, simulator.ErrInvalidInstance) {
		t.Errorf("SetInstance without NICs: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	e := start(t, simulator.Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				tok, err := e.send(context.Background(), http.MethodPut,
					"/latest/api/token", ttlName, "60")
				if err != nil || tok.status != 200 {
					t.Errorf("worker %d token %d: %v %d", i, j, err, tok.status)
					return
				}
				r, err := e.send(context.Background(), http.MethodGet, credPath,
					tokenName, tok.body)
				if err != nil || r.status != 200 {
					t.Errorf("worker %d request %d: %v %d", i, j, err, r.status)
					return
				}
				switch j % 4 {
				case 0:
					e.sim.RotateCredentials()
				case 1:
					e.sim.BindPublicIP("203.0.113.1")
				case 2:
					e.sim.SetFault("/nothing", simulator.Fault{Status: 500})
				case 3:
					_ = e.sim.Stats()
				}
			}
		})
	}
	wg.Wait()
	if got := e.sim.Stats().TokensIssued; got != 160 {
		t.Errorf("TokensIssued = %d, want 160", got)
	}
}
