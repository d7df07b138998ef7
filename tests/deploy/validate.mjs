// ctest "deploy_manifests": renders every kustomization under deploy/ with
// `kubectl kustomize` (offline), validates every object against the upstream
// Kubernetes OpenAPI schemas (kubernetes-models 5.1.0) plus unknown fields,
// and checks the security properties of the daemon and the example pods.
// Then a self-test feeds mutated manifests and requires each to be caught.
//
// Usage: node tests/deploy/validate.mjs [--no-selftest]
import {
  RENDER_DIRS,
  METRICS_SCRAPER_UNSET,
  checkDaemon,
  checkMonitoring,
  checkPolicy,
  checkWorkloads,
  render,
  schemaProblems,
} from "./manifests.mjs";

const results = [];
function report(ok, line) {
  results.push(ok);
  console.log(`${ok ? "PASS" : "FAIL"} ${line}`);
}

const rendered = {};
for (const dir of Object.keys(RENDER_DIRS)) {
  try {
    rendered[dir] = render(dir);
    report(true, `${dir}: renders (${rendered[dir].length} objects: ${rendered[dir].map((o) => o.kind).join(", ")})`);
  } catch (e) {
    report(false, `${dir}: kubectl kustomize failed: ${e.stderr || e.message}`);
  }
}

function checksFor(dir, objects) {
  if (RENDER_DIRS[dir] === "daemon")
    return checkDaemon(objects, { hardened: dir.endsWith("hardened"), base: dir === "deploy/base" });
  if (RENDER_DIRS[dir] === "policy") return checkPolicy(objects, rendered["deploy/examples"] ?? []);
  if (RENDER_DIRS[dir] === "monitoring") return checkMonitoring(objects, rendered["deploy/overlays/default"] ?? []);
  return checkWorkloads(objects, rendered["deploy/overlays/default"] ?? []);
}

for (const [dir, objects] of Object.entries(rendered)) {
  const problems = [];
  for (const o of objects) problems.push(...(await schemaProblems(o)));
  report(problems.length === 0, `${dir}: schema validation${problems.length ? "\n  " + problems.join("\n  ") : ""}`);
  const failures = checksFor(dir, objects);
  report(failures.length === 0, `${dir}: property checks${failures.length ? "\n  " + failures.join("\n  ") : ""}`);
}

// ------------------------------------------------------------- self-test
// Each mutation breaks one property; the named check (or the schema) must
// catch it. A check that cannot fail would show up here.

const clone = (x) => structuredClone(x);
const find = (objs, kind, pred = () => true) => objs.find((o) => o.kind === kind && pred(o));
const daemonContainer = (objs) => find(objs, "DaemonSet").spec.template.spec.containers[0];
const consumer = (objs) => find(objs, "Pod", (p) => p.metadata.labels["app.kubernetes.io/component"] === "consumer");
const provider = (objs) => find(objs, "Pod", (p) => p.metadata.labels["app.kubernetes.io/component"] === "provider");
const workload = (objs) => consumer(objs).spec.containers[0];
const metricsPolicy = (objs) => find(objs, "NetworkPolicy", (p) => p.metadata.name === "mount-helper-metrics");
const setFlag = (c, name, value) => {
  c.args = c.args.map((a) => (a.startsWith(`--${name}=`) ? `--${name}=${value}` : a));
};

