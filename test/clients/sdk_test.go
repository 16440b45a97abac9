package clients

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	sdkcredentials "github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/signers"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

// sdkVersion is the release of github.com/aliyun/alibaba-cloud-sdk-go that
// test/go.mod requires and these tests run.
const sdkVersion = "v1.63.107"

// TestAlibabaCloudSDKThroughAgent has a client from NewClientWithEcsRamRole
// sign an API request, which fetches the role's credentials through the
// agent. The request is built, never sent: its endpoint is a loopback
// server that fails the test if anything reaches it.
func TestAlibabaCloudSDKThroughAgent(t *testing.T) {
	cases := []struct {
		name         string
		roleName     string
		putsPerFetch int
	}{
		{"role named", role, 1},
		{"role discovered", "", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := testbin.StartAgent(t, simulator.Options{HardenedOnly: true})
			proxy.point(t, a.TCP)
			want, _ := a.Sim.Credentials(role)
			client, err := sdk.NewClientWithEcsRamRole("cn-hangzhou", c.roleName)
			if err != nil {
				t.Fatalf("alibaba-cloud-sdk-go %s: NewClientWithEcsRamRole: %v", sdkVersion, err)
			}
			req := signedRequest(t, client)
			q := req.GetQueryParams()
			if q["AccessKeyId"] != want.AccessKeyId || q["SecurityToken"] != want.SecurityToken {
				t.Errorf("request signed as %q with token %.12q..., want the simulator's set %q",
					q["AccessKeyId"], q["SecurityToken"], want.AccessKeyId)
			}
			if q["Signature"] != hmacSHA1(req.GetStringToSign(), want.AccessKeySecret+"&") {
				t.Error("signature not made with the simulator's AccessKeySecret")
			}
			checkTokenUse(t, a.Sim, scrape(t, a.Admin), c.putsPerFetch)
		})
	}
}

// TestAlibabaCloudSDKLegacySigner runs the SDK's older EcsRamRoleSigner,
// which reads the credentials without a token.
func TestAlibabaCloudSDKLegacySigner(t *testing.T) {
	a := testbin.StartAgent(t, simulator.Options{HardenedOnly: true})
	proxy.point(t, a.TCP)
	want, _ := a.Sim.Credentials(role)
	s := signers.NewEcsRamRoleSigner(&sdkcredentials.EcsRamRoleCredential{RoleName: role}, nil)
	id, err := s.GetAccessKeyId()
	if err != nil || id != want.AccessKeyId {
		t.Fatalf("GetAccessKeyId: %q, %v; want %q", id, err, want.AccessKeyId)
	}
	if got := s.GetExtraParam()["SecurityToken"]; got != want.SecurityToken {
		t.Errorf("SecurityToken %.12q..., want the simulator's", got)
	}
	if s.Sign("text", "&") != hmacSHA1("text", want.AccessKeySecret+"&") {
		t.Error("signature not made with the simulator's AccessKeySecret")
	}
	checkTokenUse(t, a.Sim, scrape(t, a.Admin), 0)
}

// signedRequest builds and signs an RPC request for a loopback endpoint
// that no request may reach.
func signedRequest(t *testing.T, client *sdk.Client) *requests.CommonRequest {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the API request was sent; only its signing was wanted")
	}))
	t.Cleanup(api.Close)
	req := requests.NewCommonRequest()
	req.Domain = api.Listener.Addr().String()
	req.Scheme = "http"
	req.Product, req.Version, req.ApiName = "Ecs", "2014-05-26", "DescribeRegions"
	req.TransToAcsRequest()
	if err := client.BuildRequestWithSigner(req, nil); err != nil {
		t.Fatalf("alibaba-cloud-sdk-go %s: signing: %v", sdkVersion, err)
	}
	return req
}

func hmacSHA1(text, key string) string {
	h := hmac.New(sha1.New, []byte(key))
	h.Write([]byte(text))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
