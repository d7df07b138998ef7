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
import { spawnSync } from "node:child_process";

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

for (const [bin, flags] of Object.entries(notAccepted)) {
  if (flags.size) console.log(`NOT YET ACCEPTED by ${bin}: ${[...flags].join(" ")}`);
}
console.log(failed ? `${failed} failure(s)` : "all flags used in deploy/ are accepted");
process.exit(failed ? 1 : 0);
