package clients

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

// ossutilPath is the credentials URL ossutil v1 reads by default: without
// a token, and with a capital R.
const ossutilPath = "/latest/meta-data/Ram/security-credentials/" + role

// ossutil reads the role's credentials the way ossutil v1 does, through
// the proxy environment.
type ossutil struct {
	client *http.Client
}

func newOssutil(t *testing.T) *ossutil {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	t.Cleanup(tr.CloseIdleConnections)
	return &ossutil{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// ossutilSet is what ossutil takes from the document; Code is optional.
type ossutilSet struct {
	AccessKeyId, AccessKeySecret, SecurityToken, Expiration, Code string
}

// fetch GETs path without a token and returns the body and what ossutil
// reads from it.
func (o *ossutil) fetch(path string) ([]byte, ossutilSet, error) {
	var set ossutilSet
	res, err := o.client.Get(metadataURL + path)
	if err != nil {
		return nil, set, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return body, set, fmt.Errorf("GET %s: %d, %v", path, res.StatusCode, err)
	}
	if err := json.Unmarshal(body, &set); err != nil || set.AccessKeyId == "" {
		return body, set, fmt.Errorf("GET %s: no credentials in %q (%v)", path, body, err)
	}
	return body, set, nil
}

// TestOssutilForm reads the credentials tokenless with ossutil's spelling
// through the built agent, in front of an upstream that accepts hardened
// mode only: the bytes must be upstream's, and the lower-case spelling
// must name the same set.
func TestOssutilForm(t *testing.T) {
	a := testbin.StartAgent(t, simulator.Options{HardenedOnly: true})
	proxy.point(t, a.TCP)
	o := newOssutil(t)
	want, _ := a.Sim.Value(credentialsPath)
	for _, path := range []string{ossutilPath, credentialsPath} {
		body, set, err := o.fetch(path)
		if err != nil || !bytes.Equal(body, want) {
			t.Errorf("GET %s: %q, %v; want the simulator's bytes %q", path, body, err, want)
		}
		if c, _ := a.Sim.Credentials(role); set.AccessKeyId != c.AccessKeyId ||
			set.AccessKeySecret != c.AccessKeySecret || set.SecurityToken != c.SecurityToken {
			t.Errorf("GET %s: ossutil read %+v, want the simulator's set", path, set)
		}
	}
	if st := a.Sim.Stats(); st.Tokenless != 0 || st.Unauthorized != 0 {
		t.Errorf("upstream saw %d tokenless reads and answered %d 401s, want 0 and 0",
			st.Tokenless, st.Unauthorized)
	}
	checkTokenUse(t, a.Sim, scrape(t, a.Admin), 0)
}
