// ctest "deploy_flags": every sc-exec / sc-mount-helper flag used in the
// rendered manifests of deploy/ is accepted by the real binaries.
//
//   sc-mount-helper: each flag name must be listed by --helpfull, and the
//     invocation's whole argument list followed by --help must parse (absl
//     checks names and value types, e.g. durations, before --help exits).
//   sc-exec: each flag must be in the option lists of --help, and the
//     invocation's options followed by --help must be accepted (exit 0).
//
// Usage: node tests/deploy/check_flags.mjs --sc-exec BIN --daemon BIN
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { RENDER_DIRS, invocations, render } from "./manifests.mjs";

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || !process.argv[i + 1]) {
    console.error(`usage: check_flags.mjs --sc-exec BIN --daemon BIN (missing ${name})`);
    process.exit(2);
  }
  return process.argv[i + 1];
}
const bins = { "sc-exec": arg("--sc-exec"), "sc-mount-helper": arg("--daemon") };

const run = (bin, args) => spawnSync(bin, args, { encoding: "utf8", timeout: 20000 });

// Flags the binaries document.
const helpfull = run(bins["sc-mount-helper"], ["--helpfull"]);
const daemonFlags = new Set([...`${helpfull.stdout}${helpfull.stderr}`.matchAll(/^\s+--([a-z_0-9]+) \(/gm)].map((m) => m[1]));
const execHelp = run(bins["sc-exec"], ["--help"]).stdout ?? "";
// Option lists ("Modes:", "Options:"): indented lines that start with
// "--flag", "--flag METAVAR" or "--flag, --other".
const execFlags = new Map(); // flag -> takes a value
for (const m of execHelp.matchAll(/^ {2}(--[a-z][a-z-]*(?:, --[a-z][a-z-]*)*)(?: ([A-Z][A-Z_/]*))?/gm)) {
  for (const flag of m[1].split(", ")) execFlags.set(flag, Boolean(m[2]));
}

let failed = 0;
const notAccepted = { "sc-exec": new Set(), "sc-mount-helper": new Set() };
function report(ok, line) {
  if (!ok) failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${line}`);
}
report(daemonFlags.size > 10, `sc-mount-helper --helpfull lists ${daemonFlags.size} flags`);
// --help (what an operator types first) lists every flag of the daemon's own,
// each with its default, and none of Abseil's.
const help = run(bins["sc-mount-helper"], ["--help"]);
const helpText = `${help.stdout}${help.stderr}`;
const helpFlags = new Set([...helpText.matchAll(/^\s+--([a-z_0-9]+) \(/gm)].map((m) => m[1]));
const ownFlags = [...helpfull.stdout.concat(helpfull.stderr).split(/\n\n\s*Flags from /)]
  .filter((block) => /^\S*daemon\/main\.cc:/.test(block))
  .flatMap((block) => [...block.matchAll(/^\s+--([a-z_0-9]+) \(/gm)].map((m) => m[1]));
report(ownFlags.length > 10, `sc-mount-helper --helpfull has ${ownFlags.length} flags of daemon/main.cc`);
for (const flag of ownFlags) report(helpFlags.has(flag), `sc-mount-helper --help lists --${flag}`);
report(helpFlags.size === ownFlags.length, `sc-mount-helper --help lists only the daemon's ${ownFlags.length} flags (got ${helpFlags.size})`);
const defaults = [...helpText.matchAll(/;\s+default: /g)].length;
report(defaults === ownFlags.length, `sc-mount-helper --help gives a default for each flag (${defaults} of ${ownFlags.length})`);
report(execFlags.size >= 3, `sc-exec --help lists ${[...execFlags.keys()].join(" ")}`);

// sc-exec options of one argv: up to "--" or the first non-option.
function execOptions(argv) {
  const out = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--" || !a.startsWith("--")) break;
    const name = a.split("=")[0];
    const known = execFlags.get(name);
    // An option the binary does not know yet: assume it takes a value when
    // the next word is not an option (--workdir DIR, --provide NS/NAME).
    const takesValue = !a.includes("=") && (known ?? (argv[i + 1] !== undefined && !argv[i + 1].startsWith("-")));
    const opt = takesValue ? [a, argv[i + 1]] : [a];
    out.push({ name, words: opt });
    if (takesValue) i++;
  }
  return out;
}

const seen = new Set();
for (const dir of Object.keys(RENDER_DIRS)) {
  for (const inv of invocations(render(dir))) {
    const key = `${inv.binary} ${inv.argv.slice(1).join(" ")}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const where = `${dir} ${inv.where}`;
    if (inv.binary === "sc-mount-helper") {
      const args = inv.argv.slice(1);
      for (const a of args.filter((x) => x.startsWith("--"))) {
        const name = a.replace(/^--/, "").split("=")[0];
        const ok = daemonFlags.has(name);
        if (!ok) notAccepted["sc-mount-helper"].add(`--${name}`);
        report(ok, `${where}: sc-mount-helper --${name} is a real flag`);
      }
      const r = run(bins["sc-mount-helper"], [...args, "--help"]);
      const err = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.startsWith("ERROR"));
      report(err.length === 0, `${where}: sc-mount-helper parses ${args.join(" ")}${err.length ? ": " + err.join("; ") : ""}`);
    } else {
      const opts = execOptions(inv.argv);
      for (const o of opts) {
        const ok = execFlags.has(o.name);
        if (!ok) notAccepted["sc-exec"].add(o.name);
        report(ok, `${where}: sc-exec ${o.name} is in sc-exec --help`);
      }
      const words = opts.flatMap((o) => o.words);
      const r = run(bins["sc-exec"], [...words, "--help"]);
      report(r.status === 0, `${where}: sc-exec accepts ${words.join(" ")} (exit ${r.status}${r.status ? ": " + r.stderr.trim() : ""})`);
    }
  }
}

// The daemon really starts with each overlay's arguments (host paths moved
// under a temp dir, the metrics port to a free one on loopback: this is the
// host's network namespace), the DaemonSet's exec probe command, pointed at
// the moved socket, reports it healthy, and its metrics answer a scrape.
// Needs root (socket group 2049).
async function startsWith(dir, args, probe) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sc-test-deploy-flags-"));
  const move = (a) =>
    a.startsWith("--metrics_address=")
      ? "--metrics_address=127.0.0.1:0"
      : a.replace(/(\/(?:run|var|sys)\/[^,]*)/g, (p) => path.join(tmp, p));
  const moved = args.map((a) => (a.startsWith("--") ? move(a) : a));
  for (const a of moved) {
    const m = a.match(/^--(instance_base|layer_root|bind_root)=(.*)$/);
    if (m) for (const d of m[2].split(",")) fs.mkdirSync(d, { recursive: true });
    const audit = a.match(/^--audit_log=(.*)$/);
    if (audit) fs.mkdirSync(path.dirname(audit[1]), { recursive: true });
  }
  const child = spawn(bins["sc-mount-helper"], [...moved, "--ready_fd=3"], { stdio: ["ignore", "pipe", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const ready = await new Promise((resolve) => {
    let buf = "";
    const timer = setTimeout(() => resolve(false), 20000);
    child.stdio[3].on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) { clearTimeout(timer); resolve(buf.startsWith("READY")); }
    });
    child.on("exit", () => { clearTimeout(timer); resolve(false); });
  });
  report(ready, `${dir}: sc-mount-helper starts and serves with the manifest's flags${ready ? "" : ": " + log.trim()}`);
  if (ready && probe) {
    const r = run(bins["sc-exec"], probe.slice(1).map(move));
    report(r.status === 0, `${dir}: the exec probe (${probe.slice(1).join(" ")}, socket moved) passes against it (exit ${r.status})`);
  }
  const port = log.match(/metrics on 127\.0\.0\.1:0 \(port (\d+)\)/)?.[1];
  if (ready && args.some((a) => a.startsWith("--metrics_address="))) {
    let text = "";
    try {
      text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10000) })).text();
    } catch (e) {
      text = String(e);
    }
    report(text.includes("sc_mount_helper_build_info{"), `${dir}: its metrics answer a scrape (port ${port})`);
  }
  const exited = new Promise((resolve) => child.on("exit", (code, sig) => resolve(code ?? sig)));
  child.kill("SIGTERM");
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 15000))]);
  if (code === "timeout") child.kill("SIGKILL");
  report(code === 0, `${dir}: SIGTERM stops it cleanly (exit ${code})`);
  fs.rmSync(tmp, { recursive: true, force: true });
}