const mutations = [
  // consumer pod
  ["deploy/examples", "C1", "consumer adds CAP_SYS_ADMIN", (o) => {
    workload(o).securityContext.capabilities.add = ["SYS_ADMIN"];
  }],
  ["deploy/examples", "C1", "consumer stops dropping ALL", (o) => {
    workload(o).securityContext.capabilities.drop = ["NET_RAW"];
  }],
  ["deploy/examples", "C1", "consumer allows privilege escalation", (o) => {
    workload(o).securityContext.allowPrivilegeEscalation = true;
  }],
  ["deploy/examples", "C1", "consumer init container privileged", (o) => {
    consumer(o).spec.initContainers[0].securityContext.privileged = true;
  }],
  ["deploy/examples", "C1", "consumer gets hostPID", (o) => {
    consumer(o).spec.hostPID = true;
  }],
  ["deploy/examples", "C1", "consumer runs as root", (o) => {
    consumer(o).spec.securityContext.runAsUser = 0;
  }],
  ["deploy/examples", "C1", "consumer seccomp Unconfined", (o) => {
    consumer(o).spec.securityContext.seccompProfile = { type: "Unconfined" };
  }],
  ["deploy/examples", "C2", "consumer mounts hostPath /etc", (o) => {
    const p = consumer(o);
    p.spec.volumes.push({ name: "etc", hostPath: { path: "/etc" } });
    p.spec.containers[0].volumeMounts.push({ name: "etc", mountPath: "/host-etc", mountPropagation: "HostToContainer" });
  }],
  ["deploy/examples", "C2", "consumer mounts the whole instance base", (o) => {
    consumer(o).spec.volumes.find((v) => v.name === "rootfs").hostPath.path = "/var/lib/stoppablecontainer";
  }],
  ["deploy/examples", "C2", "consumer rootfs without HostToContainer", (o) => {
    delete workload(o).volumeMounts.find((m) => m.name === "rootfs").mountPropagation;
  }],
  ["deploy/examples", "C3", "consumer readiness probe not sc-exec --ready", (o) => {
    workload(o).readinessProbe.exec.command = ["/.sc-bin/sc-exec", "--health"];
  }],
  ["deploy/examples", "C3", "consumer loses /.sc-bin from PATH", (o) => {
    workload(o).env = [];
  }],
  ["deploy/examples", "C3", "consumer PATH only /.sc-bin (breaks commands in the rootfs)", (o) => {
    workload(o).env = [{ name: "PATH", value: "/.sc-bin" }];
  }],
  ["deploy/examples", "C4", "consumer not in the socket group", (o) => {
    consumer(o).spec.securityContext.supplementalGroups = [];
  }],
  ["deploy/examples", "C5", "consumer of an instance nobody provides", (o) => {
    consumer(o).spec.volumes.find((v) => v.name === "rootfs").hostPath.path =
      "/var/lib/stoppablecontainer/other/instance/rootfs";
  }],
  // provider pod
  ["deploy/examples", "P1", "provider adds NET_ADMIN", (o) => {
    provider(o).spec.containers[1].securityContext.capabilities.add = ["NET_ADMIN"];
  }],
  ["deploy/examples", "P2", "provider loses ROOTFS_MARKER", (o) => {
    provider(o).spec.containers[0].env = [];
  }],
  ["deploy/examples", "P2", "provider readiness probes another instance", (o) => {
    provider(o).spec.containers[1].readinessProbe.exec.command[2] = "other/instance";
  }],
  ["deploy/examples", "P3", "provider mounts another instance", (o) => {
    provider(o).spec.volumes.find((v) => v.name === "instance").hostPath.path =
      "/var/lib/stoppablecontainer/other/instance";
  }],
  // daemon
  ["deploy/overlays/default", "D15", "daemon loses its NetworkPolicy", (o) => {
    o.splice(o.findIndex((x) => x.kind === "NetworkPolicy"), 1);
  }],
  ["deploy/overlays/default", "D15", "NetworkPolicy allows all egress", (o) => {
    find(o, "NetworkPolicy").spec.egress = [{}];
  }],
  ["deploy/overlays/default", "D15", "NetworkPolicy only covers ingress", (o) => {
    find(o, "NetworkPolicy").spec.policyTypes = ["Ingress"];
  }],
  ["deploy/overlays/default", "D15", "metrics policy admits every namespace", (o) => {
    metricsPolicy(o).spec.ingress[0].from = [{ namespaceSelector: {} }];
  }],
  ["deploy/overlays/default", "D15", "metrics policy admits every source", (o) => {
    delete metricsPolicy(o).spec.ingress[0].from;
  }],
  ["deploy/overlays/default", "D15", "metrics policy admits an IP block", (o) => {
    metricsPolicy(o).spec.ingress[0].from.push({ ipBlock: { cidr: "0.0.0.0/0" } });
  }],
  ["deploy/overlays/default", "D15", "metrics policy opens another port", (o) => {
    metricsPolicy(o).spec.ingress[0].ports.push({ protocol: "TCP", port: 22 });
  }],
  ["deploy/overlays/default", "D15", "metrics policy lets traffic out", (o) => {
    const p = metricsPolicy(o);
    p.spec.policyTypes.push("Egress");
    p.spec.egress = [{}];
  }],
  ["deploy/overlays/default", "D20", "metrics policy gone (scrapes time out)", (o) => {
    o.splice(o.indexOf(metricsPolicy(o)), 1);
  }],
  ["deploy/overlays/default", "D20", "overlay does not name the scraper's namespace", (o) => {
    metricsPolicy(o).spec.ingress[0].from[0].namespaceSelector.matchLabels["kubernetes.io/metadata.name"] =
      METRICS_SCRAPER_UNSET;
  }],
  ["deploy/overlays/default", "D20", "metrics port not declared", (o) => {
    delete daemonContainer(o).ports;
  }],
  ["deploy/overlays/default", "D20", "metrics on loopback (out of Prometheus' reach)", (o) => {
    setFlag(daemonContainer(o), "metrics_address", "127.0.0.1:9464");
  }],
  ["deploy/overlays/hardened", "D20", "hardened metrics on another port than declared", (o) => {
    setFlag(daemonContainer(o), "metrics_address", ":9100");
  }],
  // monitoring examples
  ["deploy/monitoring", "M1", "Service selects other pods", (o) => {
    find(o, "Service").spec.selector["app.kubernetes.io/name"] = "other";
  }],
  ["deploy/monitoring", "M1", "Service targets a port the daemon lacks", (o) => {
    find(o, "Service").spec.ports[0].targetPort = "http";
  }],
  ["deploy/monitoring", "M2", "ServiceMonitor selects another Service", (o) => {
    find(o, "ServiceMonitor").spec.selector.matchLabels["app.kubernetes.io/component"] = "other";
  }],
  ["deploy/monitoring", "M2", "ServiceMonitor scrapes a port the Service lacks", (o) => {
    find(o, "ServiceMonitor").spec.endpoints[0].port = "http-metrics";
  }],
  ["deploy/monitoring", "M3", "alert expression does not parse", (o) => {
    find(o, "PrometheusRule").spec.groups[0].rules[0].expr = "increase(sc_mount_helper_audit_write_failures_total[5m] > 0";
  }],
  ["deploy/monitoring", "M3", "alert on a metric the daemon lacks", (o) => {
    find(o, "PrometheusRule").spec.groups[0].rules[1].expr = "sc_mount_helper_instances_partial > 0";
  }],
  ["deploy/monitoring", "schema", "ServiceMonitor with a misspelt field", (o) => {
    const e = find(o, "ServiceMonitor").spec.endpoints[0];
    e.intervall = e.interval;
  }],
  ["deploy/overlays/default", "D2", "daemon loses hostPID", (o) => {
    delete find(o, "DaemonSet").spec.template.spec.hostPID;
  }],
  ["deploy/overlays/default", "D2", "daemon gets hostNetwork", (o) => {
    find(o, "DaemonSet").spec.template.spec.hostNetwork = true;
  }],
  ["deploy/overlays/default", "D3", "daemon not privileged but Bidirectional", (o) => {
    daemonContainer(o).securityContext.privileged = false;
  }],
  ["deploy/overlays/default", "D4", "instance base not Bidirectional", (o) => {
    delete daemonContainer(o).volumeMounts.find((m) => m.name === "instances").mountPropagation;
  }],
  ["deploy/overlays/default", "D4", "a second Bidirectional mount", (o) => {
    daemonContainer(o).volumeMounts.find((m) => m.name === "bind-root").mountPropagation = "Bidirectional";
  }],
  ["deploy/overlays/default", "D5", "daemon mounts the host root", (o) => {
    const spec = find(o, "DaemonSet").spec.template.spec;
    spec.volumes.push({ name: "host", hostPath: { path: "/" } });
    spec.containers[0].volumeMounts.push({ name: "host", mountPath: "/host" });
  }],
  ["deploy/overlays/default", "D5", "layer root writable", (o) => {
    delete daemonContainer(o).volumeMounts.find((m) => m.name === "layer-root").readOnly;
  }],
  ["deploy/overlays/default", "D6", "socket outside its hostPath", (o) => {
    const c = daemonContainer(o);
    c.args = c.args.map((a) => (a.startsWith("--socket=") ? "--socket=/tmp/mount-helper.sock" : a));
  }],
  ["deploy/overlays/default", "D6", "socket world-accessible", (o) => {
    const c = daemonContainer(o);
    c.args = c.args.map((a) => (a.startsWith("--socket_mode=") ? "--socket_mode=0666" : a));
  }],
  ["deploy/overlays/default", "D7", "priority class dropped", (o) => {
    delete find(o, "DaemonSet").spec.template.spec.priorityClassName;
  }],
  ["deploy/overlays/default", "D8", "tolerates only one taint", (o) => {
    find(o, "DaemonSet").spec.template.spec.tolerations = [{ key: "x", operator: "Exists" }];
  }],
  ["deploy/overlays/default", "D9", "maxUnavailable 100%", (o) => {
    find(o, "DaemonSet").spec.updateStrategy.rollingUpdate.maxUnavailable = "100%";
  }],
  ["deploy/overlays/default", "D10", "grace shorter than --shutdown_grace", (o) => {
    find(o, "DaemonSet").spec.template.spec.terminationGracePeriodSeconds = 5;
  }],
  ["deploy/overlays/default", "D11", "no memory limit", (o) => {
    delete daemonContainer(o).resources.limits.memory;
  }],
  ["deploy/overlays/default", "D12", "native gRPC probe (cannot reach a Unix socket)", (o) => {
    daemonContainer(o).livenessProbe = { grpc: { port: 9090 } };
  }],
  ["deploy/overlays/default", "D13", "selector no longer matches", (o) => {
    find(o, "DaemonSet").spec.template.metadata.labels["app.kubernetes.io/instance"] = "other";
  }],
  ["deploy/overlays/default", "D14", "service account token mounted", (o) => {
    find(o, "ServiceAccount").automountServiceAccountToken = true;
  }],
  ["deploy/overlays/default", "D14", "daemon's ServiceAccount bound to a role", (o) => {
    o.push({
      apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding",
      metadata: { name: "x", namespace: "stoppablecontainer-system" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
      subjects: [{ kind: "ServiceAccount", name: "mount-helper", namespace: "stoppablecontainer-system" }],
    });
  }],
  ["deploy/overlays/default", "D16", "viewer Role can update", (o) => {
    find(o, "Role").rules[0].verbs.push("update");
  }],
  ["deploy/overlays/default", "D17", "writable root filesystem", (o) => {
    daemonContainer(o).securityContext.readOnlyRootFilesystem = false;
  }],
  ["deploy/overlays/default", "D1", "daemon namespace enforces baseline", (o) => {
    find(o, "Namespace").metadata.labels["pod-security.kubernetes.io/enforce"] = "baseline";
  }],
  ["deploy/overlays/hardened", "D19", "hardened loses its seccomp profile", (o) => {
    delete daemonContainer(o).securityContext.seccompProfile;
  }],
  ["deploy/overlays/hardened", "D19", "hardened audit log back to stderr", (o) => {
    const c = daemonContainer(o);
    c.args = c.args.filter((a) => !a.startsWith("--audit_log"));
  }],
  ["deploy/overlays/hardened", "D19", "hardened seccomp profile not shipped", (o) => {
    daemonContainer(o).securityContext.seccompProfile.localhostProfile = "stoppablecontainer/missing.json";
  }],
  // admission policy
  ["deploy/policy", "A1", "binding only warns", (o) => {
    find(o, "ValidatingAdmissionPolicyBinding").spec.validationActions = ["Warn"];
  }],
  ["deploy/policy", "A2", "policy loses its hostPath rule", (o) => {
    const p = find(o, "ValidatingAdmissionPolicy");
    p.spec.validations = p.spec.validations.filter((v) => !v.expression.includes("hostPath.path"));
    for (const v of p.spec.validations) v.expression = v.expression.replaceAll("hostPath", "x");
  }],
  ["deploy/policy", "A3", "binding selects another label", (o) => {
    find(o, "ValidatingAdmissionPolicyBinding").spec.matchResources.namespaceSelector.matchLabels = { x: "y" };
  }],
  // schema and unknown fields
  ["deploy/overlays/default", "schema", "image is a number", (o) => {
    daemonContainer(o).image = 3;
  }],
  ["deploy/overlays/default", "schema", "misspelt mountPropagation", (o) => {
    const m = daemonContainer(o).volumeMounts.find((x) => x.name === "instances");
    m.mountPropogation = m.mountPropagation;
    delete m.mountPropagation;
  }],
  ["deploy/examples", "schema", "bad enum value for mountPropagation", (o) => {
    workload(o).volumeMounts.find((m) => m.name === "rootfs").mountPropagation = "Sideways";
  }],
];

if (!process.argv.includes("--no-selftest")) {
  for (const [dir, id, what, mutate] of mutations) {
    if (!rendered[dir]) continue;
    const objects = clone(rendered[dir]);
    mutate(objects);
    let caught;
    if (id === "schema") {
      const problems = [];
      for (const o of objects) problems.push(...(await schemaProblems(o)));
      caught = problems;
    } else {
      caught = checksFor(dir, objects).filter((x) => x.startsWith(`${id}:`));
    }
    report(caught.length > 0, `self-test ${dir}: "${what}" is caught by ${id}${caught.length ? ` (${caught[0]})` : ""}`);
  }
}

const failed = results.filter((ok) => !ok).length;
console.log(`${results.length - failed}/${results.length} passed`);
process.exit(failed ? 1 : 0);
