package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The names the manifests agree on (and docs/serve.md uses).
const (
	namespace      = "imgfab"
	deploymentName = "imgfab-serve"
	containerName  = "imgfab"
	nonrootUID     = 65532
	listenPort     = 8080
)

// wantArgs is the command line the brief fixes for the serve container.
var wantArgs = []string{
	"serve", "--store", "$(IMGFAB_STORE)", "--listen", ":8080", "--cache", "/cache",
	"--max-builds", "2", "--token-file", "/var/run/secrets/imgfab/token",
}

// allowedKinds are the only kinds a manifest may hold; anything else (a typo in kind or
// apiVersion, a CRD the cluster may lack) fails the test.
var allowedKinds = map[schema.GroupVersionKind]bool{
	{Version: "v1", Kind: "Namespace"}:                                     true,
	{Version: "v1", Kind: "ServiceAccount"}:                                true,
	{Version: "v1", Kind: "ConfigMap"}:                                     true,
	{Version: "v1", Kind: "Secret"}:                                        true,
	{Version: "v1", Kind: "Service"}:                                       true,
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                     true,
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:          true,
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}: true,
}

// strictDecoder decodes YAML into the registered Kubernetes type named by its apiVersion and kind
// the way the API server's strict field validation does: an unknown field, a field spelled in the
// wrong case or a duplicate key is an error, and so is a kind no type is registered for.
func strictDecoder(t testing.TB) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}

// decodeStrict decodes one YAML document into its API type.
func decodeStrict(dec runtime.Decoder, doc []byte) (runtime.Object, *schema.GroupVersionKind, error) {
	obj, gvk, err := dec.Decode(doc, nil, nil)
	if err != nil {
		// A strict decoding error comes with a decoded object: it is still a failure.
		return nil, gvk, err
	}
	return obj, gvk, nil
}

// splitDocuments splits a YAML stream at its "---" lines, dropping documents that hold only
// comments and blank lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		meaningful := false
		for _, l := range strings.Split(cur.String(), "\n") {
			if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
				meaningful = true
				break
			}
		}
		if meaningful {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(l, " \t\r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(l)
	}
	flush()
	return docs
}

// object is one decoded document.
type object struct {
	file string
	obj  runtime.Object
	gvk  schema.GroupVersionKind
}

