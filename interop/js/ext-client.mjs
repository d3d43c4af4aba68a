// A plain node-ipc 14.0.0 client that makes requests to, and subscribes to
// topics of, a Rust server of this project (the request and publish/subscribe
// extension, `docs/protocol.md` §5). The extension is nothing but event names and JSON
// shapes on the node-ipc envelope, so a few lines of JS are enough:
//
//   request:    emit('ipcx.request', {n, d})  ->  'ipcx.response' {n, d} | {n} | {n, e}
//   subscribe:  emit('ipcx.sub', {n, topics}) ->  'ipcx.response' {n, d: {topics}}
//   delivery:   a plain event whose type is the topic, data = the message
//
// Usage: node ext-client.mjs '{"path":P}' | '{"host":H,"port":N}'  [+ "parser", "topics"]
// stdin (one JSON object per line): {"request": <data>} makes a request.
// stdout (JSON lines): {"ev":"subscribed","topics":[...]}, {"ev":"response",...},
// {"ev":"publication","topic":T,"message":M}, {"ev":"error",...}.
// The process exits when stdin ends.

import readline from 'node:readline';
import { IPCModule } from 'node-ipc-14';

const opts = JSON.parse(process.argv[2] || '{}');
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const ipc = new IPCModule();
ipc.config.silent = true;
ipc.config.maxRetries = 0;
if (opts.parser) ipc.config.parser = opts.parser;

if (opts.path) ipc.connectTo('rust', opts.path);
else ipc.connectToNet('rust', opts.host, opts.port);
const server = ipc.of.rust;

// Correlated calls: a fresh `n` per call, resolved by the matching response.
let next = 0;
const pending = new Map();
function call(type, data) {
    const n = `js-${next++}`;
    return new Promise((resolve) => {
        pending.set(n, resolve);
        server.emit(type, { n, ...data });
    });
}
server.on('ipcx.response', (res) => {
    const done = pending.get(res.n);
    if (done) {
        pending.delete(res.n);
        done(res);
    }
});

const request = (d) => call('ipcx.request', { d });
const subscribe = (topics) => call('ipcx.sub', { topics });

server.on('error', (e) => print({ ev: 'error', code: e && e.code, message: e && e.message }));
server.on('connect', async () => {
    const topics = opts.topics || ['news'];
    for (const topic of topics) {
        server.on(topic, (message) => print({ ev: 'publication', topic, message }));
    }
    const ack = await subscribe(topics);
    print({ ev: 'subscribed', topics: ack.d && ack.d.topics });
});

readline.createInterface({ input: process.stdin })
    .on('line', async (line) => {
        const cmd = JSON.parse(line);
        if ('request' in cmd) {
            const res = await request(cmd.request);
            print({ ev: 'response', ...res });
        }
    })
    .on('close', () => process.exit(0));
