package simulator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

var update = flag.Bool("update", false, "rewrite testdata/instance.json from DefaultInstance")

const examplePath = "testdata/instance.json"

func marshalDefault(t *testing.T) []byte {
	t.Helper()
	b, err := json.MarshalIndent(simulator.DefaultInstance(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestExampleIsDefault(t *testing.T) {
	want := marshalDefault(t)
	if *update {
		if err := os.WriteFile(examplePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(examplePath)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s differs from DefaultInstance marshalled (%v); "+
			"run go test -run TestExampleIsDefault -update", examplePath, err)
	}
}

// TestExampleServesLikeDefault compares every answer of a server loaded
// from the example file with the default server's, credentials aside
// (they are random).
func TestExampleServesLikeDefault(t *testing.T) {
	inst, err := simulator.LoadInstance(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	def, err := simulator.New(simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	loaded, err := simulator.New(simulator.Options{Instance: inst})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	paths := append(crawl(t, def, md), crawl(t, def, "/2016-01-01/meta-data/")...)
	paths = append(paths, "/", "/latest", md, "/latest/user-data", "/2016-01-01/user-data",
		"/2016-01-01/vendor-data", "/2016-01-01/meta-data/all",
		"/latest/dynamic/instance-identity/document",
		"/latest/dynamic/instance-identity/pkcs7?audience=x")
	for _, p := range paths {
		a, okA := def.Value(p)
		b, okB := loaded.Value(p)
		if strings.Contains(p, "security-credentials/") {
			continue
		}
		if !okA || !okB || !bytes.Equal(a, b) {
			t.Errorf("%s: default %q %v, loaded %q %v", p, a, okA, b, okB)
		}
	}
}

// writeInstance writes the default instance with edit applied to its JSON
// object form, or raw when raw is not empty.
func writeInstance(t *testing.T, edit func(map[string]any), raw string) string {
	t.Helper()
	b := []byte(raw)
	if raw == "" {
		var obj map[string]any
		if err := json.Unmarshal(marshalDefault(t), &obj); err != nil {
			t.Fatal(err)
		}
		edit(obj)
		b, _ = json.Marshal(obj)
	}
	p := filepath.Join(t.TempDir(), "inst.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func nic(obj map[string]any, i int) map[string]any {
	return obj["network-interfaces"].([]any)[i].(map[string]any)
}

func TestLoadInstanceErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(map[string]any)
		raw     string
		want    []string // substrings of the error
		invalid bool     // wraps ErrInvalidInstance
	}{
		{"syntax", nil, "{\n  \"instance-id\": \"i-1\",\n  oops\n}",
			[]string{"line 3", "invalid character"}, false},
		{"trailing data", nil, `{"instance-id":"i-1","region-id":"r","zone-id":"z",` +
			`"network-interfaces":[{"mac":"00:16:3e:00:00:01"}]} {}`,
			[]string{"after the JSON object"}, false},
		{"unknown field", func(o map[string]any) { o["instance_id"] = "i-1" }, "",
			[]string{`unknown field "instance_id"`}, false},
		{"wrong type", func(o map[string]any) { o["hostname"] = 7 }, "",
			[]string{"hostname"}, false},
		{"missing instance-id", func(o map[string]any) { delete(o, "instance-id") }, "",
			[]string{"instance-id", "required"}, true},
		{"missing zone", func(o map[string]any) { o["zone-id"] = "" }, "",
			[]string{"zone-id"}, true},
		{"no NICs", func(o map[string]any) { o["network-interfaces"] = []any{} }, "",
			[]string{"network-interfaces"}, true},
		{"bad MAC", func(o map[string]any) { nic(o, 1)["mac"] = "zz" }, "",
			[]string{"network-interfaces[1].mac", `"zz"`}, true},
		{"upper-case MAC", func(o map[string]any) { nic(o, 0)["mac"] = "00:16:3E:0C:5A:7E" },
			"", []string{"network-interfaces[0].mac", "lowercase"}, true},
		{"duplicate MAC", func(o map[string]any) { nic(o, 1)["mac"] = mac0 }, "",
			[]string{"network-interfaces[1].mac", "twice"}, true},
		{"bad public IP", func(o map[string]any) { o["public-ipv4"] = "1.2.3" }, "",
			[]string{"public-ipv4", `"1.2.3"`}, true},
		{"role with slash", func(o map[string]any) { o["ram-role"] = "a/b" }, "",
			[]string{"ram-role", `"a/b"`}, true},
		{"disk id with slash", func(o map[string]any) {
			o["disks"].([]any)[0].(map[string]any)["id"] = "d/x"
		}, "", []string{"disks[0].id", `"d/x"`}, true},
		{"dot-dot disk id", func(o map[string]any) {
			o["disks"].([]any)[1].(map[string]any)["id"] = ".."
		}, "", []string{"disks[1].id"}, true},
		{"key without body", func(o map[string]any) {
			o["public-keys"].([]any)[0].(map[string]any)["openssh-key"] = ""
		}, "", []string{"public-keys[0].openssh-key"}, true},
		{"bad document", func(o map[string]any) { o["identity-document"] = "{" }, "",
			[]string{"identity-document"}, true},
		{"bad user-data base64", func(o map[string]any) { o["user-data"] = "%%%" }, "",
			[]string{"illegal base64"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeInstance(t, tt.edit, tt.raw)
			_, err := simulator.LoadInstance(p)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tt.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if errors.Is(err, simulator.ErrInvalidInstance) != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalidInstance) = %v, want %v", !tt.invalid,
					tt.invalid)
			}
		})
	}
}

func TestLoadInstanceMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.json")
	_, err := simulator.LoadInstance(p)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v: want one wrapping ErrNotExist naming %s", err, p)
	}
}

func TestLoadedInstanceIsServed(t *testing.T) {
	p := writeInstance(t, func(o map[string]any) {
		o["instance-id"] = "i-mirrored"
		o["network-interfaces"] = []any{map[string]any{"mac": "00:16:3e:aa:bb:cc"}}
		delete(o, "disks")
	}, "")
	inst, err := simulator.LoadInstance(p)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, simulator.Options{Instance: inst})
	want200(t, "instance-id", e.get(md+"instance-id"), "i-mirrored")
	want200(t, "mac", e.get(md+"mac"), "00:16:3e:aa:bb:cc")
	for _, gone := range []string{md + "disks/", md + "vpc-id", md + "private-ipv4"} {
		if r := e.get(gone); r.status != 404 {
			t.Errorf("%s: status %d, want 404 for an item left out", gone, r.status)
		}
	}
}
