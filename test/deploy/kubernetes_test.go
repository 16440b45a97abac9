package deploy_test

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/kustomize.golden.yaml")

const (
	k8sDir     = "deploy/kubernetes"
	goldenFile = "testdata/kustomize.golden.yaml"
)

// newObject returns an empty typed object for a manifest's kind.
func newObject(kind string) (any, error) {
	switch kind {
	case "Namespace":
		return &corev1.Namespace{}, nil
	case "ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "Kustomization":
		return &kustypes.Kustomization{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %q", kind)
}

// decodeStrict decodes every document of a manifest into its typed object,
// failing on any field the type does not have.
func decodeStrict(data []byte) ([]any, error) {
	var objs []any
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		obj, err := newObject(tm.Kind)
		if err == nil {
			err = yaml.UnmarshalStrict([]byte(doc), obj)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// manifests decodes every YAML file of deploy/kubernetes.
func manifests(t *testing.T) map[string][]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoFile(t, k8sDir), "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	out := map[string][]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeStrict(data)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		out[filepath.Base(f)] = objs
	}
	return out
}

// only returns the single object a manifest file must hold.
func only[T any](t *testing.T, file string) T {
	t.Helper()
	objs := manifests(t)[file]
	if len(objs) != 1 {
		t.Fatalf("%s holds %d objects, want 1", file, len(objs))
	}
	obj, ok := objs[0].(T)
	if !ok {
		t.Fatalf("%s holds a %T", file, objs[0])
	}
	return obj
}

// daemonSet is the DaemonSet of daemonset.yaml.
func daemonSet(t *testing.T) *appsv1.DaemonSet {
	return only[*appsv1.DaemonSet](t, "daemonset.yaml")
}

// configMap is the ConfigMap of configmap.yaml.
func configMap(t *testing.T) *corev1.ConfigMap {
	return only[*corev1.ConfigMap](t, "configmap.yaml")
}

// TestManifestsDecodeStrictly decodes every manifest strictly, and checks
// that strict decoding is in force: a misspelt field must fail.
func TestManifestsDecodeStrictly(t *testing.T) {
	got := manifests(t)
	for _, file := range []string{"namespace.yaml", "serviceaccount.yaml",
		"configmap.yaml", "daemonset.yaml", "kustomization.yaml"} {
		if len(got[file]) == 0 {
			t.Errorf("%s: missing or empty", file)
		}
	}
	for _, tc := range []struct{ name, doc string }{
		{"pod field", "kind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n"},
		{"top-level field", "kind: ConfigMap\ndatas:\n  A: b\n"},
		{"kustomization field", "kind: Kustomization\nresource:\n  - a.yaml\n"},
		{"unknown kind", "kind: Deployment\n"},
	} {
		if _, err := decodeStrict([]byte(tc.doc)); err == nil {
			t.Errorf("%s: decoding %q succeeded, want an error", tc.name, tc.doc)
		}
	}
}

// TestServiceAccountHasNoToken checks that no API token reaches the pods.
func TestServiceAccountHasNoToken(t *testing.T) {
	sa := only[*corev1.ServiceAccount](t, "serviceaccount.yaml")
	pod := daemonSet(t).Spec.Template.Spec
	for name, v := range map[string]*bool{
		"ServiceAccount": sa.AutomountServiceAccountToken,
		"pod spec":       pod.AutomountServiceAccountToken,
	} {
		if v == nil || *v {
			t.Errorf("%s automountServiceAccountToken = %v, want false", name, v)
		}
	}
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("pod uses service account %q, want %q", pod.ServiceAccountName, sa.Name)
	}
}

// TestDaemonSetPodSpec checks the pod-level settings of the DaemonSet.
func TestDaemonSetPodSpec(t *testing.T) {
	ds := daemonSet(t)
	pod := ds.Spec.Template.Spec
	for _, tc := range []struct {
		what string
		got  any
		want any
	}{
		{"hostNetwork", pod.HostNetwork, true},
		{"dnsPolicy", pod.DNSPolicy, corev1.DNSClusterFirstWithHostNet},
		{"priorityClassName", pod.PriorityClassName, "system-node-critical"},
		{"updateStrategy", ds.Spec.UpdateStrategy.Type, appsv1.RollingUpdateDaemonSetStrategyType},
		{"tolerates every taint", slices.ContainsFunc(pod.Tolerations, tolerateAll), true},
		{"pod seccomp", seccompType(pod.SecurityContext), corev1.SeccompProfileTypeRuntimeDefault},
		{"hostPID", pod.HostPID, false},
		{"selector matches template",
			ds.Spec.Selector.MatchLabels["app.kubernetes.io/name"],
			ds.Spec.Template.Labels["app.kubernetes.io/name"]},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

// tolerateAll reports whether tol tolerates every taint.
func tolerateAll(tol corev1.Toleration) bool {
	return tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == ""
}

// seccompType is the pod's default seccomp profile type, if any.
func seccompType(sc *corev1.PodSecurityContext) corev1.SeccompProfileType {
	if sc == nil || sc.SeccompProfile == nil {
		return ""
	}
	return sc.SeccompProfile.Type
}

// TestContainersLockedDown checks every container, init containers
// included: no privilege beyond NET_ADMIN, read-only root, limits set.
func TestContainersLockedDown(t *testing.T) {
	pod := daemonSet(t).Spec.Template.Spec
	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	for _, c := range all {
		t.Run(c.Name, func(t *testing.T) {
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("no securityContext")
			}
			checkContainerSecurity(t, sc, c.Name == "agent")
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if c.Resources.Limits.Name(r, "").IsZero() ||
					c.Resources.Requests.Name(r, "").IsZero() {
					t.Errorf("%s request or limit not set", r)
				}
			}
		})
	}
}

// checkContainerSecurity checks one container's securityContext; only the
// agent runs as non-root without capabilities, the redirect containers
// are root with NET_ADMIN alone.
func checkContainerSecurity(t *testing.T, sc *corev1.SecurityContext, agent bool) {
	t.Helper()
	wantAdd := []corev1.Capability{"NET_ADMIN"}
	if agent {
		wantAdd = nil
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"readOnlyRootFilesystem", deref(sc.ReadOnlyRootFilesystem), true},
		{"allowPrivilegeEscalation", deref(sc.AllowPrivilegeEscalation), false},
		{"privileged", deref(sc.Privileged), false},
		{"capabilities drop", capList(sc.Capabilities, true), []corev1.Capability{"ALL"}},
		{"capabilities add", capList(sc.Capabilities, false), wantAdd},
		{"seccomp", sc.SeccompProfile != nil &&
			sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault, true},
		{"runAsNonRoot", deref(sc.RunAsNonRoot), agent},
		{"runs as root", sc.RunAsUser == nil || *sc.RunAsUser == 0, !agent},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

// deref reads an optional bool, unset meaning false.
func deref(b *bool) bool { return b != nil && *b }

// capList is the dropped or added capabilities of c.
func capList(c *corev1.Capabilities, drop bool) []corev1.Capability {
	switch {
	case c == nil:
		return nil
	case drop:
		return c.Drop
	}
	return c.Add
}

// container finds a container of the DaemonSet's pod by name.
func container(t *testing.T, name string) corev1.Container {
	t.Helper()
	pod := daemonSet(t).Spec.Template.Spec
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// TestAgentProbes checks that both probes ask the admin listener the
// ConfigMap configures, on the paths the agent serves.
func TestAgentProbes(t *testing.T) {
	c := container(t, "agent")
	host, port, err := net.SplitHostPort(configMap(t).Data["ECS_METADATA_AGENT_ADMIN_LISTEN"])
	if err != nil {
		t.Fatalf("ConfigMap ECS_METADATA_AGENT_ADMIN_LISTEN: %v", err)
	}
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s probe: not an HTTP GET", tc.name)
			continue
		}
		g := tc.probe.HTTPGet
		got := fmt.Sprintf("%s %s:%d", g.Path, g.Host, portNumber(t, c, g.Port.String()))
		if want := tc.path + " " + host + ":" + port; got != want {
			t.Errorf("%s probe asks %s, want %s", tc.name, got, want)
		}
	}
}

// portNumber resolves a probe port, number or name, to a number.
func portNumber(t *testing.T, c corev1.Container, port string) int32 {
	t.Helper()
	if n, err := strconv.Atoi(port); err == nil {
		return int32(n)
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, port)
	return 0
}

// TestInterceptContainers checks that the redirect containers take the
// agent's addresses from the ConfigMap, so the two cannot disagree, and use
// the prerouting hook only (the agent's own traffic never passes it).
func TestInterceptContainers(t *testing.T) {
	cmName := configMap(t).Name
	for _, tc := range []struct {
		container string
		env       string
		fromKey   string
		value     string
	}{
		{"link", "ECS_METADATA_INTERCEPT_TO", "ECS_METADATA_AGENT_LISTEN", ""},
		{"intercept", "ECS_METADATA_INTERCEPT_TO", "ECS_METADATA_AGENT_LISTEN", ""},
		{"intercept", "ECS_METADATA_INTERCEPT_ADMIN", "ECS_METADATA_AGENT_ADMIN_LISTEN", ""},
		{"intercept", "ECS_METADATA_INTERCEPT_HOOKS", "", "prerouting"},
		{"intercept", "ECS_METADATA_INTERCEPT_LINK", "", "ecsmeta0"},
		{"link", "ECS_METADATA_INTERCEPT_LINK", "", "ecsmeta0"},
	} {
		got := envSource(container(t, tc.container), tc.env)
		want := "value " + tc.value
		if tc.fromKey != "" {
			want = "configmap " + cmName + "/" + tc.fromKey
		}
		if got != want {
			t.Errorf("%s %s from %q, want %q", tc.container, tc.env, got, want)
		}
	}
	c := container(t, "intercept")
	if c.ReadinessProbe == nil || c.ReadinessProbe.Exec == nil ||
		!slices.Contains(c.ReadinessProbe.Exec.Command, "status") {
		t.Error("intercept container is not ready on 'ecs-metadata-intercept status'")
	}
}

// envSource says where a container's environment variable comes from.
func envSource(c corev1.Container, name string) string {
	for _, e := range c.Env {
		switch {
		case e.Name != name:
		case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			return "configmap " + ref.Name + "/" + ref.Key
		default:
			return "value " + e.Value
		}
	}
	return "unset"
}

// TestKustomizeGolden renders the kustomization as kubectl apply -k would
// and compares it with the golden file; -update rewrites the file.
func TestKustomizeGolden(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), repoFile(t, k8sDir))
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	got, err := m.AsYaml()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if *update {
		if err := os.WriteFile(goldenFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test ./deploy -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("kustomize output differs from %s; if intended, run with -update.\n%s",
			goldenFile, lineDiff(string(want), string(got)))
	}
	if _, err := decodeStrict(got); err != nil {
		t.Errorf("rendered output does not decode strictly: %v", err)
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want %q\n  got  %q", i+1, wl, gl)
		}
	}
	return ""
}
