// Scripted node-ipc peer for the cross-runtime interop tests.
//
// Usage: node peer.mjs '<setup json>'
//
// Setup (one JSON object, first command-line argument):
//   version    "9" | "12" | "14"
//   parser     v14 only: "fast" | "guarded" | ... (written to config.parser)
//   role       "server" | "client"
//   transport  {"kind":"unix","path":P}
//              {"kind":"tcp","host":H,"port":N}      (N > 0: node-ipc cannot bind port 0)
//              {"kind":"tls","host":H,"port":N}      (config.tls carries the keys)
//              {"kind":"udp4"|"udp6","host":H,"port":N}  (always a server)
//   id         this instance's config.id (default "interop-peer")
//   target     client: the id passed to connectTo/connectToNet (default "interop-server")
//   config     overrides merged into ipc.config (rawBuffer, encoding, sync,
//              delimiter, maxRetries, retry, stopRetrying, networkHost,
//              socketRoot, appspace, silent, tls {...}, parser limits, ...)
//   listen     application event types to register listeners for
//   lifetimeMs hard exit after this many milliseconds (default 120000)
//
// Built-in listeners (reported as summaries, not one line per message):
//   "seq" {i,n}: checks that i counts up from 0; prints {"ev":"seq","count":C,
//                "inOrder":B,"last":i} every 50 messages and when i == n-1
//   "big" S:     prints {"ev":"big","length":L,"ok":B}, ok = S is the bigPattern
//
// Commands (stdin, one JSON object per line), each answered by an "ack" line:
//   {"cmd":"emit","type":T,"data":V}            framed emit (client; server needs socket/target)
//       "dataKind": "json" (default) | "undefined" | "NaN" | "buffer" (data = hex string)
//       "socket": N (server stream) | "target": {"address":A,"port":P} (server UDP)
//   {"cmd":"emitRaw","hex":H | "string":S | "array":[..], "socket"/"target" as above}
//   {"cmd":"broadcast","type":T,"data":V}       (raw mode: "hex"/"string"/"array")
//   {"cmd":"burst","n":N,"from":F,"count":C}  emits "seq" {i,n} for i in F..F+C
//       (defaults F=0, C=N), with "socket"/"target" on a server
//   {"cmd":"emitBig","size":L}                   emits "big" with bigPattern(L)
//   {"cmd":"stop"}        server.stop()
//   {"cmd":"disconnect"}  ipc.disconnect(target)
//   {"cmd":"ping","tag":X}
//   {"cmd":"exit","code":N}
//
// Output (stdout, one JSON object per line):
//   {"ev":"ready","address":A,"port":P,"family":F,"path":P}   listening / first connect
//   {"ev":"event","type":T,"args":[...]}     every listener call (lifecycle and application)
//   {"ev":"exception","type":T,"message":M,"name":N}  a dispatch threw (the process then
//                                              behaves as node-ipc does: usually it dies)
//   {"ev":"ack","seq":N,"cmd":C,"ok":true,"ret":R} / {"ok":false,"error":{...}}
//   {"ev":"listen_failed","type":T,"message":M}
//   {"ev":"fatal","message":M}
// Values are JSON; non-JSON values are tagged: {"$undefined":true}, {"$buffer":hex},
// {"$socket":N}, {"$dgram":{...}}, {"$error":{...}}, {"$number":"NaN"}, ...
//
// The process exits when stdin ends, on "exit", or after lifetimeMs.

import { createRequire } from 'node:module';
import net from 'node:net';
import dgram from 'node:dgram';
import readline from 'node:readline';

const require = createRequire(import.meta.url);

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function fatal(message) {
    out({ ev: 'fatal', message: String(message) });
    process.exit(2);
}

let setup;
try {
    setup = JSON.parse(process.argv[2] || '');
} catch (e) {
    fatal('bad setup JSON: ' + e.message);
}

const version = String(setup.version);
const role = setup.role;
const transport = setup.transport || {};
const lifetime = Number(setup.lifetimeMs || 120000);
setTimeout(() => {
    out({ ev: 'fatal', message: 'lifetime exceeded' });
    process.exit(3);
}, lifetime).unref();

// ---- value serialisation -------------------------------------------------

const socketIds = new WeakMap();
const socketsById = new Map();
let nextSocketId = 1;

function socketId(sock) {
    let id = socketIds.get(sock);
    if (id === undefined) {
        id = nextSocketId++;
        socketIds.set(sock, id);
        socketsById.set(id, sock);
    }
    return id;
}

