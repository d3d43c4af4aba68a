// One side (server or client) of one benchmark workload for a node-ipc
// subject, run as its own process by `cargo xtask bench`.
//
// Usage: node bench-peer.mjs <subject> <server|client> <w1|w2|w3> <unix:PATH|tcp:HOST:PORT> [n=N] [warm=N] [clients=N]
//
// Subjects: node14-fast, node14-guarded (node-ipc 14.0.0, run on Node 22),
// node9 (node-ipc 9.2.1, run on Node 20), all loaded from the `interop/`
// install (`cargo xtask interop` sets it up).
//
// Every stdout line is one JSON object, as the Rust peers print them:
// {"ev":"ready"}, {"ev":"sent"|"done"|"start"|"accepted", ..., "*_us": wall-clock
// microseconds since the Unix epoch}. The process exits when stdin ends or
// after a hard lifetime. Each workload is written as a node-ipc user writes
// it: emits in a plain loop, listeners per event type.

import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const interopDir = process.env.BENCH_INTEROP_DIR || path.join(here, '..', '..', 'interop');

const PAYLOAD = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_';

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function fatal(message) {
    out({ ev: 'fatal', message: String(message) });
    process.exit(2);
}

function nowUs() {
    return (performance.timeOrigin + performance.now()) * 1000;
}

const argv = process.argv.slice(2);
if (argv.length < 4) fatal('usage: bench-peer.mjs <subject> <role> <workload> <addr> [k=v ...]');
const [subject, role, workload, addrText] = argv;
const opts = { n: 1000000, warm: 2000, clients: 8 };
for (const kv of argv.slice(4)) {
    const [k, v] = kv.split('=');
    if (!(k in opts) || !Number.isFinite(Number(v))) fatal('bad option ' + kv);
    opts[k] = Number(v);
}
let addr;
if (addrText.startsWith('unix:')) {
    addr = { kind: 'unix', path: addrText.slice(5) };
} else if (addrText.startsWith('tcp:')) {
    const rest = addrText.slice(4);
    const i = rest.lastIndexOf(':');
    addr = { kind: 'tcp', host: rest.slice(0, i), port: Number(rest.slice(i + 1)) };
} else {
    fatal('bad address ' + addrText);
}

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
setTimeout(() => fatal('lifetime exceeded'), 600000).unref();

async function load() {
    if (subject === 'node9') {
        const require = createRequire(path.join(interopDir, 'package.json'));
        return new (require('node-ipc-9').IPC)();
    }
    if (subject === 'node14-fast' || subject === 'node14-guarded') {
        const file = path.join(interopDir, 'node_modules', 'node-ipc-14', 'node-ipc.js');
        const mod = await import(pathToFileURL(file).href);
        const ipc = new mod.IPCModule();
        ipc.config.parser = subject === 'node14-fast' ? 'fast' : 'guarded';
        return ipc;
    }
    throw new Error('unknown subject ' + subject);
}

const ipc = await load().catch((e) => fatal('cannot load ' + subject + ': ' + (e && e.stack)));
ipc.config.silent = true;
ipc.config.id = 'bench-server';
ipc.config.maxConnections = Math.max(opts.n, opts.clients) + 100;
ipc.config.retry = 50;
ipc.config.maxRetries = 20;

// Errors are counted; the first one is printed (the driver stops the run on
// it), later ones only show up in the counts of `sent`.
let errorCount = 0;
function onError(e) {
    errorCount += 1;
    if (errorCount === 1) out({ ev: 'error', message: String(e && e.message) });
}

function serve(onStart) {
    if (addr.kind === 'unix') ipc.serve(addr.path, onStart);
    else ipc.serveNet(addr.host, addr.port, onStart);
    ipc.server.on('error', onError);
    ipc.server.start();
}

function connect(id, onConnect) {
    if (addr.kind === 'unix') ipc.connectTo(id, addr.path);
    else ipc.connectToNet(id, addr.host, addr.port);
    const c = ipc.of[id];
    let first = true;
    c.on('connect', () => {
        if (!first) return;
        first = false;
        onConnect(c);
    });
    c.on('error', onError);
    return c;
}

function serverW1() {
    let count = 0;
    serve(() => out({ ev: 'ready' }));
    ipc.server.on('message', () => {
        count += 1;
        if (count === opts.n) out({ ev: 'done', count, end_us: nowUs() });
    });
}

function clientW1() {
    connect('bench-server', (c) => {
        const start = nowUs();
        for (let i = 0; i < opts.n; i++) c.emit('message', PAYLOAD);
        out({ ev: 'sent', start_us: start, end_us: nowUs(), errors: errorCount });
    });
}

function serverW2() {
    serve(() => out({ ev: 'ready' }));
    ipc.server.on('message', (data, socket) => ipc.server.emit(socket, 'message', data));
}

function clientW2() {
    const total = opts.warm + opts.n;
    const samples = new Float64Array(opts.n);
    let i = 0;
    let t0 = 0n;
    connect('bench-server', (c) => {
        c.on('message', () => {
            const dt = Number(process.hrtime.bigint() - t0);
            if (i >= opts.warm) samples[i - opts.warm] = dt;
            i += 1;
            if (i === total) {
                samples.sort();
                const pick = (q) => samples[Math.min(samples.length - 1, Math.round((samples.length - 1) * q))] / 1000;
                out({ ev: 'done', count: samples.length, p50_us: pick(0.5), p99_us: pick(0.99), end_us: nowUs() });
                return;
            }
            t0 = process.hrtime.bigint();
            c.emit('message', PAYLOAD);
        });
        t0 = process.hrtime.bigint();
        c.emit('message', PAYLOAD);
    });
}

function serverW3() {
    let hellos = 0;
    serve(() => out({ ev: 'ready' }));
    ipc.server.on('hello', () => {
        hellos += 1;
        if (hellos !== opts.clients) return;
        out({ ev: 'start', start_us: nowUs() });
        for (let i = 0; i < opts.n; i++) ipc.server.broadcast('message', PAYLOAD);
        out({ ev: 'sent', end_us: nowUs(), errors: errorCount });
    });
}

function clientW3() {
    let finished = 0;
    let total = 0;
    for (let k = 0; k < opts.clients; k++) {
        let count = 0;
        connect('bench-server-' + k, (c) => {
            c.on('message', () => {
                count += 1;
                if (count !== opts.n) return;
                total += count;
                finished += 1;
                if (finished === opts.clients) out({ ev: 'done', count: total, end_us: nowUs() });
            });
            c.emit('hello', null);
        });
    }
}

function serverW4() {
    let count = 0;
    serve(() => out({ ev: 'ready' }));
    ipc.server.on('connect', () => {
        count += 1;
        if (count === opts.n) out({ ev: 'accepted', count, end_us: nowUs() });
    });
}

const table = {
    'server w1': serverW1,
    'client w1': clientW1,
    'server w2': serverW2,
    'client w2': clientW2,
    'server w3': serverW3,
    'client w3': clientW3,
    'server w4': serverW4,
};
const run = table[role + ' ' + workload];
if (!run) fatal('no ' + role + ' for ' + workload);
run();
