package chartcheck

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// objects is what one render decodes into.
type objects struct {
	deployments  []appsv1.Deployment
	daemonSets   []appsv1.DaemonSet
	services     []corev1.Service
	accounts     []corev1.ServiceAccount
	secrets      []corev1.Secret
	configMaps   []corev1.ConfigMap
	hpas         []autoscalingv2.HorizontalPodAutoscaler
	pdbs         []policyv1.PodDisruptionBudget
	monitors     []map[string]any
	rules        []map[string]any
	secretByName map[string]corev1.Secret
}

// strict decodes d into v, failing on unknown or duplicate fields.
func strict[T any](t *testing.T, d doc, list *[]T) {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict(d.raw, &v); err != nil {
		t.Errorf("%s: strict decode: %v", d, err)
		return
	}
	*list = append(*list, v)
}

// decode sorts the documents by kind and decodes each strictly.
func decode(t *testing.T, docs []doc) *objects {
	t.Helper()
	o := &objects{secretByName: map[string]corev1.Secret{}}
	want := map[string]string{ // kind -> apiVersion
		"Deployment": "apps/v1", "DaemonSet": "apps/v1", "Service": "v1", "ServiceAccount": "v1",
		"Secret": "v1", "ConfigMap": "v1", "HorizontalPodAutoscaler": "autoscaling/v2",
		"PodDisruptionBudget": "policy/v1", "ServiceMonitor": "monitoring.coreos.com/v1",
		"PrometheusRule": "monitoring.coreos.com/v1",
	}
	for _, d := range docs {
		if av, ok := want[d.meta.Kind]; !ok || av != d.meta.APIVersion {
			t.Errorf("%s: unexpected kind/apiVersion %s %s", d, d.meta.APIVersion, d.meta.Kind)
			continue
		}
		if d.meta.Metadata.Name == "" || d.meta.Metadata.Namespace != namespace {
			t.Errorf("%s: name %q, namespace %q (want %q)", d, d.meta.Metadata.Name, d.meta.Metadata.Namespace, namespace)
		}
		switch d.meta.Kind {
		case "Deployment":
			strict(t, d, &o.deployments)
		case "DaemonSet":
			strict(t, d, &o.daemonSets)
		case "Service":
			strict(t, d, &o.services)
		case "ServiceAccount":
			strict(t, d, &o.accounts)
		case "Secret":
			strict(t, d, &o.secrets)
		case "ConfigMap":
			strict(t, d, &o.configMaps)
		case "HorizontalPodAutoscaler":
			strict(t, d, &o.hpas)
		case "PodDisruptionBudget":
			strict(t, d, &o.pdbs)
		case "ServiceMonitor":
			strict(t, d, &o.monitors)
		case "PrometheusRule":
			strict(t, d, &o.rules)
		}
	}
	for _, s := range o.secrets {
		o.secretByName[s.Name] = s
	}
	return o
}

func TestRenderedManifests(t *testing.T) {
	for name, args := range renderCases(t) {
		t.Run(name, func(t *testing.T) {
			o := decode(t, splitDocs(t, render(t, args...)))
			var pod corev1.PodTemplateSpec
			var selector map[string]string
			switch {
			case len(o.deployments) == 1 && len(o.daemonSets) == 0:
				pod, selector = o.deployments[0].Spec.Template, o.deployments[0].Spec.Selector.MatchLabels
				checkHPA(t, o)
			case len(o.daemonSets) == 1 && len(o.deployments) == 0:
				pod, selector = o.daemonSets[0].Spec.Template, o.daemonSets[0].Spec.Selector.MatchLabels
				if len(o.hpas) != 0 || len(o.pdbs) != 0 {
					t.Errorf("DaemonSet rendered with %d HPA and %d PDB, want none", len(o.hpas), len(o.pdbs))
				}
			default:
				t.Fatalf("want exactly one Deployment or DaemonSet, got %d and %d", len(o.deployments), len(o.daemonSets))
			}
			for k, v := range selector {
				if pod.Labels[k] != v {
					t.Errorf("selector %s=%s does not match the pod labels %v", k, v, pod.Labels)
				}
			}
			checkPod(t, pod.Spec, o)
			checkService(t, o, pod.Spec.Containers[0], selector)
			for _, p := range o.pdbs {
				if p.Spec.Selector == nil || p.Spec.Selector.MatchLabels["app.kubernetes.io/instance"] != selector["app.kubernetes.io/instance"] {
					t.Errorf("PDB %s: selector %v does not match the workload", p.Name, p.Spec.Selector)
				}
			}
			checkMonitoring(t, o)
		})
	}
}