// manifests is every object of every manifest file in this directory.
type manifests struct {
	files       []string // base names of the Kubernetes manifest files (not kustomization.yaml)
	objects     []object
	deployment  *appsv1.Deployment
	service     *corev1.Service
	pdb         *policyv1.PodDisruptionBudget
	hpa         *autoscalingv2.HorizontalPodAutoscaler
	namespaces  map[string]*corev1.Namespace
	accounts    map[string]*corev1.ServiceAccount
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	secretFiles map[string]string // Secret name → file
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	paths, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("*.yml")
	paths = append(paths, more...)
	sort.Strings(paths)
	m := &manifests{
		namespaces: map[string]*corev1.Namespace{}, accounts: map[string]*corev1.ServiceAccount{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		secretFiles: map[string]string{},
	}
	dec := strictDecoder(t)
	for _, p := range paths {
		if p == "kustomization.yaml" {
			continue // not a Kubernetes API object: TestKustomization decodes it
		}
		m.files = append(m.files, p)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs := splitDocuments(data)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", p)
		}
		for i, doc := range docs {
			obj, gvk, err := decodeStrict(dec, doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", p, i+1, err)
				continue
			}
			if !allowedKinds[*gvk] {
				t.Errorf("%s, document %d: kind %v is not one this deployment uses", p, i+1, gvk)
				continue
			}
			m.objects = append(m.objects, object{file: p, obj: obj, gvk: *gvk})
			dup := func(kind, name string) { t.Errorf("%s: a second %s %q", p, kind, name) }
			switch o := obj.(type) {
			case *appsv1.Deployment:
				if m.deployment != nil {
					dup("Deployment", o.Name)
				}
				m.deployment = o
			case *corev1.Service:
				if m.service != nil {
					dup("Service", o.Name)
				}
				m.service = o
			case *policyv1.PodDisruptionBudget:
				if m.pdb != nil {
					dup("PodDisruptionBudget", o.Name)
				}
				m.pdb = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				if m.hpa != nil {
					dup("HorizontalPodAutoscaler", o.Name)
				}
				m.hpa = o
			case *corev1.Namespace:
				m.namespaces[o.Name] = o
			case *corev1.ServiceAccount:
				m.accounts[o.Name] = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				if _, ok := m.secrets[o.Name]; ok {
					dup("Secret", o.Name)
				}
				m.secrets[o.Name] = o
				m.secretFiles[o.Name] = p
			default:
				t.Errorf("%s, document %d: %T has no check in this test", p, i+1, obj)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for what, missing := range map[string]bool{
		"Deployment": m.deployment == nil, "Service": m.service == nil,
		"PodDisruptionBudget": m.pdb == nil, "HorizontalPodAutoscaler": m.hpa == nil,
	} {
		if missing {
			t.Fatalf("no %s in %v", what, m.files)
		}
	}
	return m
}

// TestManifestsDecodeStrictly: every document of every manifest decodes strictly into its API
// type, every namespaced object is in the imgfab namespace, and names are unique per kind.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.objects) < 8 {
		t.Errorf("only %d objects in %v", len(m.objects), m.files)
	}
	seen := map[string]string{}
	for _, o := range m.objects {
		meta, err := metaOf(o.obj)
		if err != nil {
			t.Fatalf("%s: %v", o.file, err)
		}
		key := o.gvk.Kind + "/" + meta.GetName()
		if prev, ok := seen[key]; ok {
			t.Errorf("%s: %s also in %s", o.file, key, prev)
		}
		seen[key] = o.file
		if meta.GetName() == "" {
			t.Errorf("%s: a %s without a name", o.file, o.gvk.Kind)
		}
		if o.gvk.Kind == "Namespace" {
			if meta.GetNamespace() != "" {
				t.Errorf("%s: Namespace %s has a namespace", o.file, meta.GetName())
			}
			continue
		}
		// Set in the files too, so `kubectl apply -f` works without kustomize.
		if meta.GetNamespace() != namespace {
			t.Errorf("%s: %s in namespace %q, want %q", o.file, key, meta.GetNamespace(), namespace)
		}
		if meta.GetLabels()["app.kubernetes.io/name"] != "imgfab" {
			t.Errorf("%s: %s lacks the label app.kubernetes.io/name=imgfab", o.file, key)
		}
	}
	ns := m.namespaces[namespace]
	if ns == nil {
		t.Fatalf("no Namespace %q", namespace)
	}
	// The namespace enforces the restricted Pod Security Standard, so the API server itself refuses
	// a pod that loses the settings checked in TestDeploymentSecurity.
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("Namespace %s: pod-security.kubernetes.io/enforce = %q, want restricted", ns.Name, got)
	}
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	type hasMeta interface{ GetObjectMeta() metav1.Object }
	if o, ok := obj.(hasMeta); ok {
		return o.GetObjectMeta(), nil
	}
	return nil, &strictTypeError{obj}
}

type strictTypeError struct{ obj runtime.Object }

func (e *strictTypeError) Error() string { return fmt.Sprintf("no object metadata in %T", e.obj) }

// serveContainer is the imgfab container of the Deployment.
func serveContainer(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == containerName {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %q", d.Name, containerName)
	return nil
}

// podSelects reports whether sel selects the Deployment's pod template.
func podSelects(t *testing.T, sel *metav1.LabelSelector, d *appsv1.Deployment) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(d.Spec.Template.Labels))
}

// TestDeploymentSecurity: the pod runs as the image's non-root user with a read-only root, no
// privilege escalation, no capabilities, the runtime's seccomp profile, and only volume types the
// restricted Pod Security Standard allows.
func TestDeploymentSecurity(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	ps := d.Spec.Template.Spec
	psc := ps.SecurityContext
	if psc == nil {
		t.Fatal("no pod securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != nonrootUID {
		t.Errorf("pod securityContext.runAsUser = %v, want %d", ptrString(psc.RunAsUser), nonrootUID)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile = %+v, want RuntimeDefault", psc.SeccompProfile)
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		t.Error("the pod shares a host namespace")
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the pod mounts a Kubernetes API token it does not need")
	}
	sa := m.accounts[ps.ServiceAccountName]
	if sa == nil {
		t.Errorf("serviceAccountName %q: no such ServiceAccount in the manifests", ps.ServiceAccountName)
	} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
	}
	all := append(slices.Clone(ps.InitContainers), ps.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser != nonrootUID {
			t.Errorf("container %s: runAsUser = %d, want %d", c.Name, *sc.RunAsUser, nonrootUID)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: capabilities do not drop ALL", c.Name)
		} else if len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: adds capabilities %v", c.Name, sc.Capabilities.Add)
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile %s", c.Name, sc.SeccompProfile.Type)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("container %s: hostPort %d", c.Name, p.HostPort)
			}
		}
	}
	for _, v := range ps.Volumes {
		switch {
		case v.EmptyDir != nil, v.Secret != nil, v.ConfigMap != nil, v.Projected != nil, v.DownwardAPI != nil:
		default:
			t.Errorf("volume %s: a type the restricted profile (or this test) does not allow", v.Name)
		}
	}
}

