// Rendering, schema validation and security-property checks of deploy/.
// Used by validate.mjs (the ctest entry) and its self-test.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

import { StrictChecker, modelPackage } from "./strict_fields.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../..");
// The pinned packages of tests/node (yaml 2.9.1, kubernetes-models 5.1.0).
export const nodeModules = path.join(repoRoot, "tests/node/node_modules");
const { parseAllDocuments, stringify } = createRequire(path.join(nodeModules, "noop.js"))("yaml");

// Every kustomization under deploy/ that must render. "daemon" ones hold the
// mount-helper; "workload" ones the example pods; "monitoring" the example
// scrape and alerts for the Prometheus Operator.
export const RENDER_DIRS = {
  "deploy/base": "daemon",
  "deploy/overlays/default": "daemon",
  "deploy/overlays/hardened": "daemon",
  "deploy/examples": "workload",
  "deploy/policy": "policy",
  "deploy/monitoring": "monitoring",
};

export const NAMESPACE = "stoppablecontainer-system";
export const SOCKET_DIR = "/run/stoppablecontainer";
export const INSTANCE_BASE = "/var/lib/stoppablecontainer";
// The namespace the base's metrics NetworkPolicy admits until an overlay
// names the scraper's (deploy/base/networkpolicy-metrics.yaml).
export const METRICS_SCRAPER_UNSET = "set-by-the-overlay";

// The hostPaths the daemon may mount, and why. Anything else is a failure.
export const DAEMON_HOSTPATHS = {
  "/run/stoppablecontainer": "socket directory",
  "/var/lib/stoppablecontainer": "instance base (Bidirectional)",
  "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots": "lower-layer root (read-only)",
  "/var/lib/kubelet/pods": "bind-mount sources",
  "/sys/fs/cgroup": "host cgroup tree for joining pods' cgroups",
  "/var/log/stoppablecontainer": "audit log (hardened)",
};
// Mounts that must be read-only in the daemon.
const DAEMON_READONLY = ["/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"];