func checkPod(t *testing.T, spec corev1.PodSpec, o *objects) {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e.Value
		if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef == nil || o.secretByName[e.ValueFrom.SecretKeyRef.Name].Data[e.ValueFrom.SecretKeyRef.Key] == nil) {
			t.Errorf("env %s: valueFrom does not name a rendered Secret key", e.Name)
		}
	}
	flags := runFlags(t)
	for name := range env {
		if flag, ok := strings.CutPrefix(name, "PROXYTO_"); ok {
			if _, known := flags[strings.ToLower(strings.ReplaceAll(flag, "_", "-"))]; !known {
				t.Errorf("env %s matches no flag of proxyto run", name)
			}
		}
	}

	// Pod and container security.
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("pod or container securityContext missing")
	}
	if !isTrue(psc.RunAsNonRoot) || !isTrue(sc.RunAsNonRoot) {
		t.Error("runAsNonRoot must be true on pod and container")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != 65532 || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Error("runAsUser must be 65532")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if isTrue(sc.Privileged) {
		t.Error("container must not be privileged")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities must drop ALL and add none: %+v", sc.Capabilities)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile must be RuntimeDefault")
	}
	if isTrue(spec.AutomountServiceAccountToken) || spec.AutomountServiceAccountToken == nil {
		t.Error("automountServiceAccountToken must be false")
	}

	// Ports and probes: both probes on the admin port, which must not be loopback.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["proxy"] == 0 || ports["admin"] == 0 {
		t.Fatalf("container ports proxy and admin required, got %v", ports)
	}
	if env["PROXYTO_LISTEN"] != fmt.Sprintf(":%d", ports["proxy"]) {
		t.Errorf("PROXYTO_LISTEN=%q does not match the proxy port %d", env["PROXYTO_LISTEN"], ports["proxy"])
	}
	admin := env["PROXYTO_ADMIN"]
	if !strings.HasSuffix(admin, fmt.Sprintf(":%d", ports["admin"])) || strings.HasPrefix(admin, "127.") || strings.HasPrefix(admin, "localhost") {
		t.Errorf("PROXYTO_ADMIN=%q must bind a non-loopback address on the admin port %d", admin, ports["admin"])
	}
	checkProbe(t, "liveness", c.LivenessProbe, "/health", ports)
	checkProbe(t, "readiness", c.ReadinessProbe, "/ready", ports)

	// The grace period covers the preStop sleep and the whole drain.
	drain, err := time.ParseDuration(env["PROXYTO_DRAIN_TIMEOUT"])
	if err != nil {
		t.Fatalf("PROXYTO_DRAIN_TIMEOUT=%q: %v", env["PROXYTO_DRAIN_TIMEOUT"], err)
	}
	var sleep time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		sleep = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("terminationGracePeriodSeconds missing")
	}
	if grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; grace <= sleep+drain {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop sleep %v + drain %v", grace, sleep, drain)
	}

	if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork pods need dnsPolicy ClusterFirstWithHostNet, got %q", spec.DNSPolicy)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("cpu/memory requests and a memory limit are expected")
	}
	// GOMEMLIMIT leaves room under the limit for what Go does not see: the
	// kernel's socket memory, charged to the same cgroup.
	if v, ok := env["GOMEMLIMIT"]; ok {
		if n, err := goMemLimitBytes(v); err != nil {
			t.Errorf("GOMEMLIMIT=%q: %v", v, err)
		} else if lim := c.Resources.Limits.Memory(); n >= lim.Value() {
			t.Errorf("GOMEMLIMIT=%q is not below the memory limit %s", v, lim)
		}
	}
	// The only init container is the opt-in one that writes node sysctls.
	for _, ic := range spec.InitContainers {
		if ic.Name != "node-sysctls" || ic.SecurityContext == nil || !isTrue(ic.SecurityContext.Privileged) {
			t.Errorf("unexpected init container %q", ic.Name)
		}
	}
	if !strings.Contains(c.Image, ":") || strings.HasSuffix(c.Image, ":") {
		t.Errorf("image %q has no tag", c.Image)
	}

	// Mounted files exist in the rendered Secret/ConfigMap and are read-only.
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("volume mount %s must be read-only", m.Name)
		}
	}
	if path, ok := env["PROXYTO_AUTH_HTPASSWD"]; ok && !mounted(c, path) {
		t.Errorf("PROXYTO_AUTH_HTPASSWD=%s is not under a volume mount", path)
	}
	if path, ok := env["PROXYTO_UPSTREAM_CA"]; ok && !mounted(c, path) {
		t.Errorf("PROXYTO_UPSTREAM_CA=%s is not under a volume mount", path)
	}
	if path, ok := env["PROXYTO_ROUTES"]; ok && !mounted(c, path) {
		t.Errorf("PROXYTO_ROUTES=%s is not under a volume mount", path)
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			if s, ok := o.secretByName[v.Secret.SecretName]; ok {
				for _, it := range v.Secret.Items {
					if s.Data[it.Key] == nil {
						t.Errorf("volume %s: Secret %s has no key %s", v.Name, s.Name, it.Key)
					}
				}
			}
		}
	}
}