function ser(v, depth = 0, seen = new WeakSet()) {
    if (v === undefined) return { $undefined: true };
    if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
    if (typeof v === 'number') return Number.isFinite(v) ? v : { $number: String(v) };
    if (typeof v === 'bigint') return { $bigint: String(v) };
    if (typeof v === 'function') return { $function: v.name || '' };
    if (typeof v === 'symbol') return { $symbol: String(v) };
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { $buffer: Buffer.from(v).toString('hex') };
    if (v instanceof net.Socket) return { $socket: socketId(v) };
    if (v instanceof dgram.Socket) {
        let address = null;
        try { address = v.address(); } catch (_) { /* not bound */ }
        return { $dgram: address };
    }
    if (v instanceof net.Server) {
        let address = null;
        try { address = v.address(); } catch (_) { /* not listening */ }
        return { $server: address };
    }
    if (v instanceof Error) {
        const e = { name: v.name, message: v.message };
        // Own properties with primitive values only (TLS errors carry whole
        // certificate objects, which are noise here).
        for (const k of Object.keys(v)) {
            const x = v[k];
            if (x === null || ['string', 'number', 'boolean'].includes(typeof x)) e[k] = ser(x, depth + 1, seen);
        }
        if (v.code !== undefined) e.code = v.code;
        return { $error: e };
    }
    if (seen.has(v)) return { $cycle: true };
    if (depth > 6) return { $deep: true };
    seen.add(v);
    if (Array.isArray(v)) return v.map((x) => ser(x, depth + 1, seen));
    const o = {};
    for (const k of Object.keys(v)) o[k] = ser(v[k], depth + 1, seen);
    return o;
}

function serError(e) {
    const s = ser(e);
    return s && s.$error ? s.$error : { message: String(e) };
}

// ---- load the requested node-ipc version ---------------------------------

async function loadIpc() {
    if (version === '9') {
        const mod = require('node-ipc-9');
        return new mod.IPC();
    }
    if (version === '12') {
        const mod = await import('node-ipc-12');
        return new mod.IPCModule();
    }
    if (version === '14') {
        const mod = await import('node-ipc-14');
        return new mod.IPCModule();
    }
    throw new Error('unknown version ' + version);
}

const LIFECYCLE = ['start', 'connect', 'disconnect', 'destroy', 'error', 'close', 'socket.disconnected', 'data'];

function instrument(emitter, appTypes) {
    // Report exceptions escaping a dispatch, then rethrow so the node-ipc
    // behaviour (usually a process crash) is unchanged.
    const publish = emitter.publish;
    if (typeof publish === 'function') {
        emitter.publish = function (type, ...args) {
            try {
                return publish.call(this, type, ...args);
            } catch (e) {
                out({ ev: 'exception', type: ser(type), name: e && e.name, message: e && e.message });
                throw e;
            }
        };
    }
    const seenTypes = new Set();
    for (const type of [...LIFECYCLE, ...appTypes]) {
        if (seenTypes.has(type)) continue;
        seenTypes.add(type);
        try {
            emitter.on(type, (...args) => out({ ev: 'event', type, args: args.map((a) => ser(a)) }));
        } catch (e) {
            out({ ev: 'listen_failed', type, message: e && e.message });
        }
    }
}

// "0123456789abcdef" repeated to `size` characters.
function bigPattern(size) {
    const unit = '0123456789abcdef';
    return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
}

function summaries(emitter) {
    let next = 0;
    let inOrder = true;
    emitter.on('seq', (data) => {
        const i = data && data.i;
        if (i !== next) inOrder = false;
        next = (typeof i === 'number' ? i : next) + 1;
        const count = next;
        if (count % 50 === 0 || (data && i === data.n - 1)) out({ ev: 'seq', count, inOrder, last: i });
    });
    emitter.on('big', (data) => {
        const length = typeof data === 'string' ? data.length : -1;
        out({ ev: 'big', length, ok: length >= 0 && data === bigPattern(length) });
    });
}

const DEFAULT_TYPES = ['message', 'n', 'z', 'u', 'c', 'e', 'b', 's', 'a', 't', 'x', 'ping', 'pong', 'echo', 'sync', ''];

function waitBound(getAddress, extra) {
    const started = Date.now();
    const poll = () => {
        let addr = null;
        try { addr = getAddress(); } catch (_) { addr = null; }
        if (addr) {
            if (typeof addr === 'string') out({ ev: 'ready', path: addr, ...extra });
            else out({ ev: 'ready', address: addr.address, port: addr.port, family: addr.family, ...extra });
            return;
        }
        if (Date.now() - started > 10000) fatal('not bound after 10 s');
        setTimeout(poll, 5);
    };
    poll();
}

// ---- main ------------------------------------------------------------------

const ipc = await loadIpc().catch((e) => fatal('cannot load node-ipc ' + version + ': ' + (e && e.stack)));
ipc.config.silent = true;
ipc.config.id = setup.id || 'interop-peer';
if (version === '14' && setup.parser) ipc.config.parser = setup.parser;
for (const [k, v] of Object.entries(setup.config || {})) ipc.config[k] = v;
const appTypes = Array.isArray(setup.listen) ? setup.listen : DEFAULT_TYPES;
const target = setup.target || 'interop-server';
const kind = transport.kind;
let client = null;