export function render(dir) {
  const out = execFileSync("kubectl", ["kustomize", path.join(repoRoot, dir)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const objects = [];
  for (const doc of parseAllDocuments(out)) {
    if (doc.errors.length) throw new Error(`${dir}: YAML error ${doc.errors[0].message}`);
    const obj = doc.toJS();
    if (obj) objects.push(obj);
  }
  return objects;
}

// ------------------------------------------------------------- schemas

const modelCache = new Map();

async function modelFor(apiVersion, kind) {
  const key = `${apiVersion}/${kind}`;
  if (!modelCache.has(key)) {
    const file = path.join(nodeModules, modelPackage(apiVersion), apiVersion, `${kind}.js`);
    if (!fs.existsSync(file)) {
      modelCache.set(key, null);
    } else {
      const mod = await import(pathToFileURL(file).href);
      modelCache.set(key, mod[kind]);
    }
  }
  return modelCache.get(key);
}

const strict = new StrictChecker(nodeModules);

// Schema problems of one object: kubernetes-models' validation against the
// upstream OpenAPI schema, plus unknown fields.
export async function schemaProblems(obj) {
  const where = `${obj.kind}/${obj.metadata?.name}`;
  const Model = await modelFor(obj.apiVersion, obj.kind);
  if (!Model) return [`${where}: no schema for ${obj.apiVersion} ${obj.kind}`];
  const problems = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    problems.push(`${where}: schema: ${e.message}`);
  }
  for (const p of strict.check(obj)) problems.push(`${where}: ${p}`);
  return problems;
}

// ------------------------------------------------------------- helpers

function podSpecOf(obj) {
  if (obj.kind === "Pod") return obj.spec;
  return obj.spec?.template?.spec;
}

function allContainers(spec) {
  return [...(spec?.initContainers ?? []), ...(spec?.containers ?? []), ...(spec?.ephemeralContainers ?? [])];
}

function argv(container) {
  return [...(container.command ?? []), ...(container.args ?? [])];
}

// The value of an absl-style flag (--name=value or --name value).
export function flagValue(args, name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return undefined;
}

// absl Duration text ("20s", "1m30s", "500ms") -> seconds.
export function durationSeconds(text) {
  if (text === undefined) return undefined;
  const units = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, ns: 1e-9 };
  let total = 0;
  let rest = text;
  while (rest.length) {
    const m = rest.match(/^(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/);
    if (!m) return NaN;
    total += parseFloat(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

function hostPathVolumes(spec) {
  const out = new Map();
  for (const v of spec?.volumes ?? []) if (v.hostPath) out.set(v.name, v.hostPath.path);
  return out;
}

function isSubPath(child, parent) {
  const c = path.posix.normalize(child);
  const p = path.posix.normalize(parent);
  return c === p || c.startsWith(p.endsWith("/") ? p : p + "/");
}

function labelsMatch(selector, labels) {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels?.[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = labels && e.key in labels;
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

function execProbeArgv(probe) {
  return probe?.exec?.command ?? null;
}

const isScExec = (p) => typeof p === "string" && path.posix.basename(p) === "sc-exec";

// ------------------------------------------------------------- daemon checks

// Each check returns a list of "ID: message" failures.
export function checkDaemon(objects, { hardened = false, base = false } = {}) {
  const fail = [];
  const f = (id, msg) => fail.push(`${id}: ${msg}`);

  const ns = objects.find((o) => o.kind === "Namespace" && o.metadata?.name === NAMESPACE);
  if (!ns) f("D1", `Namespace ${NAMESPACE} missing`);
  else if (ns.metadata.labels?.["pod-security.kubernetes.io/enforce"] !== "privileged")
    f("D1", `Namespace ${NAMESPACE} must enforce the privileged PSS level (the daemon is privileged)`);
  for (const o of objects) {
    if (o.kind !== "Namespace" && o.metadata?.namespace !== NAMESPACE)
      f("D1", `${o.kind}/${o.metadata?.name} is not in ${NAMESPACE}`);
  }

  const dsList = objects.filter((o) => o.kind === "DaemonSet");
  if (dsList.length !== 1) {
    f("D0", `expected exactly one DaemonSet, found ${dsList.length}`);
    return fail;
  }
  const ds = dsList[0];
  const spec = podSpecOf(ds);
  const podLabels = ds.spec.template.metadata?.labels ?? {};
  const containers = spec.containers ?? [];
  const daemon = containers.find((c) => argv(c).some((a) => path.posix.basename(a) === "sc-mount-helper"));
  if (!daemon) {
    f("D0", "no container runs sc-mount-helper");
    return fail;
  }
  const args = argv(daemon);

  // D2: host namespaces.
  if (spec.hostPID !== true) f("D2", "daemon needs hostPID: true (peer identity reads /proc/<pid> of callers)");
  if (spec.hostNetwork === true) f("D2", "daemon must not use hostNetwork (it needs no network)");
  if (spec.hostIPC === true) f("D2", "daemon must not use hostIPC");

  // D3: privileged, as the API requires for Bidirectional propagation; no
  // other container in the pod may be privileged.
  for (const c of allContainers(spec)) {
    const bidi = (c.volumeMounts ?? []).some((m) => m.mountPropagation === "Bidirectional");
    if (bidi && c.securityContext?.privileged !== true)
      f("D3", `${c.name}: Bidirectional propagation is only accepted for privileged containers`);
    if (c !== daemon && c.securityContext?.privileged === true) f("D3", `${c.name}: only the daemon may be privileged`);
  }

  // D4: exactly the instance base propagates back to the host.
  const vols = hostPathVolumes(spec);
  const bidiMounts = (daemon.volumeMounts ?? []).filter((m) => m.mountPropagation === "Bidirectional");
  if (bidiMounts.length !== 1 || vols.get(bidiMounts[0].name) !== INSTANCE_BASE)
    f("D4", `exactly the ${INSTANCE_BASE} hostPath must be Bidirectional, got ${JSON.stringify(bidiMounts)}`);
  const instanceBase = flagValue(args, "instance_base") ?? INSTANCE_BASE;
  const bidiTarget = bidiMounts[0]?.mountPath;
  if (bidiTarget && !isSubPath(instanceBase, bidiTarget))
    f("D4", `--instance_base=${instanceBase} is not inside the Bidirectional mount ${bidiTarget}`);

  // D5: hostPath allow-list, same path inside as outside, read-only where
  // only read.
  for (const [name, hp] of vols) {
    if (!(hp in DAEMON_HOSTPATHS)) f("D5", `hostPath ${hp} (volume ${name}) is not an intended daemon hostPath`);
    if (hp === "/var/log/stoppablecontainer" && !hardened) f("D5", "audit-log hostPath only belongs to the hardened overlay");
    for (const c of allContainers(spec)) {
      for (const m of c.volumeMounts ?? []) {
        if (m.name !== name) continue;
        if (m.mountPath !== hp) f("D5", `${c.name}: hostPath ${hp} mounted at ${m.mountPath}, expected the same path`);
        if (DAEMON_READONLY.includes(hp) && m.readOnly !== true) f("D5", `${c.name}: ${hp} must be mounted readOnly`);
      }
    }
  }

  // D6: the socket lives in the socket-dir hostPath.
  const socket = flagValue(args, "socket");
  if (!socket) f("D6", "daemon has no --socket flag");
  const socketMount = (daemon.volumeMounts ?? []).find((m) => vols.get(m.name) === SOCKET_DIR);
  if (!socketMount) f("D6", `${SOCKET_DIR} hostPath is not mounted into the daemon`);
  else if (socket && !isSubPath(socket, socketMount.mountPath))
    f("D6", `--socket=${socket} is not inside the ${SOCKET_DIR} hostPath`);
  const mode = flagValue(args, "socket_mode");
  if (mode !== undefined && !/^0?[0-7]{3}$/.test(mode)) f("D6", `--socket_mode=${mode} is not octal`);
  if (mode !== undefined && (parseInt(mode, 8) & 0o007) !== 0) f("D6", `--socket_mode=${mode} gives "other" access`);

  // D7..D9: scheduling.
  if (spec.priorityClassName !== "system-node-critical") f("D7", "priorityClassName must be system-node-critical");
  const tolAll = (spec.tolerations ?? []).some((t) => t.operator === "Exists" && !t.key && !t.effect);
  if (!tolAll) f("D8", "daemon must tolerate every taint ({operator: Exists})");
  const us = ds.spec.updateStrategy;
  if (us?.type !== "RollingUpdate" || us.rollingUpdate?.maxUnavailable !== 1)
    f("D9", "updateStrategy must be RollingUpdate with maxUnavailable: 1");
  if (us?.rollingUpdate?.maxSurge && us.rollingUpdate.maxSurge !== 0)
    f("D9", "maxSurge must be 0 (two daemons would share one socket path)");

  // D10: termination grace covers the daemon's shutdown grace.
  const grace = durationSeconds(flagValue(args, "shutdown_grace") ?? "10s");
  const tgps = spec.terminationGracePeriodSeconds ?? 30;
  if (!(tgps >= grace + 5 && tgps <= grace + 60))
    f("D10", `terminationGracePeriodSeconds ${tgps} does not match --shutdown_grace ${grace}s (+5..60s margin)`);

  // D11: resources.
  for (const c of allContainers(spec)) {
    for (const kind of ["requests", "limits"])
      for (const r of ["cpu", "memory"])
        if (!c.resources?.[kind]?.[r]) f("D11", `${c.name}: resources.${kind}.${r} missing`);
  }

  // D12: probes exec sc-exec --health on the daemon's own socket.
  for (const probeName of ["livenessProbe", "readinessProbe"]) {
    const probe = daemon[probeName];
    const cmd = execProbeArgv(probe);
    if (!cmd) {
      f("D12", `${probeName} must be an exec probe (health is served on the Unix socket only)`);
      continue;
    }
    if (!isScExec(cmd[0]) || !cmd.includes("--health"))
      f("D12", `${probeName} must run sc-exec --health, got ${cmd.join(" ")}`);
    if (flagValue(cmd, "socket") !== socket) f("D12", `${probeName} checks a socket other than --socket=${socket}`);
  }

  // D13: labels.
  for (const key of ["name", "instance", "component", "version", "part-of", "managed-by"]) {
    if (!ds.metadata.labels?.[`app.kubernetes.io/${key}`]) f("D13", `DaemonSet lacks label app.kubernetes.io/${key}`);
  }
  for (const key of ["name", "instance", "component", "part-of"]) {
    if (!podLabels[`app.kubernetes.io/${key}`]) f("D13", `pod template lacks label app.kubernetes.io/${key}`);
  }
  if (!labelsMatch(ds.spec.selector, podLabels)) f("D13", "selector does not match the pod template's labels");

  // D14: ServiceAccount without token and without any binding.
  const saName = spec.serviceAccountName;
  const sa = objects.find((o) => o.kind === "ServiceAccount" && o.metadata.name === saName);
  if (!saName || !sa) f("D14", "daemon must run as its own ServiceAccount");
  else if (sa.automountServiceAccountToken !== false) f("D14", "ServiceAccount must set automountServiceAccountToken: false");
  if (spec.automountServiceAccountToken !== false) f("D14", "pod must set automountServiceAccountToken: false");
  for (const b of objects.filter((o) => o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding")) {
    if ((b.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === saName))
      f("D14", `${b.kind}/${b.metadata.name} grants permissions to the daemon's ServiceAccount`);
  }

  // D15: deny-all NetworkPolicy selecting the daemon pods.
  const denyAll = objects.filter(
    (o) =>
      o.kind === "NetworkPolicy" &&
      o.metadata.namespace === ds.metadata.namespace &&
      labelsMatch(o.spec.podSelector, podLabels) &&
      (o.spec.policyTypes ?? []).includes("Ingress") &&
      (o.spec.policyTypes ?? []).includes("Egress") &&
      (o.spec.ingress ?? []).length === 0 &&
      (o.spec.egress ?? []).length === 0,
  );
  if (denyAll.length === 0) f("D15", "no NetworkPolicy denies all ingress and egress of the daemon pods");
  // Any other policy selecting the daemon with a rule re-opens traffic: only
  // scrapes of the metrics port from one named namespace may be let in (D20).
  const metricsAddress = flagValue(args, "metrics_address");
  const metricsPort = Number(metricsAddress?.match(/:(\d+)$/)?.[1] ?? NaN);
  const opening = objects.filter(
    (o) =>
      o.kind === "NetworkPolicy" &&
      !denyAll.includes(o) &&
      labelsMatch(o.spec.podSelector, podLabels) &&
      ((o.spec.ingress ?? []).length || (o.spec.egress ?? []).length),
  );
  for (const o of opening) {
    if (!metricsAddress) f("D15", `NetworkPolicy/${o.metadata.name} allows traffic to or from the daemon`);
    for (const p of metricsPolicyProblems(o, metricsPort)) f("D15", `NetworkPolicy/${o.metadata.name} ${p}`);
  }

  // D20: metrics. Served on the pod IP (loopback would be out of
  // Prometheus' reach), declared as the container port "metrics", and let in
  // by exactly one NetworkPolicy (shape: D15), whose namespace an overlay
  // names.
  if (metricsAddress) {
    const host = metricsAddress.slice(0, metricsAddress.lastIndexOf(":"));
    if (!Number.isInteger(metricsPort)) f("D20", `--metrics_address=${metricsAddress} has no port`);
    else if (host !== "" && host !== "0.0.0.0")
      f("D20", `--metrics_address=${metricsAddress} listens on ${host} only: Prometheus reaches the pod IP (use :${metricsPort})`);
    const declared = (daemon.ports ?? []).find((p) => p.containerPort === metricsPort);
    if (!declared || declared.name !== "metrics" || (declared.protocol ?? "TCP") !== "TCP")
      f("D20", `the container must declare containerPort ${metricsPort} (TCP) named "metrics"`);
    if (opening.length !== 1)
      f("D20", `exactly one NetworkPolicy must let the metrics scrapes in, found ${opening.length}`);
    for (const o of opening) {
      for (const peer of (o.spec.ingress ?? []).flatMap((r) => r.from ?? [])) {
        const ns = peer.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"];
        if (!base && ns === METRICS_SCRAPER_UNSET)
          f("D20", `NetworkPolicy/${o.metadata.name}: the overlay does not name the scraper's namespace`);
      }
    }
  }

  // D16: the only RBAC is read-only.
  const roles = objects.filter((o) => o.kind === "Role" || o.kind === "ClusterRole");
  const viewer = roles.find((r) =>
    (r.rules ?? []).some((rule) => (rule.resources ?? []).includes("daemonsets")),
  );
  if (!viewer) f("D16", "no read-only Role for the DaemonSet");
  for (const r of roles) {
    for (const rule of r.rules ?? []) {
      const bad = (rule.verbs ?? []).filter((v) => !["get", "list", "watch"].includes(v));
      if (bad.length) f("D16", `${r.kind}/${r.metadata.name} grants ${bad.join(",")}`);
      if ((rule.resources ?? []).some((x) => x === "*" || x === "secrets" || x.endsWith("/exec")))
        f("D16", `${r.kind}/${r.metadata.name} reaches ${rule.resources.join(",")}`);
    }
  }

  // D17: read-only root filesystem.
  if (daemon.securityContext?.readOnlyRootFilesystem !== true) f("D17", "daemon must have readOnlyRootFilesystem: true");

  // D19: hardened extras.
  if (hardened) {
    const sp = daemon.securityContext?.seccompProfile ?? spec.securityContext?.seccompProfile;
    if (sp?.type !== "Localhost" || !sp.localhostProfile)
      f("D19", "hardened daemon must use its Localhost seccomp profile");
    else {
      const file = path.join(repoRoot, "deploy/seccomp", path.posix.basename(sp.localhostProfile));
      if (!fs.existsSync(file)) f("D19", `seccomp profile ${sp.localhostProfile} is not shipped in deploy/seccomp/`);
    }
    const audit = flagValue(args, "audit_log");
    const auditMount = (daemon.volumeMounts ?? []).find((m) => vols.has(m.name) && audit && isSubPath(audit, m.mountPath));
    if (!audit || !auditMount || !vols.get(auditMount.name).startsWith("/var/log/"))
      f("D19", "hardened daemon must write --audit_log to a file on a /var/log hostPath");
    if (!spec.nodeSelector || Object.keys(spec.nodeSelector).length === 0)
      f("D19", "hardened daemon must be restricted to labelled nodes (nodeSelector)");
  }
  return fail;
}

// What is wrong with a NetworkPolicy that lets traffic reach the daemon: it
// may only admit TCP to the metrics port, from pods of one namespace named
// by kubernetes.io/metadata.name, and let nothing out.
function metricsPolicyProblems(policy, port) {
  const out = [];
  if ((policy.spec.egress ?? []).length) out.push("allows egress");
  for (const rule of policy.spec.ingress ?? []) {
    const ports = rule.ports ?? [];
    if (!ports.length || ports.some((p) => (p.protocol ?? "TCP") !== "TCP" || (p.port !== port && p.port !== "metrics")))
      out.push(`admits ports other than the metrics port ${port}`);
    const from = rule.from ?? [];
    if (!from.length) out.push("admits every source");
    for (const peer of from) {
      const labels = Object.keys(peer.namespaceSelector?.matchLabels ?? {});
      if (peer.ipBlock || !peer.namespaceSelector || peer.namespaceSelector.matchExpressions?.length ||
          labels.length !== 1 || labels[0] !== "kubernetes.io/metadata.name")
        out.push("admits more than the one namespace named by kubernetes.io/metadata.name");
    }
  }
  return out;
}

// ------------------------------------------------------------- monitoring checks

// The metric names the daemon exposes (daemon/edge/metrics.cc), with the series
// a histogram adds.
function daemonMetricNames() {
  const source = fs.readFileSync(path.join(repoRoot, "daemon/edge/metrics.cc"), "utf8");
  const names = new Set();
  for (const [name] of source.matchAll(/sc_mount_helper_[a-z_]+/g)) {
    for (const suffix of ["", "_bucket", "_sum", "_count"]) names.add(name + suffix);
  }
  return names;
}

// promtool's verdict on rule groups: [] when it accepts them, its complaint
// otherwise. Without promtool: a failure under CI=true, else nothing.
function promtoolRuleProblems(groups) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sc-test-rules-"));
  try {
    const file = path.join(tmp, "rules.yaml");
    fs.writeFileSync(file, stringify({ groups }));
    const r = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
    if (r.error) return process.env.CI === "true" ? [`promtool is not installed: ${r.error.message}`] : [];
    return r.status === 0 ? [] : [`promtool check rules: ${(r.stdout + r.stderr).trim()}`];
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// The example Service, ServiceMonitor and PrometheusRule fit the daemon of
// the default overlay.
export function checkMonitoring(objects, daemonObjects) {
  const fail = [];
  const f = (id, msg) => fail.push(`${id}: ${msg}`);
  const ds = daemonObjects.find((o) => o.kind === "DaemonSet");
  const podLabels = ds?.spec.template.metadata?.labels ?? {};
  const ports = (podSpecOf(ds ?? {})?.containers ?? []).flatMap((c) => c.ports ?? []);

  // M1: a Service whose endpoints are the daemon pods' metrics ports.
  const services = objects.filter((o) => o.kind === "Service");
  const service = services.find((s) => labelsMatch({ matchLabels: s.spec.selector }, podLabels));
  if (!service) f("M1", "no Service selects the daemon's pods");
  else {
    for (const p of service.spec.ports ?? []) {
      const target = p.targetPort ?? p.port;
      if (!ports.some((cp) => cp.name === target || cp.containerPort === target))
        f("M1", `Service/${service.metadata.name} port ${p.name} targets ${target}, which no daemon container declares`);
    }
  }

  // M2: a ServiceMonitor that selects that Service and scrapes its port.
  const monitor = objects.find((o) => o.kind === "ServiceMonitor");
  if (!monitor) f("M2", "no ServiceMonitor");
  else if (service) {
    const spec = monitor.spec;
    if (!labelsMatch(spec.selector, service.metadata.labels))
      f("M2", `ServiceMonitor/${monitor.metadata.name} does not select Service/${service.metadata.name}`);
    const names = spec.namespaceSelector?.matchNames;
    if (!spec.namespaceSelector?.any && names && !names.includes(service.metadata.namespace))
      f("M2", `ServiceMonitor/${monitor.metadata.name} does not look in ${service.metadata.namespace}`);
    for (const e of spec.endpoints ?? []) {
      if (!(service.spec.ports ?? []).some((p) => p.name === e.port))
        f("M2", `ServiceMonitor/${monitor.metadata.name} scrapes port ${e.port}, which the Service lacks`);
      if ((e.path ?? "/metrics") !== "/metrics") f("M2", `ServiceMonitor/${monitor.metadata.name} scrapes ${e.path}, not /metrics`);
    }
  }

  // M3: alert rules that promtool accepts and that name only metrics the
  // daemon has.
  const known = daemonMetricNames();
  for (const rule of objects.filter((o) => o.kind === "PrometheusRule")) {
    const groups = rule.spec.groups ?? [];
    for (const p of promtoolRuleProblems(groups)) f("M3", `PrometheusRule/${rule.metadata.name}: ${p}`);
    for (const r of groups.flatMap((g) => g.rules ?? [])) {
      for (const [name] of String(r.expr).matchAll(/sc_mount_helper_[a-z_]+/g)) {
        if (!known.has(name)) f("M3", `${r.alert ?? r.record}: the daemon has no metric ${name}`);
      }
    }
  }
  return fail;
}

// ------------------------------------------------------------- workload checks

// Security posture of an application pod (provider or consumer): no
// capability, no escalation, no host namespace, seccomp on, non-root.
function checkUnprivilegedPod(pod, id, f) {
  const spec = pod.spec;
  const name = `${pod.kind}/${pod.metadata.name}`;
  for (const k of ["hostPID", "hostNetwork", "hostIPC", "hostUsers"]) {
    if (k === "hostUsers") continue;
    if (spec[k] === true) f(id, `${name}: ${k} must not be set`);
  }
  if (spec.automountServiceAccountToken !== false) f(id, `${name}: automountServiceAccountToken must be false`);
  const podSc = spec.securityContext ?? {};
  for (const c of allContainers(spec)) {
    const sc = c.securityContext ?? {};
    const where = `${name} container ${c.name}`;
    if (sc.privileged === true) f(id, `${where}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) f(id, `${where}: allowPrivilegeEscalation must be false`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) f(id, `${where}: capabilities.drop must include ALL`);
    if ((sc.capabilities?.add ?? []).length) f(id, `${where}: adds capabilities ${sc.capabilities.add.join(",")}`);
    const seccomp = sc.seccompProfile ?? podSc.seccompProfile;
    if (!seccomp || !["RuntimeDefault", "Localhost"].includes(seccomp.type))
      f(id, `${where}: seccompProfile must be RuntimeDefault or Localhost`);
    const nonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
    const uid = sc.runAsUser ?? podSc.runAsUser;
    if (nonRoot !== true || uid === 0) f(id, `${where}: must run as non-root (runAsNonRoot: true)`);
    if (sc.procMount && sc.procMount !== "Default") f(id, `${where}: procMount ${sc.procMount}`);
    if (sc.appArmorProfile?.type === "Unconfined" || sc.seLinuxOptions?.type === "spc_t")
      f(id, `${where}: unconfined LSM`);
    for (const m of c.volumeMounts ?? [])
      if (m.mountPropagation === "Bidirectional") f(id, `${where}: Bidirectional propagation`);
  }
}

// Instance named by a hostPath under the instance base: "<ns>/<name>".
function instanceOf(hostPath) {
  const rel = path.posix.relative(INSTANCE_BASE, hostPath);
  const parts = rel.split("/");
  if (rel.startsWith("..") || parts.length < 2) return null;
  return `${parts[0]}/${parts[1]}`;
}

export function checkWorkloads(objects, daemonObjects) {
  const fail = [];
  const f = (id, msg) => fail.push(`${id}: ${msg}`);
  const pods = objects.filter((o) => o.kind === "Pod");
  const consumers = pods.filter((p) => p.metadata.labels?.["app.kubernetes.io/component"] === "consumer");
  const providers = pods.filter((p) => p.metadata.labels?.["app.kubernetes.io/component"] === "provider");
  if (consumers.length === 0) f("C0", "no consumer pod");
  if (providers.length === 0) f("P0", "no provider pod");
  if (pods.length !== consumers.length + providers.length) f("C0", "a Pod is neither provider nor consumer");

  // What the daemon was told, to cross-check paths.
  const ds = daemonObjects.find((o) => o.kind === "DaemonSet");
  const dargs = ds ? argv(podSpecOf(ds).containers[0]) : [];
  const daemonSocket = flagValue(dargs, "socket") ?? `${SOCKET_DIR}/mount-helper.sock`;
  const podRootfs = flagValue(dargs, "pod_rootfs") ?? "/rootfs";
  const socketGroup = flagValue(dargs, "socket_group");

  const provided = new Set();
  for (const p of providers) {
    checkUnprivilegedPod(p, "P1", f);
    const spec = p.spec;
    const vols = hostPathVolumes(spec);
    const marker = spec.containers.filter((c) =>
      (c.env ?? []).some((e) => e.name === "ROOTFS_MARKER" && e.value === "true"),
    );
    if (marker.length !== 1) f("P2", `${p.metadata.name}: needs exactly one container with ROOTFS_MARKER=true`);
    const provider = spec.containers.find((c) => isScExec(argv(c)[0]) && argv(c).includes("--provide"));
    if (!provider) {
      f("P2", `${p.metadata.name}: no container runs sc-exec --provide`);
      continue;
    }
    const instance = flagValue(argv(provider), "provide");
    provided.add(instance);
    const allowed = new Set([SOCKET_DIR, `${INSTANCE_BASE}/${instance}`]);
    for (const [name, hp] of vols) {
      if (!allowed.has(hp)) f("P3", `${p.metadata.name}: hostPath ${hp} (volume ${name}) is not its socket or instance directory`);
    }
    checkMountsHostToContainer(p, vols, f, "P3");
    checkSocketAccess(p, provider, vols, daemonSocket, socketGroup, f, "P4");
    const ready = execProbeArgv(provider.readinessProbe);
    if (!ready || !isScExec(ready[0]) || flagValue(ready, "provide") !== instance || !ready.includes("--ready"))
      f("P2", `${p.metadata.name}: readinessProbe must exec sc-exec --provide ${instance} --ready`);
  }

  for (const p of consumers) {
    checkUnprivilegedPod(p, "C1", f);
    const spec = p.spec;
    const vols = hostPathVolumes(spec);
    const workload = spec.containers.find((c) => isScExec(argv(c)[0]) && argv(c).includes("--entrypoint"));
    if (!workload) {
      f("C3", `${p.metadata.name}: no container runs sc-exec --entrypoint`);
      continue;
    }
    // hostPaths: the socket dir and one instance's rootfs, nothing else.
    for (const [name, hp] of vols) {
      const inst = instanceOf(hp);
      const ok = hp === SOCKET_DIR || (inst && hp === `${INSTANCE_BASE}/${inst}/rootfs`);
      if (!ok) f("C2", `${p.metadata.name}: hostPath ${hp} (volume ${name}) is not the socket dir or an instance rootfs`);
      if (inst && !provided.has(inst)) f("C5", `${p.metadata.name}: instance ${inst} has no provider pod`);
    }
    checkMountsHostToContainer(p, vols, f, "C2");
    const rootfsMount = (workload.volumeMounts ?? []).find((m) => instanceOf(vols.get(m.name) ?? "") !== null);
    if (!rootfsMount || rootfsMount.mountPath !== podRootfs)
      f("C2", `${p.metadata.name}: the instance rootfs must be mounted at the daemon's --pod_rootfs ${podRootfs}`);
    checkSocketAccess(p, workload, vols, daemonSocket, socketGroup, f, "C4");

    const ready = execProbeArgv(workload.readinessProbe);
    if (!ready || !isScExec(ready[0]) || !ready.includes("--ready"))
      f("C3", `${p.metadata.name}: readinessProbe must exec sc-exec --ready`);
    // sc-exec and its command symlinks come from an init container, into an
    // emptyDir at /.sc-bin that the workload has in its PATH.
    const binVol = (workload.volumeMounts ?? []).find((m) => m.mountPath === "/.sc-bin");
    const emptyDir = binVol && (spec.volumes ?? []).find((v) => v.name === binVol.name && v.emptyDir);
    if (!emptyDir) f("C3", `${p.metadata.name}: /.sc-bin must be an emptyDir`);
    const installer = (spec.initContainers ?? []).find((c) =>
      (c.volumeMounts ?? []).some((m) => binVol && m.name === binVol.name && m.readOnly !== true),
    );
    if (!installer || !/sc-exec/.test(argv(installer).join(" ")))
      f("C3", `${p.metadata.name}: no init container installs sc-exec into /.sc-bin`);
    const pathEnv = (workload.env ?? []).find((e) => e.name === "PATH")?.value ?? "";
    const dirs = pathEnv.split(":");
    if (dirs[0] !== "/.sc-bin") f("C3", `${p.metadata.name}: PATH must start with /.sc-bin`);
    // sc-exec passes its environment on: the workload in the rootfs needs
    // the usual directories too.
    if (!dirs.includes("/bin") || !dirs.includes("/usr/bin"))
      f("C3", `${p.metadata.name}: PATH lacks /usr/bin and /bin, which the workload needs inside the rootfs`);
  }
  return fail;
}

function checkMountsHostToContainer(pod, vols, f, id) {
  for (const c of allContainers(pod.spec)) {
    for (const m of c.volumeMounts ?? []) {
      if (vols.has(m.name) && m.mountPropagation !== "HostToContainer")
        f(id, `${pod.metadata.name} container ${c.name}: hostPath ${vols.get(m.name)} must use HostToContainer propagation`);
    }
  }
}

// The container can reach the daemon's socket: the socket directory is
// mounted where the daemon's socket path says, and the pod carries the
// socket's group when the socket is not world-accessible.
function checkSocketAccess(pod, container, vols, daemonSocket, socketGroup, f, id) {
  const mount = (container.volumeMounts ?? []).find((m) => vols.get(m.name) === SOCKET_DIR);
  if (!mount || !isSubPath(daemonSocket, mount.mountPath))
    f(id, `${pod.metadata.name}: ${container.name} does not see the daemon's socket ${daemonSocket}`);
  const explicit = flagValue(argv(container), "socket");
  if (explicit && explicit !== daemonSocket) f(id, `${pod.metadata.name}: --socket=${explicit} is not the daemon's ${daemonSocket}`);
  if (socketGroup !== undefined && /^\d+$/.test(socketGroup)) {
    const groups = (pod.spec.securityContext?.supplementalGroups ?? []).map(String);
    const gid = String(container.securityContext?.runAsGroup ?? pod.spec.securityContext?.runAsGroup ?? "");
    if (!groups.includes(socketGroup) && gid !== socketGroup)
      f(id, `${pod.metadata.name}: not in the socket's group ${socketGroup} (supplementalGroups)`);
  }
}

// ------------------------------------------------------------- flags

// Every invocation of our binaries in rendered objects: {binary, argv, where}.
export function invocations(objects) {
  const out = [];
  for (const o of objects) {
    const spec = podSpecOf(o);
    if (!spec) continue;
    for (const c of allContainers(spec)) {
      const where = `${o.kind}/${o.metadata.name} ${c.name}`;
      const a = argv(c);
      if (a.length) out.push({ argv: a, where: `${where} command` });
      for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        const cmd = execProbeArgv(c[probe]);
        if (cmd) out.push({ argv: cmd, where: `${where} ${probe}` });
      }
    }
  }
  return out
    .map((inv) => ({ ...inv, binary: path.posix.basename(inv.argv[0] ?? "") }))
    .filter((inv) => inv.binary === "sc-exec" || inv.binary === "sc-mount-helper");
}

// ------------------------------------------------------------- admission policy

// The workload-namespace policy exists, is bound with Deny, and its binding
// selects the example workload namespace. (Its CEL is not evaluated here.)
export function checkPolicy(objects, workloadObjects) {
  const fail = [];
  const f = (id, msg) => fail.push(`${id}: ${msg}`);
  const policy = objects.find((o) => o.kind === "ValidatingAdmissionPolicy");
  const binding = objects.find((o) => o.kind === "ValidatingAdmissionPolicyBinding");
  if (!policy || !binding) {
    f("A1", "ValidatingAdmissionPolicy and its binding are required");
    return fail;
  }
  if (binding.spec.policyName !== policy.metadata.name) f("A1", "binding names another policy");
  if (!(binding.spec.validationActions ?? []).includes("Deny")) f("A1", "binding must Deny");
  const rules = policy.spec.matchConstraints?.resourceRules ?? [];
  if (!rules.some((r) => (r.resources ?? []).includes("pods") && (r.operations ?? []).includes("CREATE")))
    f("A1", "policy must match pod creation");
  const texts = (policy.spec.validations ?? []).map((v) => v.expression).join("\n");
  for (const needle of ["hostPath", "allowPrivilegeEscalation", "'ALL'", "hostPID", "seccompProfile", "HostToContainer"])
    if (!texts.includes(needle)) f("A2", `policy has no validation about ${needle}`);
  for (const ns of workloadObjects.filter((o) => o.kind === "Namespace")) {
    if (!labelsMatch(binding.spec.matchResources?.namespaceSelector, ns.metadata.labels))
      f("A3", `binding does not select workload namespace ${ns.metadata.name}`);
  }
  return fail;
}
