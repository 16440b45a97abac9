package agent

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Policy decides which consumers may read which metadata paths. Rules are
// tried in order and the first that matches decides; a path no rule
// matches is allowed. A nil *Policy allows everything. A Policy is
// read-only once parsed and safe for concurrent use.
type Policy struct {
	rules []policyRule
}

type policyRule struct {
	line   int
	allow  bool
	who    matcher
	prefix string // lower case, version root written as /latest/
}

// matcher says whether a rule's subject covers a consumer.
type matcher func(c *Consumer) bool

// LoadPolicy reads a policy file; see ParsePolicy for its format.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	p, err := ParsePolicy(f)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy reads rules, one a line: "allow|deny SUBJECT PATH-PREFIX".
// SUBJECT is any, unix, tcp, uid:N, user:NAME, gid:N, group:NAME or
// cidr:PREFIX. PATH-PREFIX starts with "/"; a versioned root such as
// /2016-01-01/ is matched as /latest/, and case is ignored. '#' starts a
// comment. Any unknown word, user, group or bad CIDR is an error that
// names its line.
func ParsePolicy(r io.Reader) (*Policy, error) {
	p := &Policy{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		rule, err := parseRule(fields)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		rule.line = n
		p.rules = append(p.rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func parseRule(f []string) (policyRule, error) {
	if len(f) != 3 {
		return policyRule{}, fmt.Errorf("want ACTION SUBJECT PATH-PREFIX, got %d words", len(f))
	}
	var r policyRule
	switch f[0] {
	case "allow":
		r.allow = true
	case "deny":
	default:
		return r, fmt.Errorf("action %q: want allow or deny", f[0])
	}
	who, err := parseSubject(f[1], r.allow)
	if err != nil {
		return r, err
	}
	if !strings.HasPrefix(f[2], "/") || !plainASCII(f[2], `\?#%`) {
		return r, fmt.Errorf("path prefix %q: want a path starting with /", f[2])
	}
	r.who, r.prefix = who, policyPath(f[2])
	return r, nil
}

// parseSubject builds the matcher of s; allow says whether the rule
// allows, so that a peer whose groups are unknown fails closed.
func parseSubject(s string, allow bool) (matcher, error) {
	switch s {
	case "any":
		return func(*Consumer) bool { return true }, nil
	case "unix":
		return func(c *Consumer) bool { return c.Unix }, nil
	case "tcp":
		return func(c *Consumer) bool { return !c.Unix }, nil
	}
	kind, v, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("subject %q: want any, unix, tcp, or uid:, user:, gid:, "+
			"group: or cidr: with a value", s)
	}
	switch kind {
	case "uid", "user":
		return idMatcher(kind, v, lookupUID, func(c *Consumer, id uint32) bool {
			return c.Unix && c.UID == id
		})
	case "gid", "group":
		return idMatcher(kind, v, lookupGID, func(c *Consumer, id uint32) bool {
			return c.Unix && (c.GID == id || slices.Contains(c.Groups, id) ||
				c.GroupsUnknown && !allow)
		})
	case "cidr":
		pfx, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("subject %q: bad CIDR: %w", s, err)
		}
		if pfx != pfx.Masked() {
			return nil, fmt.Errorf("subject %q: bad CIDR: host bits set, did you mean %s?",
				s, pfx.Masked())
		}
		return func(c *Consumer) bool { return !c.Unix && pfx.Contains(c.Addr) }, nil
	}
	return nil, fmt.Errorf("subject %q: unknown kind %q", s, kind)
}

func idMatcher(kind, v string, lookup func(string) (string, error),
	match func(*Consumer, uint32) bool) (matcher, error) {
	if kind == "user" || kind == "group" {
		id, err := lookup(v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: not found", kind, v)
		}
		v = id
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want a number", kind, v)
	}
	return func(c *Consumer) bool { return match(c, uint32(n)) }, nil
}

func lookupUID(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	return u.Uid, nil
}

func lookupGID(name string) (string, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return "", err
	}
	return g.Gid, nil
}

// policyPath is the form rules compare: lower case, with a versioned root
// such as /2016-01-01/ written as /latest/. Paths reach it only after
// checkPath, so they hold no dot segments, empty segments or escapes.
func policyPath(path string) string {
	path = strings.ToLower(path)
	first, rest, _ := strings.Cut(path[1:], "/")
	if first != "latest" && isMetadataRoot("/"+first) && first != "" {
		return "/latest/" + rest
	}
	return path
}

// Allow reports whether c may read path, and the line of the rule that
// decided (0: no rule matched).
func (p *Policy) Allow(c *Consumer, path string) (bool, int) {
	if p == nil || len(p.rules) == 0 {
		return true, 0
	}
	path = policyPath(path)
	for _, r := range p.rules {
		if matchPrefix(path, r.prefix) && r.who(c) {
			return r.allow, r.line
		}
	}
	return true, 0
}

// matchPrefix matches whole segments: a prefix covers itself and what is
// below it ("/a/b" covers "/a/b" and "/a/b/c", not "/a/bc"), and a
// directory rule also covers the directory named without its slash.
func matchPrefix(path, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix) || path == prefix[:len(prefix)-1]
	}
	return strings.HasPrefix(path, prefix) &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
}
