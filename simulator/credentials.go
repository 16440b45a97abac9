package simulator

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// credentialLayout is how LastUpdated and Expiration are written: UTC,
// whole seconds, as Python clients require.
const credentialLayout = "2006-01-02T15:04:05Z"

// Credentials is one set of STS credentials of the instance's RAM role.
type Credentials struct {
	Code            string `json:"Code"`
	AccessKeyId     string `json:"AccessKeyId"`
	AccessKeySecret string `json:"AccessKeySecret"`
	SecurityToken   string `json:"SecurityToken"`
	LastUpdated     string `json:"LastUpdated"`
	Expiration      string `json:"Expiration"`
}

// body renders c the way the real service does: indented, with a space
// on both sides of each colon, in this key order.
func (c Credentials) body() []byte {
	kv := [][2]string{
		{"AccessKeyId", c.AccessKeyId},
		{"AccessKeySecret", c.AccessKeySecret},
		{"Expiration", c.Expiration},
		{"SecurityToken", c.SecurityToken},
		{"LastUpdated", c.LastUpdated},
		{"Code", c.Code},
	}
	b := []byte("{\n")
	for i, p := range kv {
		b = fmt.Appendf(b, "  %q : %s", p[0], marshal(p[1]))
		if i < len(kv)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, '}')
}

// credStore holds the current set and issues a new one when less than
// rotateBefore remains. It is safe for concurrent use.
type credStore struct {
	mu           sync.Mutex
	lifetime     time.Duration
	rotateBefore time.Duration
	cur          Credentials
	expires      time.Time
}

func newCredStore(now time.Time, lifetime, rotateBefore time.Duration) *credStore {
	c := &credStore{lifetime: lifetime, rotateBefore: rotateBefore}
	c.rotateLocked(now)
	return c
}

// get returns the set served at now, rotating first if it is due.
func (c *credStore) get(now time.Time) Credentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expires.Sub(now) < c.rotateBefore {
		c.rotateLocked(now)
	}
	return c.cur
}

// rotate issues a new set at now.
func (c *credStore) rotate(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotateLocked(now)
}

func (c *credStore) rotateLocked(now time.Time) {
	updated := now.UTC().Truncate(time.Second)
	c.expires = updated.Add(c.lifetime)
	c.cur = Credentials{
		Code:            "Success",
		AccessKeyId:     "STS." + randomAlnum(28),
		AccessKeySecret: randomAlnum(44),
		SecurityToken:   "CAIS" + randomBase64(240),
		LastUpdated:     updated.Format(credentialLayout),
		Expiration:      c.expires.Format(credentialLayout),
	}
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n random letters and digits (a slight bias from the
// modulo does not matter for fake keys).
func randomAlnum(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
