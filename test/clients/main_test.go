package clients

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

// metadataURL is where the real clients send their requests. Nothing in
// this package may connect to it: TestMain makes sure that net/http sends
// every request for it to the relay, which only reaches a loopback agent.
const metadataURL = "http://100.100.100.200"

// proxy is the relay that HTTP_PROXY names; tests point it at their agent.
var proxy *relay

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	r, err := startRelay()
	if err != nil {
		fmt.Fprintln(os.Stderr, "clients:", err)
		return 1
	}
	defer r.close()
	if err := useProxy(r.addr()); err != nil {
		fmt.Fprintln(os.Stderr, "clients: refusing to run any client:", err)
		return 1
	}
	proxy = r
	code := testbin.Main(m)
	r.close()
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	return code
}

// proxyVars name the relay; exemptVars would let a request bypass it or
// change what the SDKs do, so they are cleared.
var (
	proxyVars  = []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"}
	exemptVars = []string{"NO_PROXY", "no_proxy", "REQUEST_METHOD",
		"ALIBABA_CLOUD_ECS_METADATA", "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
		"ALIBABA_CLOUD_IMDSV1_DISABLED"}
)

// useProxy points the proxy environment at addr before anything in the
// process has used net/http, which reads it once, and checks that both
// http.ProxyFromEnvironment and the proxy of http.DefaultTransport (which
// the SDKs clone) now send the metadata service's requests to addr.
func useProxy(addr string) error {
	for _, k := range proxyVars {
		if err := os.Setenv(k, "http://"+addr); err != nil {
			return err
		}
	}
	for _, k := range exemptVars {
		if err := os.Unsetenv(k); err != nil {
			return err
		}
	}
	check := map[string]func(*http.Request) (*url.URL, error){
		"http.ProxyFromEnvironment":   http.ProxyFromEnvironment,
		"http.DefaultTransport.Proxy": http.DefaultTransport.(*http.Transport).Proxy,
	}
	for _, target := range []string{metadataURL + "/", metadataURL + "/latest/api/token"} {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		for name, proxyOf := range check {
			if u, err := proxyOf(req); err != nil || u == nil || u.Host != addr {
				return fmt.Errorf("%s sends %s to %v (err %v), not to the relay %s",
					name, target, u, err, addr)
			}
		}
	}
	return nil
}