// goMemLimitBytes parses a GOMEMLIMIT value as the Go runtime does: a
// number with an optional B, KiB, MiB, GiB or TiB suffix.
func goMemLimitBytes(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}

func mounted(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string, ports map[string]int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe must be an httpGet", what)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe path %q, want %q", what, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	if !(port.Type == intstr.String && port.StrVal == "admin") && !(port.Type == intstr.Int && port.IntVal == ports["admin"]) {
		t.Errorf("%s probe port %s, want the admin port", what, port.String())
	}
}

func checkService(t *testing.T, o *objects, c corev1.Container, selector map[string]string) {
	t.Helper()
	if len(o.services) != 1 {
		t.Fatalf("want 1 Service, got %d", len(o.services))
	}
	s := o.services[0]
	for k, v := range s.Spec.Selector {
		if selector[k] != v {
			t.Errorf("Service selector %s=%s does not match the workload", k, v)
		}
	}
	names := map[string]bool{}
	for _, p := range c.Ports {
		names[p.Name] = true
	}
	seen := map[string]bool{}
	for _, p := range s.Spec.Ports {
		if p.TargetPort.Type != intstr.String || !names[p.TargetPort.StrVal] {
			t.Errorf("Service port %s targets %s, not a named container port", p.Name, p.TargetPort.String())
		}
		seen[p.Name] = true
	}
	if !seen["proxy"] || !seen["admin"] {
		t.Errorf("Service must expose proxy and admin, has %v", seen)
	}
}

func checkHPA(t *testing.T, o *objects) {
	t.Helper()
	for _, h := range o.hpas {
		d := o.deployments[0]
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("HPA targets %s %s, want Deployment %s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, d.Name)
		}
		if d.Spec.Replicas != nil {
			t.Error("Deployment sets replicas while an HPA manages it")
		}
		if len(h.Spec.Metrics) == 0 || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: bad metrics or replica bounds", h.Name)
		}
	}
}

// checkMonitoring checks the Prometheus Operator objects structurally.
func checkMonitoring(t *testing.T, o *objects) {
	t.Helper()
	for _, m := range o.monitors {
		eps, _ := dig(m, "spec", "endpoints").([]any)
		if len(eps) == 0 {
			t.Error("ServiceMonitor: spec.endpoints empty")
		}
		for _, e := range eps {
			ep, _ := e.(map[string]any)
			if ep["port"] != "admin" || ep["path"] != "/metrics" {
				t.Errorf("ServiceMonitor endpoint %v: want port admin, path /metrics", ep)
			}
		}
		if ml, _ := dig(m, "spec", "selector", "matchLabels").(map[string]any); len(ml) == 0 {
			t.Error("ServiceMonitor: spec.selector.matchLabels empty")
		}
	}
	for _, r := range o.rules {
		groups, _ := dig(r, "spec", "groups").([]any)
		if len(groups) == 0 {
			t.Error("PrometheusRule: spec.groups empty")
		}
		for _, g := range groups {
			gm, _ := g.(map[string]any)
			rules, _ := gm["rules"].([]any)
			if gm["name"] == "" || len(rules) == 0 {
				t.Errorf("PrometheusRule group %v: name and rules required", gm["name"])
			}
			for _, rr := range rules {
				rule, _ := rr.(map[string]any)
				alert, _ := rule["alert"].(string)
				expr, _ := rule["expr"].(string)
				if alert == "" || strings.TrimSpace(expr) == "" {
					t.Errorf("PrometheusRule rule %v: alert and expr required", rule)
				}
				if strings.Contains(expr, "job=") && !strings.Contains(expr, `namespace="`+namespace+`"`) {
					t.Errorf("alert %s: job matcher not narrowed to the release namespace: %s", alert, expr)
				}
				if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
					t.Errorf("alert %s: unbalanced expression %q", alert, expr)
				}
				if _, err := time.ParseDuration(fmt.Sprint(rule["for"])); rule["for"] != nil && err != nil {
					t.Errorf("alert %s: for %v: %v", alert, rule["for"], err)
				}
			}
		}
	}
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func isTrue(b *bool) bool { return b != nil && *b }
