// Prints the daemon's command line from rendered manifests (stdin, the output
// of `kubectl kustomize deploy/...`), one argument per line, so that scripts
// start the daemon exactly as the DaemonSet would.
import { parseAllDocuments } from 'yaml';

let input = '';
for await (const chunk of process.stdin) input += chunk;
for (const doc of parseAllDocuments(input)) {
  const obj = doc.toJS();
  if (!obj || obj.kind !== 'DaemonSet') continue;
  for (const c of obj.spec.template.spec.containers ?? []) {
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    if (argv.some((a) => a.includes('sc-mount-helper'))) {
      console.log(argv.join('\n'));
      process.exit(0);
    }
  }
}
console.error('daemon-args: no DaemonSet container runs sc-mount-helper');
process.exit(1);
