package clients

import (
	"strconv"
	"testing"

	"github.com/aliyun/credentials-go/credentials"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

// credentialsGoVersion is the release of github.com/aliyun/credentials-go
// that test/go.mod requires and these tests run.
const credentialsGoVersion = "v1.4.14"

// newECSCredential builds credentials-go's ECS RAM role provider the way an
// application does; it reads ALIBABA_CLOUD_IMDSV1_DISABLED when built.
func newECSCredential(t *testing.T, roleName string) credentials.Credential {
	t.Helper()
	cfg := new(credentials.Config).SetType("ecs_ram_role")
	if roleName != "" {
		cfg.SetRoleName(roleName)
	}
	c, err := credentials.NewCredential(cfg)
	if err != nil {
		t.Fatalf("credentials-go %s: NewCredential: %v", credentialsGoVersion, err)
	}
	return c
}

// stsSet is the part of a credentials document a client hands to the
// code that signs requests.
type stsSet struct {
	AccessKeyId, AccessKeySecret, SecurityToken string
}

func setOf(c simulator.Credentials) stsSet {
	return stsSet{c.AccessKeyId, c.AccessKeySecret, c.SecurityToken}
}

// fetchSet asks the credential for its current set.
func fetchSet(c credentials.Credential) (stsSet, error) {
	m, err := c.GetCredential()
	if err != nil {
		return stsSet{}, err
	}
	return stsSet{deref(m.AccessKeyId), deref(m.AccessKeySecret), deref(m.SecurityToken)}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestCredentialsGoThroughAgent runs credentials-go's ECS RAM role provider
// through the built agent, in front of an upstream that accepts hardened
// mode only, in each of its modes. Each fetch PUTs for a token first; the
// agent must answer those itself.
func TestCredentialsGoThroughAgent(t *testing.T) {
	cases := []struct {
		name           string
		imdsv1Disabled bool
		roleName       string
		putsPerFetch   int // token PUTs one fetch makes
	}{
		{"default mode, role named", false, role, 1},
		{"default mode, role discovered", false, "", 2},
		{"IMDSv1 disabled, role named", true, role, 1},
		{"IMDSv1 disabled, role discovered", true, "", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := testbin.StartAgent(t, simulator.Options{HardenedOnly: true})
			proxy.point(t, a.TCP)
			t.Setenv("ALIBABA_CLOUD_IMDSV1_DISABLED", strconv.FormatBool(c.imdsv1Disabled))
			want, _ := a.Sim.Credentials(role)
			const fetches = 3
			for i := range fetches {
				got, err := fetchSet(newECSCredential(t, c.roleName))
				if err != nil || got != setOf(want) {
					t.Fatalf("fetch %d: %+v, %v; want the simulator's set %s",
						i, got, err, want.AccessKeyId)
				}
			}
			m := scrape(t, a.Admin)
			checkTokenUse(t, a.Sim, m, fetches*c.putsPerFetch)
			if n := m[`responses_total{code="4xx"}`]; n != 0 {
				t.Errorf("agent refused %v client requests (a refused token sends the "+
					"client tokenless)", n)
			}
			if n := a.Sim.Stats().Unauthorized; n != 0 {
				t.Errorf("upstream answered %d reads 401: the agent read without a token", n)
			}
		})
	}
}
