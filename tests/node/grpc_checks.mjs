// Checks the daemon with clients that are not ours (@grpc/grpc-js and a
// reflection client), the way grpcurl would: list services by reflection,
// describe them, call health through a descriptor fetched by reflection, and
// call an unknown method. One "ok ..." line per check; exits 1 on any failure.
//
// usage: node grpc_checks.mjs SOCKET
import * as grpc from '@grpc/grpc-js';
import { GrpcReflection } from 'grpc-js-reflection-client';

const socket = process.argv[2];
if (!socket) {
  console.error('usage: node grpc_checks.mjs SOCKET');
  process.exit(2);
}
const target = `unix://${socket}`;
const creds = grpc.credentials.createInsecure();
let failed = 0;
const ok = (what) => console.log(`ok ${what}`);
const fail = (what, why) => {
  failed++;
  console.log(`FAIL ${what}: ${why}`);
};

const reflection = new GrpcReflection(target, creds);
const services = await reflection.listServices();
for (const wanted of [
  'stoppablecontainer.mounthelper.v1.MountHelper',
  'grpc.health.v1.Health',
  'grpc.reflection.v1alpha.ServerReflection',
]) {
  if (services.includes(wanted)) ok(`reflection lists ${wanted}`);
  else fail(`reflection lists ${wanted}`, `got ${JSON.stringify(services)}`);
}

// describe: every method of our service is known to reflection.
const mh = await reflection.getDescriptorBySymbol('stoppablecontainer.mounthelper.v1.MountHelper');
const mhPkg = mh.getPackageObject({ keepCase: true, enums: String, defaults: true });
const mhService = mhPkg.stoppablecontainer.mounthelper.v1.MountHelper;
const methods = Object.keys(mhService.service);
for (const m of ['PrepareRootfs', 'ReleaseRootfs', 'BindMount', 'GetInstance', 'ListInstances',
                 'CheckRootfs', 'Exec', 'WhoAmI']) {
  if (methods.includes(m)) ok(`reflection describes MountHelper.${m}`);
  else fail(`reflection describes MountHelper.${m}`, `methods ${methods}`);
}

// Health through the descriptor that reflection served.
const health = await reflection.getDescriptorBySymbol('grpc.health.v1.Health');
const healthPkg = health.getPackageObject({ keepCase: true, enums: String, defaults: true });
const Health = healthPkg.grpc.health.v1.Health;
const healthClient = new Health(target, creds);
const check = await new Promise((resolve) =>
  healthClient.Check({ service: '' }, { deadline: Date.now() + 10000 }, (err, res) =>
    resolve({ err, res })));
if (!check.err && check.res.status === 'SERVING') ok('health SERVING');
else fail('health SERVING', check.err ? check.err.message : JSON.stringify(check.res));

// WhoAmI through the reflected descriptor: the daemon sees us as an operator.
const mhClient = new mhService(target, creds);
const who = await new Promise((resolve) =>
  mhClient.WhoAmI({}, { deadline: Date.now() + 10000 }, (err, res) => resolve({ err, res })));
if (!who.err && who.res.kind === 'OPERATOR' && who.res.pid === process.pid) {
  ok('WhoAmI sees this process as OPERATOR');
} else {
  fail('WhoAmI', who.err ? who.err.message : JSON.stringify(who.res));
}

// A method the server does not have.
const raw = new grpc.Client(target, creds);
const unknown = await new Promise((resolve) =>
  raw.makeUnaryRequest('/stoppablecontainer.mounthelper.v1.MountHelper/NoSuchMethod',
    (x) => x, (x) => x, Buffer.alloc(0), { deadline: Date.now() + 10000 },
    (err) => resolve(err)));
if (unknown && unknown.code === grpc.status.UNIMPLEMENTED) ok('unknown method UNIMPLEMENTED');
else fail('unknown method UNIMPLEMENTED', unknown ? `code ${unknown.code}` : 'succeeded');

raw.close();
healthClient.close();
mhClient.close();
console.log(failed === 0 ? 'all checks passed' : `${failed} checks failed`);
process.exit(failed === 0 ? 0 : 1);
