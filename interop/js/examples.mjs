// The roles of node-ipc's own example programs (its repository's `example/`
// directory), written here for the tests that prove `nipc` can play the other
// side of each one (`interop/tests/examples_cli.rs`). Each role does what the
// example does; instead of logging with `ipc.log` it prints JSON lines.
//
// Usage: node examples.mjs '<setup json>'
//   version   "9" | "12" | "14"
//   example   "basic" | "sync" | "raw" | "broadcast" | "cluster" | "tls" | "udp"
//   role      "world" (the example's server) | "hello" | "goodbye" (clients;
//             for "udp" the hello side is a UDP server of its own, as in the
//             example) | "cluster-client"
//   path      Unix socket path, or host + port (tcp, tls, udp4)
//   tls       ipc.config.tls (file paths) for the tls example
//   target    udp hello: {"address":A,"port":P} of the world server
//   count     sync hello: messages to send (the example: 10)
//   delayMs   sync world: delay before each answer (the example: 2000)
//   cycles    cluster-client: connect/emit/disconnect cycles
//   intervalMs cluster-client: time between cycles (the example: 2000)
//   workers   cluster world: worker processes sharing the socket
//
// Output (stdout, one JSON object per line):
//   {"ev":"ready","port":P}              listening (server) / connected (client)
//   {"ev":"got","type":T,"data":D}       a framed message
//   {"ev":"data","text":S,"hex":H}       raw bytes
//   {"ev":"error","code":C,"message":M}
//   {"ev":"done"}                        the example's conversation is complete
// The process exits when stdin ends.

import { createRequire } from 'node:module';
import cluster from 'node:cluster';
import fs from 'node:fs';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const setup = JSON.parse(process.argv[2] || '{}');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

setTimeout(() => process.exit(3), Number(setup.lifetimeMs || 60000)).unref();
if (!cluster.isWorker) {
    readline.createInterface({ input: process.stdin }).on('close', () => process.exit(0));
} else {
    process.on('disconnect', () => process.exit(0));
}

async function load() {
    const v = String(setup.version || '14');
    if (v === '9') return new (require('node-ipc-9').IPC)();
    if (v === '12') return new (await import('node-ipc-12')).IPCModule();
    return new (await import('node-ipc-14')).IPCModule();
}

const ipc = await load();
ipc.config.silent = true;
ipc.config.id = setup.role === 'goodbye' ? 'goodbye' : setup.role === 'world' ? 'world' : 'hello';
ipc.config.retry = 100;
ipc.config.maxRetries = 20;
const ex = setup.example;
const net = setup.tls ? 'tls' : setup.path ? 'unix' : ex === 'udp' ? 'udp4' : 'tcp';
if (setup.tls) ipc.config.tls = setup.tls;
if (setup.host) ipc.config.networkHost = setup.host;
const type = ex === 'tls' || ex === 'udp' ? 'message' : 'app.message';

const onError = (e) => out({ ev: 'error', code: e && e.code, message: String(e && e.message) });

// ---- the example's server ("world") --------------------------------------

function world() {
    const heard = { hello: false, goodbye: false };
    const answer = (data) =>
        typeof data === 'string' ? data + ' world!' : { id: ipc.config.id, message: data.message + ' world!' };
    const handlers = () => {
        ipc.server.on('error', onError);
        if (ex === 'raw') {
            ipc.server.on('connect', (socket) => ipc.server.emit(socket, 'hello'));
            ipc.server.on('data', (data, socket) => {
                out({ ev: 'data', text: data.toString('latin1'), hex: data.toString('hex') });
                ipc.server.emit(socket, 'goodbye');
            });
            return;
        }
        if (ex === 'cluster') {
            ipc.server.on('currentDate', (data) => out({ ev: 'got', type: 'currentDate', data, pid: process.pid }));
            return;
        }
        ipc.server.on(type, (data, socket) => {
            out({ ev: 'got', type, data });
            const reply = () => ipc.server.emit(socket, type, answer(data));
            if (ex === 'sync') setTimeout(reply, Number(setup.delayMs || 2000));
            else reply();
            if (ex === 'broadcast') {
                heard[data.id] = true;
                if (heard.hello && heard.goodbye) {
                    ipc.server.broadcast('kill.connection', { id: ipc.config.id });
                    out({ ev: 'done' });
                }
            }
        });
    };
    if (ex === 'raw') {
        ipc.config.rawBuffer = true;
        ipc.config.encoding = 'ascii';
    }
    if (ex === 'cluster') ipc.config.unlink = false;
    if (net === 'unix') ipc.serve(setup.path, handlers);
    else if (net === 'udp4') ipc.serveNet(setup.host, setup.port, 'udp4', handlers);
    else ipc.serveNet(setup.host, setup.port, handlers);
    ipc.server.start();
    const announce = () => {
        const s = ipc.server.server;
        let a = null;
        try { a = s && s.address(); } catch (_) { a = null; }
        if (net === 'unix' ? s && s.listening : a && a.port) {
            out({ ev: 'ready', port: a && a.port, pid: process.pid });
        } else {
            setTimeout(announce, 10);
        }
    };
    announce();
}