// TestDeploymentWiring: replicas, arguments, the ConfigMap, the Secrets and the volumes behind the
// paths in the arguments, the probes, resources and shutdown.
func TestDeploymentWiring(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	if d.Name != deploymentName {
		t.Errorf("Deployment is named %q, want %q", d.Name, deploymentName)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 3 {
		t.Errorf("replicas = %v, want at least 3", ptrString(d.Spec.Replicas))
	}
	if !podSelects(t, d.Spec.Selector, d) {
		t.Errorf("the Deployment's selector %v does not select its own pods %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	ps := d.Spec.Template.Spec
	c := serveContainer(t, d)
	if c.Image != "ghcr.io/imgfab/imgfab:latest" {
		t.Errorf("image = %q, want the placeholder ghcr.io/imgfab/imgfab:latest (kustomize overrides it)", c.Image)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %v replaces the image's entrypoint", c.Command)
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args = %q\nwant   %q", c.Args, wantArgs)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	// Every $(VAR) in the arguments is defined, or Kubernetes would pass it through literally.
	for _, a := range c.Args {
		for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if _, ok := env[ref[1]]; !ok {
				t.Errorf("argument %q: $(%s) is not in env", a, ref[1])
			}
		}
	}
	store := env["IMGFAB_STORE"]
	if store.ValueFrom == nil || store.ValueFrom.ConfigMapKeyRef == nil {
		t.Errorf("IMGFAB_STORE does not come from a ConfigMap: %+v", store)
	} else {
		ref := store.ValueFrom.ConfigMapKeyRef
		cm := m.configMaps[ref.Name]
		if cm == nil {
			t.Errorf("IMGFAB_STORE: no ConfigMap %q in the manifests", ref.Name)
		} else if v := cm.Data[ref.Key]; v == "" || strings.Contains(v, "://") || !strings.Contains(v, "/") {
			t.Errorf("ConfigMap %s: %s = %q, want REGISTRY/REPO", cm.Name, ref.Key, v)
		}
	}

	mounts := map[string]corev1.VolumeMount{} // by mount path
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = v
	}
	volumeAt := func(p string) (corev1.VolumeMount, corev1.Volume, bool) {
		vm, ok := mounts[p]
		if !ok {
			t.Errorf("nothing is mounted at %s", p)
			return vm, corev1.Volume{}, false
		}
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("mount %s: no volume %q", p, vm.Name)
		}
		return vm, v, ok
	}
	// Scratch space on emptyDirs with a size limit: the cache (--cache) and /tmp.
	for _, p := range []string{argAfter(c.Args, "--cache"), "/tmp"} {
		vm, v, ok := volumeAt(p)
		if !ok {
			continue
		}
		if v.EmptyDir == nil {
			t.Errorf("%s: volume %s is not an emptyDir", p, v.Name)
			continue
		}
		if v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Sign() <= 0 {
			t.Errorf("%s: emptyDir %s has no sizeLimit", p, v.Name)
		}
		if v.EmptyDir.Medium == corev1.StorageMediumMemory {
			t.Errorf("%s: emptyDir %s is in memory, counted against the memory limit", p, v.Name)
		}
		if vm.ReadOnly {
			t.Errorf("%s: mounted read-only", p)
		}
	}
	// secretFile checks that file is a key of a Secret mounted read-only in file's directory,
	// and returns that Secret's name.
	secretFile := func(file, key string) string {
		vm, v, ok := volumeAt(path.Dir(file))
		if !ok {
			return ""
		}
		if !vm.ReadOnly {
			t.Errorf("%s: secret mounted writable", vm.MountPath)
		}
		if v.Secret == nil {
			t.Errorf("%s: volume %s is not a Secret", vm.MountPath, v.Name)
			return ""
		}
		found := false
		for _, it := range v.Secret.Items {
			if it.Path == path.Base(file) && it.Key == key {
				found = true
			}
		}
		if !found && !(len(v.Secret.Items) == 0 && key == path.Base(file)) {
			t.Errorf("%s: Secret %s does not put key %q at %s", vm.MountPath, v.Secret.SecretName, key, file)
		}
		// Readable by the non-root user: either by the world (not wanted) or through fsGroup.
		mode := int32(0o644)
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
		if mode&0o004 != 0 {
			t.Errorf("%s: Secret files are world-readable (mode %#o)", vm.MountPath, mode)
		}
		if mode&0o040 == 0 || ps.SecurityContext.FSGroup == nil || *ps.SecurityContext.FSGroup != nonrootUID {
			t.Errorf("%s: Secret files (mode %#o) are not readable by group %d through fsGroup", vm.MountPath, mode, nonrootUID)
		}
		s := m.secrets[v.Secret.SecretName]
		if s == nil {
			t.Errorf("%s: no template for Secret %q in the manifests", vm.MountPath, v.Secret.SecretName)
			return v.Secret.SecretName
		}
		if _, ok := s.StringData[key]; !ok {
			if _, ok := s.Data[key]; !ok {
				t.Errorf("Secret %s template has no key %q", s.Name, key)
			}
		}
		return s.Name
	}
	tokenFile := argAfter(c.Args, "--token-file")
	secretFile(tokenFile, "token")
	// The docker config Secret where go-containerregistry's default keychain reads it:
	// $DOCKER_CONFIG/config.json.
	dockerConfig := env["DOCKER_CONFIG"]
	if dockerConfig.Value == "" {
		t.Error("DOCKER_CONFIG is not set")
	} else if name := secretFile(path.Join(dockerConfig.Value, "config.json"), corev1.DockerConfigJsonKey); name != "" {
		if s := m.secrets[name]; s != nil && s.Type != corev1.SecretTypeDockerConfigJson {
			t.Errorf("Secret %s is of type %q, want %q", name, s.Type, corev1.SecretTypeDockerConfigJson)
		}
	}

	// Probes on the serving port: liveness on /healthz, readiness on /readyz.
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: not an httpGet probe", p.what)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s: path %q, want %q", p.what, p.probe.HTTPGet.Path, p.path)
		}
		if got := containerPort(t, c, p.probe.HTTPGet.Port); got != listenPort {
			t.Errorf("%s: port %v is %d, want %d (--listen)", p.what, p.probe.HTTPGet.Port.String(), got, listenPort)
		}
	}
	if argAfter(c.Args, "--listen") != ":8080" {
		t.Errorf("--listen %q, want :8080", argAfter(c.Args, "--listen"))
	}

	// Memory: the request is the service's budget (512Mi), the limit 1Gi, Go's soft limit below it.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if q, ok := lim[corev1.ResourceMemory]; !ok || q.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("memory limit = %v, want 1Gi", q.String())
	}
	if q, ok := req[corev1.ResourceMemory]; !ok || q.Sign() <= 0 || q.Cmp(resource.MustParse("512Mi")) > 0 {
		t.Errorf("memory request = %v, want at most 512Mi", q.String())
	}
	if q, ok := req[corev1.ResourceCPU]; !ok || q.Sign() <= 0 {
		t.Error("no CPU request (the HPA's CPU utilization is relative to it)")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceEphemeralStorage} {
		if _, ok := lim[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	// The ephemeral-storage limit covers the emptyDirs' size limits.
	var scratch resource.Quantity
	for _, v := range ps.Volumes {
		if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
			scratch.Add(*v.EmptyDir.SizeLimit)
		}
	}
	if q := lim[corev1.ResourceEphemeralStorage]; q.Cmp(scratch) < 0 {
		t.Errorf("ephemeral-storage limit %v is below the emptyDirs' %v", q.String(), scratch.String())
	}
	if gml := env["GOMEMLIMIT"].Value; gml != "" {
		q, err := resource.ParseQuantity(strings.TrimSuffix(gml, "B"))
		if err != nil {
			t.Errorf("GOMEMLIMIT %q: %v", gml, err)
		} else if ml := lim[corev1.ResourceMemory]; q.Cmp(ml) >= 0 {
			t.Errorf("GOMEMLIMIT %s is not below the memory limit %v", gml, ml.String())
		}
	}

	// Shutdown: enough time for a build, and the preStop pause fits in it.
	grace := ps.TerminationGracePeriodSeconds
	if grace == nil || *grace < 300 {
		t.Errorf("terminationGracePeriodSeconds = %v, want at least 300", ptrString(grace))
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop hook")
	} else if h := c.Lifecycle.PreStop; h.Exec != nil {
		t.Error("preStop runs a program; the image has none besides imgfab")
	} else if h.Sleep != nil && grace != nil && *grace-h.Sleep.Seconds < 10 {
		// imgfab exits within seconds of SIGTERM, which comes after the pause.
		t.Errorf("preStop sleeps %ds of a %ds grace period: under 10 s left for the exit", h.Sleep.Seconds, *grace)
	}

	// Spread across nodes: a hard topology spread on the hostname, or required anti-affinity.
	spread := false
	for _, tsc := range ps.TopologySpreadConstraints {
		if tsc.TopologyKey == corev1.LabelHostname && tsc.WhenUnsatisfiable == corev1.DoNotSchedule && podSelects(t, tsc.LabelSelector, d) {
			spread = true
		}
	}
	if a := ps.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == corev1.LabelHostname && podSelects(t, term.LabelSelector, d) {
				spread = true
			}
		}
	}
	if !spread {
		t.Error("replicas are not spread across nodes")
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Error("a rollout may lower capacity: want rollingUpdate.maxUnavailable 0")
	}
}

