// A scripted net-ipc 2.2.2 peer: a client (connecting to our server) or a
// server (our client connects to it), driven by JSON-line commands on stdin,
// printing every event as a JSON line on stdout.
//
// Usage: node netipc-peer.mjs '<options>'
//   options: {"role":"client"|"server", "path":P | "host":H,"port":N,
//             "messagepack":bool, "compress":bool, "handshake":bool (upgrade request),
//             "reconnect":bool, "retries":N, "tls":bool, "ca":PEM, "cert":PEM, "key":PEM}
//
// Client commands: {"op":"connect","payload":X}, {"op":"send","data":X},
//   {"op":"request","tag":T,"data":X,"timeout":MS}, {"op":"ping","tag":T},
//   {"op":"close","reason":R}, {"op":"destroy"}
// Server commands: {"op":"broadcast","data":X}, {"op":"send","data":X} (to every
//   connection), {"op":"survey","tag":T,"data":X,"timeout":MS},
//   {"op":"request","tag":T,"data":X} (to the first connection),
//   {"op":"ping","tag":T}, {"op":"close","allowReconnect":bool}
//
// Events: {"ev":"ready",...}, {"ev":"connect","id","extras"}, {"ev":"message","data"},
//   {"ev":"request","data"} (answered with {"echo":data,"from":"js"}),
//   {"ev":"response","tag","data"} / {"ev":"rejected","tag","reason"},
//   {"ev":"pong","tag","ms"}, {"ev":"survey","tag","results"},
//   {"ev":"disconnect","id","reason"}, {"ev":"close","reason"},
//   {"ev":"status","status"}, {"ev":"error","message"}, {"ev":"done","op"}.
// The process exits when stdin ends.

import readline from 'node:readline';
import netipc from 'net-ipc';

const opts = JSON.parse(process.argv[2] || '{}');
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const errText = (e) => (e && e.message) || String(e);

const transport = {};
if (opts.path) transport.path = opts.path;
else {
    transport.host = opts.host;
    transport.port = opts.port;
}
if (opts.tls) {
    transport.tls = true;
    transport.options = {};
    if (opts.ca) transport.options.ca = opts.ca;
    if (opts.cert) transport.options.cert = opts.cert;
    if (opts.key) transport.options.key = opts.key;
}

const answer = (data, respond) => {
    print({ ev: 'request', data });
    respond({ echo: data, from: 'js' });
};

let peer;
if (opts.role === 'server') {
    const server = new netipc.Server({ ...transport, port: opts.port });
    peer = server;
    server.on('ready', (address) => print({ ev: 'ready', address }));
    server.on('error', (e) => print({ ev: 'error', message: errText(e) }));
    server.on('connect', (c, extras) => print({ ev: 'connect', id: c.id, extras: extras === undefined ? null : extras }));
    server.on('disconnect', (c, reason) => print({ ev: 'disconnect', id: c.id, reason: reason === undefined ? null : errText(reason) }));
    server.on('message', (data, c) => print({ ev: 'message', data: data === undefined ? null : data, id: c.id }));
    server.on('request', (data, respond) => answer(data, respond));
    server.on('close', () => print({ ev: 'close' }));
    await server.start();
} else {
    const client = new netipc.Client({
        ...transport,
        messagepack: Boolean(opts.messagepack),
        compress: Boolean(opts.compress),
        handshake: Boolean(opts.handshake),
        reconnect: opts.reconnect !== undefined ? opts.reconnect : true,
        retries: opts.retries,
    });
    peer = client;
    client.on('ready', (info) => print({ ev: 'ready', id: client.id, info }));
    client.on('error', (e) => print({ ev: 'error', message: errText(e) }));
    client.on('status', (status) => print({ ev: 'status', status }));
    client.on('message', (data) => print({ ev: 'message', data: data === undefined ? null : data }));
    client.on('request', (data, respond) => answer(data, respond));
    client.on('close', (reason) => print({ ev: 'close', reason: reason === undefined || reason === null ? null : errText(reason) }));
    print({ ev: 'ready-to-connect' });
}

const call = (tag, promise) =>
    promise.then(
        (data) => print({ ev: 'response', tag, data: data === undefined ? null : data }),
        (reason) => print({ ev: 'rejected', tag, reason: errText(reason) }),
    );

async function command(cmd) {
    const p = peer;
    switch (cmd.op) {
        case 'connect':
            p.connect(cmd.payload).then(
                () => print({ ev: 'connected', id: p.id }),
                (e) => print({ ev: 'connect-failed', reason: errText(e) }),
            );
            break;
        case 'send':
            if (opts.role === 'server') {
                for (const c of p.connections) await c.send(cmd.data);
            } else {
                await p.send(cmd.data);
            }
            break;
        case 'broadcast':
            await p.broadcast(cmd.data);
            break;
        case 'request': {
            const target = opts.role === 'server' ? p.connections[0] : p;
            call(cmd.tag, target.request(cmd.data, cmd.timeout === undefined ? 10000 : cmd.timeout));
            break;
        }
        case 'ping': {
            const target = opts.role === 'server' ? p.connections[0] : p;
            target.ping(cmd.data).then(
                (ms) => print({ ev: 'pong', tag: cmd.tag, ms }),
                (reason) => print({ ev: 'rejected', tag: cmd.tag, reason: errText(reason) }),
            );
            break;
        }
        case 'survey':
            p.survey(cmd.data, cmd.timeout === undefined ? 10000 : cmd.timeout).then((results) =>
                print({
                    ev: 'survey',
                    tag: cmd.tag,
                    results: results.map((r) => (r.status === 'fulfilled' ? { ok: r.value } : { err: errText(r.reason) })),
                }),
            );
            break;
        case 'close':
            if (opts.role === 'server') await p.close(Boolean(cmd.allowReconnect));
            else await p.close(cmd.reason);
            break;
        case 'destroy':
            p.destroy(cmd.reason);
            break;
        default:
            print({ ev: 'error', message: `unknown op ${cmd.op}` });
            return;
    }
    print({ ev: 'done', op: cmd.op });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
    if (!line.trim()) return;
    command(JSON.parse(line)).catch((e) => print({ ev: 'error', message: errText(e) }));
});
rl.on('close', () => process.exit(0));