// ---- the example's clients -----------------------------------------------

function connect(cb) {
    if (net === 'unix') ipc.connectTo('world', setup.path, cb);
    else ipc.connectToNet('world', setup.host, setup.port, cb);
}

function hello() {
    if (ex === 'raw') {
        ipc.config.rawBuffer = true;
        ipc.config.encoding = 'ascii';
    }
    if (ex === 'sync') ipc.config.sync = true;
    const count = ex === 'sync' ? Number(setup.count || 10) : 1;
    let got = 0;
    connect(() => {
        const w = ipc.of.world;
        w.on('error', onError);
        w.on('connect', () => {
            out({ ev: 'ready' });
            if (ex === 'raw') return w.emit('hello');
            for (let i = 0; i < count; i++) {
                const message = ex === 'sync' ? 'hello' + i : ipc.config.id;
                w.emit(type, ex === 'tls' ? 'hello' : { id: ipc.config.id, message });
            }
        });
        w.on('data', (data) => {
            out({ ev: 'data', text: data.toString('latin1'), hex: data.toString('hex') });
            out({ ev: 'done' });
        });
        w.on(type, (data) => {
            out({ ev: 'got', type, data });
            got += 1;
            if (ex !== 'broadcast' && got === count) out({ ev: 'done' });
        });
        w.on('kill.connection', (data) => {
            out({ ev: 'got', type: 'kill.connection', data });
            ipc.disconnect('world');
            out({ ev: 'done' });
        });
    });
}

function udpHello() {
    ipc.serveNet(setup.host, setup.port, 'udp4', () => {
        ipc.server.on('error', onError);
        ipc.server.on('message', (data) => {
            out({ ev: 'got', type: 'message', data });
            out({ ev: 'done' });
        });
    });
    ipc.server.start();
    const send = () => {
        const s = ipc.server.server;
        let a = null;
        try { a = s && s.address(); } catch (_) { a = null; }
        if (!a || !a.port) return setTimeout(send, 10);
        out({ ev: 'ready', port: a.port });
        ipc.server.emit(setup.target, 'message', { id: ipc.config.id, message: 'Hello' });
    };
    send();
}

function clusterClient() {
    const cycles = Number(setup.cycles || 3);
    let n = 0;
    const timer = setInterval(() => {
        n += 1;
        const last = n === cycles;
        if (last) clearInterval(timer);
        ipc.connectTo('world', setup.path, () => {
            ipc.of.world.on('connect', () => {
                ipc.of.world.emit('currentDate', { message: new Date().toISOString() });
                ipc.disconnect('world');
                out({ ev: 'sent', cycle: n });
                if (last) out({ ev: 'done' });
            });
        });
    }, Number(setup.intervalMs || 2000));
}

// ---- dispatch --------------------------------------------------------------

if (setup.role === 'world' && ex === 'cluster' && !cluster.isWorker) {
    // As the example: the primary removes a stale socket once, then forks
    // workers that all serve the same path with `unlink = false`.
    if (fs.existsSync(setup.path)) fs.unlinkSync(setup.path);
    for (let i = 0; i < Number(setup.workers || 2); i++) cluster.fork();
} else if (setup.role === 'world') {
    world();
} else if (setup.role === 'cluster-client') {
    clusterClient();
} else if (ex === 'udp') {
    udpHello();
} else {
    hello();
}