if (process.getuid() === 0) {
  for (const dir of Object.keys(RENDER_DIRS)) {
    const ds = render(dir).find((o) => o.kind === "DaemonSet");
    if (!ds) continue;
    const c = ds.spec.template.spec.containers[0];
    await startsWith(dir, c.args ?? [], c.livenessProbe?.exec?.command);
  }
} else if (process.env.CI === "true") {
  report(false, "starting the daemon with the manifests' flags needs root (CI=true)");
} else {
  console.log("SKIP starting the daemon with the manifests' flags: needs root");
}

// The consumer's init container script, run for real with the paths moved:
// it must leave sc-exec and its command symlinks in the emptyDir.
for (const pod of render("deploy/examples").filter((o) => o.kind === "Pod")) {
  for (const c of pod.spec.initContainers ?? []) {
    const script = (c.command ?? []).at(-1);
    if (!(c.command?.[0] ?? "").endsWith("sh") || !script.includes("/.sc-bin")) continue;
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sc-test-deploy-init-"));
    const bin = path.join(tmp, "sc-bin");
    fs.mkdirSync(bin);
    const moved = script.replaceAll("/.sc-bin", bin).replaceAll("/usr/local/bin/sc-exec", bins["sc-exec"]);
    const r = spawnSync("/bin/sh", c.command.slice(1, -1).concat([moved]), { encoding: "utf8" });
    const links = fs.readdirSync(bin).filter((n) => n !== "sc-exec");
    const good =
      r.status === 0 &&
      fs.statSync(path.join(bin, "sc-exec")).mode & 0o111 &&
      ["sh", "ls", "cat"].every((n) => links.includes(n)) &&
      links.every((n) => fs.readlinkSync(path.join(bin, n)) === "sc-exec");
    report(Boolean(good), `${pod.metadata.name} init container ${c.name} installs sc-exec and ${links.length} symlinks (${links.join(" ")})${r.status ? ": " + r.stderr : ""}`);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

for (const [bin, flags] of Object.entries(notAccepted)) {
  if (flags.size) console.log(`NOT YET ACCEPTED by ${bin}: ${[...flags].join(" ")}`);
}
console.log(failed ? `${failed} failure(s)` : "all flags used in deploy/ are accepted");
process.exit(failed ? 1 : 0);
