// Unknown-field check for Kubernetes objects, offline.
//
// kubernetes-models validates types, enums and required fields against the
// upstream OpenAPI schemas, but its validators accept unknown properties, so
// a typo such as "mountPropogation" would pass and silently drop a security
// setting. The API server (strict field validation) rejects such fields; this
// does the same from the same upstream definitions, as shipped in the
// package's TypeScript declarations (one interface per schema definition).
import fs from "node:fs";
import path from "node:path";

const INTERFACE_RE = /export interface (I\w+)(?: extends ([\w, ]+))? \{\n([\s\S]*?)\n\}/;
const PROP_RE = /^"([^"]+)"\??: (.+);$/s;

// Splits an interface body into declarations (some span several lines, such
// as map types) and normalises each to one line: `"limits"?: { [key:
// string]: IQuantity };`.
function splitDeclarations(body) {
  const out = [];
  let current = "";
  let depth = 0;
  for (const line of body.split("\n")) {
    current += (current ? " " : "") + line.trim();
    for (const c of line) {
      if (c === "{" || c === "<" || c === "(") depth++;
      if (c === "}" || c === ">" || c === ")") depth--;
    }
    if (depth === 0 && current.endsWith(";")) {
      out.push(current.replace(/\s+/g, " ").replace(/; \}/g, " }"));
      current = "";
    }
  }
  return out;
}
const IMPORT_RE = /import \{ ([^}]+) \} from "([^"]+)";/g;

// The package whose models describe an apiVersion: the Prometheus Operator's
// CRDs, or upstream Kubernetes.
export function modelPackage(apiVersion) {
  return apiVersion.startsWith("monitoring.coreos.com/") ? "@kubernetes-models/prometheus-operator" : "kubernetes-models";
}

export class StrictChecker {
  constructor(nodeModules) {
    this.nodeModules = nodeModules;
    this.cache = new Map(); // file -> {props: Map(name -> type), imports: Map}
  }

  resolveModule(spec, fromFile) {
    let file;
    if (spec.startsWith(".")) {
      file = path.resolve(path.dirname(fromFile), spec);
    } else {
      file = path.join(this.nodeModules, spec);
    }
    file = file.replace(/\.js$/, "");
    return file + ".d.ts";
  }

  load(file) {
    if (this.cache.has(file)) return this.cache.get(file);
    let entry = null;
    if (fs.existsSync(file)) {
      const text = fs.readFileSync(file, "utf8").replace(/\/\*\*[\s\S]*?\*\//g, "");
      const imports = new Map();
      for (const m of text.matchAll(IMPORT_RE)) {
        for (const name of m[1].split(",").map((s) => s.trim())) imports.set(name, m[2]);
      }
      const im = text.match(INTERFACE_RE);
      if (im) {
        const props = new Map();
        for (const decl of splitDeclarations(im[3])) {
          const pm = decl.match(PROP_RE);
          if (pm) props.set(pm[1], pm[2].trim());
        }
        const parents = im[2] ? im[2].split(",").map((s) => s.trim()) : [];
        if (parents.includes("TypeMeta")) {
          props.set("apiVersion", "string");
          props.set("kind", "string");
        }
        entry = { file, props, imports };
      }
    }
    this.cache.set(file, entry);
    return entry;
  }

  // Returns a descriptor for a type string seen in `owner`.
  typeOf(typeString, owner) {
    const t = typeString.trim();
    let m = t.match(/^Array<(.+)>$/);
    if (m) return { array: this.typeOf(m[1], owner) };
    m = t.match(/^\{ \[key: string\]: (.+) \}$/);
    if (m) return { map: this.typeOf(m[1], owner) };
    if (/^I\w+$/.test(t) && owner.imports.has(t)) {
      const iface = this.load(this.resolveModule(owner.imports.get(t), owner.file));
      if (iface) return { object: iface };
    }
    return { leaf: t };
  }

  // Model file for an object's apiVersion/kind, e.g. apps/v1 DaemonSet ->
  // kubernetes-models/apps/v1/DaemonSet.d.ts (modelPackage for CRDs).
  rootFor(apiVersion, kind) {
    const file = path.join(this.nodeModules, modelPackage(apiVersion), apiVersion, `${kind}.d.ts`);
    return this.load(file);
  }

  // Lists "path: unknown field" problems of obj.
  check(obj) {
    const root = this.rootFor(obj.apiVersion, obj.kind);
    if (!root) return [`no schema for ${obj.apiVersion} ${obj.kind}`];
    const problems = [];
    this.walk(obj, { object: root }, "", problems);
    return problems;
  }

  walk(value, type, where, problems) {
    if (value === null || value === undefined) return;
    if (type.array) {
      if (Array.isArray(value)) value.forEach((v, i) => this.walk(v, type.array, `${where}[${i}]`, problems));
      return;
    }
    if (type.map) {
      if (typeof value === "object") {
        for (const [k, v] of Object.entries(value)) this.walk(v, type.map, `${where}.${k}`, problems);
      }
      return;
    }
    if (type.object) {
      if (typeof value !== "object" || Array.isArray(value)) return; // type errors: schema's job
      for (const [k, v] of Object.entries(value)) {
        const t = type.object.props.get(k);
        if (t === undefined) {
          problems.push(`${where}.${k}: unknown field`);
          continue;
        }
        this.walk(v, this.typeOf(t, type.object), `${where}.${k}`, problems);
      }
    }
  }
}