function rawPayload(cmd) {
    if (cmd.hex !== undefined) return Buffer.from(cmd.hex, 'hex');
    if (cmd.array !== undefined) return cmd.array;
    return cmd.string;
}

function framedData(cmd) {
    switch (cmd.dataKind || 'json') {
        case 'undefined': return undefined;
        case 'NaN': return NaN;
        case 'buffer': return Buffer.from(cmd.data, 'hex');
        default: return cmd.data;
    }
}

function serverTarget(cmd) {
    if (cmd.target) return cmd.target;
    const sock = socketsById.get(cmd.socket);
    if (!sock) throw new Error('unknown socket ' + cmd.socket);
    return sock;
}

function run(cmd) {
    switch (cmd.cmd) {
        case 'emit': {
            const data = framedData(cmd);
            const omit = (cmd.dataKind === 'undefined');
            if (role === 'client') return omit ? client.emit(cmd.type) : client.emit(cmd.type, data);
            const to = serverTarget(cmd);
            return omit ? ipc.server.emit(to, cmd.type) : ipc.server.emit(to, cmd.type, data);
        }
        case 'emitRaw': {
            const payload = rawPayload(cmd);
            if (role === 'client') return client.emit(payload);
            return ipc.server.emit(serverTarget(cmd), payload);
        }
        case 'broadcast': {
            if (cmd.hex !== undefined || cmd.array !== undefined || cmd.string !== undefined) {
                return ipc.server.broadcast(rawPayload(cmd));
            }
            return ipc.server.broadcast(cmd.type, framedData(cmd));
        }
        case 'burst': {
            const n = Number(cmd.n);
            const from = Number(cmd.from || 0);
            const count = cmd.count === undefined ? n - from : Number(cmd.count);
            const to = role === 'client' ? null : serverTarget(cmd);
            for (let i = from; i < from + count; i++) {
                if (role === 'client') client.emit('seq', { i, n });
                else ipc.server.emit(to, 'seq', { i, n });
            }
            return count;
        }
        case 'emitBig': {
            const data = bigPattern(Number(cmd.size));
            if (role === 'client') return client.emit('big', data);
            return ipc.server.emit(serverTarget(cmd), 'big', data);
        }
        case 'stop':
            return ipc.server.stop();
        case 'disconnect':
            return ipc.disconnect(target);
        case 'ping':
            return cmd.tag === undefined ? null : cmd.tag;
        case 'exit':
            process.exit(Number(cmd.code || 0));
            return null;
        default:
            throw new Error('unknown command ' + cmd.cmd);
    }
}

if (role === 'server') {
    const udp = kind === 'udp4' || kind === 'udp6';
    const port = Number(transport.port);
    // node-ipc treats port 0 as "no port" and would listen on a local
    // socket named after the host instead, so an explicit port is required.
    if (kind !== 'unix' && !(port > 0)) fatal('network servers need an explicit non-zero port');
    if (kind === 'unix') {
        ipc.serve(transport.path);
    } else if (udp) {
        ipc.serveNet(transport.host, port, kind);
    } else if (kind === 'tcp' || kind === 'tls') {
        ipc.serveNet(transport.host, port);
    } else {
        fatal('unknown transport ' + kind);
    }
    instrument(ipc.server, appTypes);
    summaries(ipc.server);
    ipc.server.start();
    waitBound(() => {
        const s = ipc.server.server;
        if (!s) return null;
        if (s instanceof dgram.Socket) return s.address();
        return s.listening ? s.address() : null;
    }, { role });
} else if (role === 'client') {
    if (kind === 'unix') {
        ipc.connectTo(target, transport.path);
    } else if (kind === 'tcp' || kind === 'tls') {
        ipc.connectToNet(target, transport.host, Number(transport.port));
    } else {
        fatal('clients support unix, tcp and tls only, not ' + kind);
    }
    client = ipc.of[target];
    if (!client) fatal('connect did not create a client');
    instrument(client, appTypes);
    summaries(client);
    let readySent = false;
    client.on('connect', () => {
        if (readySent) return;
        readySent = true;
        const s = client.socket;
        let local = null;
        try { local = s && s.address(); } catch (_) { local = null; }
        out({
            ev: 'ready',
            role,
            address: local && local.address,
            port: local && local.port,
            family: local && local.family,
        });
    });
} else {
    fatal('role must be server or client');
}

let seq = 0;
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
    if (!line.trim()) return;
    const n = seq++;
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (e) {
        out({ ev: 'ack', seq: n, ok: false, error: { message: 'bad command JSON: ' + e.message } });
        return;
    }
    try {
        const ret = run(cmd);
        out({ ev: 'ack', seq: n, cmd: cmd.cmd, ok: true, ret: ser(ret) });
    } catch (e) {
        out({ ev: 'ack', seq: n, cmd: cmd.cmd, ok: false, error: serError(e) });
    }
});
rl.on('close', () => process.exit(0));