// argAfter is the value of flag in args ("" when absent).
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// containerPort resolves a port (number or name) against the container's ports.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Errorf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// TestServicePDBAndHPA: the Service and the PodDisruptionBudget select the Deployment's pods, the
// HPA scales that Deployment on the queue-depth metric with CPU as a fallback.
func TestServicePDBAndHPA(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	c := serveContainer(t, d)

	svc := m.service
	if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service %s is of type %s, want ClusterIP", svc.Name, svc.Spec.Type)
	}
	if !podSelects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d) {
		t.Errorf("Service %s selector %v does not select the pods %v", svc.Name, svc.Spec.Selector, d.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service %s: %d ports, want 1", svc.Name, len(svc.Spec.Ports))
	}
	if p := svc.Spec.Ports[0]; p.Port != 80 || containerPort(t, c, p.TargetPort) != listenPort {
		t.Errorf("Service %s: port %d → %s, want 80 → %d", svc.Name, p.Port, p.TargetPort.String(), listenPort)
	}

	pdb := m.pdb
	if !podSelects(t, pdb.Spec.Selector, d) {
		t.Errorf("PodDisruptionBudget %s selector %v does not select the pods %v", pdb.Name, pdb.Spec.Selector, d.Spec.Template.Labels)
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable != nil:
		t.Error("PodDisruptionBudget sets both minAvailable and maxUnavailable")
	case pdb.Spec.MaxUnavailable != nil:
		if pdb.Spec.MaxUnavailable.Type != intstr.Int || pdb.Spec.MaxUnavailable.IntVal != 1 {
			t.Errorf("PodDisruptionBudget maxUnavailable = %s, want 1", pdb.Spec.MaxUnavailable.String())
		}
	case pdb.Spec.MinAvailable != nil:
		if v := pdb.Spec.MinAvailable; v.Type != intstr.Int || v.IntVal < 2 || v.IntVal >= *d.Spec.Replicas {
			t.Errorf("PodDisruptionBudget minAvailable = %s, want 2..replicas-1", v.String())
		}
	default:
		t.Error("PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}

	hpa := m.hpa
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HPA targets %s %s %s, want apps/v1 Deployment %s", ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < *d.Spec.Replicas {
		t.Errorf("HPA minReplicas = %v, below the Deployment's %d", ptrString(hpa.Spec.MinReplicas), *d.Spec.Replicas)
	}
	if hpa.Spec.MaxReplicas <= *d.Spec.Replicas {
		t.Errorf("HPA maxReplicas = %d leaves no room to scale", hpa.Spec.MaxReplicas)
	}
	queue, cpu := false, false
	for _, mt := range hpa.Spec.Metrics {
		switch {
		case mt.Type == autoscalingv2.PodsMetricSourceType && mt.Pods != nil && mt.Pods.Metric.Name == "imgfab_build_queue_depth":
			tg := mt.Pods.Target
			if tg.Type != autoscalingv2.AverageValueMetricType || tg.AverageValue == nil || tg.AverageValue.Cmp(resource.MustParse("1")) != 0 {
				t.Errorf("HPA: imgfab_build_queue_depth target %+v, want averageValue 1", tg)
			}
			queue = true
		case mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU:
			cpu = true
		}
	}
	if !queue {
		t.Error("HPA: no Pods metric imgfab_build_queue_depth")
	}
	if !cpu {
		t.Error("HPA: no CPU fallback")
	}
}

// TestSecretsAreTemplates: the Secrets in the repository are placeholders in *.example.yaml files,
// which kustomization.yaml does not apply.
func TestSecretsAreTemplates(t *testing.T) {
	m := loadManifests(t)
	if len(m.secrets) == 0 {
		t.Fatal("no Secret templates")
	}
	for name, s := range m.secrets {
		if f := m.secretFiles[name]; !strings.HasSuffix(f, ".example.yaml") {
			t.Errorf("Secret %s is in %s, not in a *.example.yaml template", name, f)
		}
		if len(s.Data) > 0 {
			t.Errorf("Secret %s has base64 data; templates use stringData placeholders", name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE") {
				t.Errorf("Secret %s key %s does not look like a placeholder: %q", name, k, v)
			}
		}
		// imgfab serve refuses a token under 16 characters: the placeholder cannot be used as is.
		if v, ok := s.StringData["token"]; ok && len(strings.TrimSpace(v)) >= 16 {
			t.Errorf("Secret %s: the token placeholder %q is long enough to be accepted as a token", name, v)
		}
	}
}

// kustomization is the part of kustomize's Kustomization type these manifests use; decoding
// strictly into it refuses any other field, so a typo there fails as well.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

// TestKustomization: kustomization.yaml lists exactly the manifests that are not templates, and its
// images entry names the Deployment's image.
func TestKustomization(t *testing.T) {
	m := loadManifests(t)
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	if k.Namespace != namespace {
		t.Errorf("kustomization.yaml namespace %q, want %q", k.Namespace, namespace)
	}
	var want []string
	for _, f := range m.files {
		if !strings.HasSuffix(f, ".example.yaml") {
			want = append(want, f)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want %v", got, want)
	}
	image := serveContainer(t, m.deployment).Image
	repo := image[:strings.LastIndex(image, ":")]
	if len(k.Images) != 1 || k.Images[0].Name != repo {
		t.Errorf("kustomization.yaml images %+v, want one entry named %s", k.Images, repo)
	}
}

// TestStrictDecodingIsReal: copies of deployment.yaml with one field misspelled (or mis-cased, or
// doubled, or of an unknown kind) fail to decode, while the unchanged copy decodes.
func TestStrictDecodingIsReal(t *testing.T) {
	data, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := strictDecoder(t)
	if _, _, err := decodeStrict(dec, data); err != nil {
		t.Fatalf("deployment.yaml unchanged: %v", err)
	}
	for _, c := range []struct{ name, old, new string }{
		{"misspelled field", "terminationGracePeriodSeconds: 300", "terminationGracePeriodSecond: 300"},
		{"misspelled nested field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
		{"wrong case", "  replicas: 3\n", "  Replicas: 3\n"},
		{"duplicate field", "  replicas: 3\n", "  replicas: 3\n  replicas: 4\n"},
		{"field at the wrong level", "      enableServiceLinks: false\n", "      enableServiceLinks: false\n      readinessProbe: {}\n"},
		{"wrong type", "  replicas: 3\n", "  replicas: three\n"},
		{"unknown kind", "kind: Deployment\n", "kind: Deploymnet\n"},
		{"unknown apiVersion", "apiVersion: apps/v1\n", "apiVersion: apps/v1beta9\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(string(data), c.old) != 1 {
				t.Fatalf("deployment.yaml has %d of %q, want exactly 1", strings.Count(string(data), c.old), c.old)
			}
			bad := strings.Replace(string(data), c.old, c.new, 1)
			obj, gvk, err := decodeStrict(dec, []byte(bad))
			if err == nil {
				t.Fatalf("decoded without error into %T (%v)", obj, gvk)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
