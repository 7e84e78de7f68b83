#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// The benchmark's sending side: a Socket.IO server on 127.0.0.1 that speaks
// to the bridge exactly as Samdock's activities service does (CONNECT,
// the `activities` subscription with the bearer header, EVENT packets), but
// can push N events of ~300 B as fast as the client reads them, or at a
// steady rate, each payload carrying a sequence number and its send time.
//
// Why not tests/server/samdock-server.js: its /_test/emit builds every event
// through socket.io's encoder in one synchronous loop, so at 200k events the
// server itself is the bottleneck and buffers everything in memory before a
// byte leaves. Here the frames are written straight to the WebSocket in
// corked batches, and writing waits for 'drain' once 1 MiB is buffered: the
// sender follows TCP backpressure instead of queueing without limit.
//
// Send times are process.hrtime.bigint(), i.e. CLOCK_MONOTONIC in ns on
// Linux, the same clock bench/subscriber.c reads on arrival.
//
//   node bench/bench-server.js [--port 0] [--token-file FILE]
//       [--ping-interval MS] [--ping-timeout MS] [--activities-path PATH]
//
// Prints {"ready":true,"port":N} once listening. Control API (JSON):
//   POST /_bench/send   {count, rate (events/s, 0 = as fast as possible),
//                        startSeq, event}   -> {started, subscribers, startNs}
//   GET  /_bench/status -> {sending, sent, count, startNs, endNs, drainWaits,
//                           maxBufferedBytes}
//   POST /_test/drop    drops every WebSocket without a close frame, as the
//                       test server's endpoint of the same name does
//   GET  /_test/stats   -> {subscribers, connections, connects, subscriptions,
//                           disconnects}
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { createRequire } = require('module');

// socket.io as pinned by the test server's lock file (npm ci in tests/server)
const requireServer = createRequire(path.join(__dirname, '..', 'tests', 'server', 'package.json'));
const { Server } = requireServer('socket.io');

const HIGH_WATER = 1 << 20;     // bytes buffered per socket before waiting for 'drain'
const BATCH = 256;              // frames per corked write
const TURNS_PER_YIELD = 8;      // batches before giving pings and the control API a turn

function parseArgs(argv) {
    const o = {
        port: 0, token: 'bench-token', pingInterval: 25000, pingTimeout: 20000,
        activitiesPath: '/api/activities/socket.io/',
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const v = argv[i + 1];
        switch (a) {
        case '--port': o.port = Number(v); i++; break;
        case '--token-file': o.token = fs.readFileSync(v, 'utf8').trim(); i++; break;
        case '--ping-interval': o.pingInterval = Number(v); i++; break;
        case '--ping-timeout': o.pingTimeout = Number(v); i++; break;
        case '--activities-path': o.activitiesPath = v; i++; break;
        default:
            process.stderr.write(`bench-server: unknown argument ${a}\n`);
            process.exit(2);
        }
    }
    return o;
}

const opts = parseArgs(process.argv.slice(2));
const stats = { connects: 0, subscriptions: 0, disconnects: 0 };
let job = null;

/* ------------------------------------------------------------------------ */
/* payloads                                                                  */

// A Samdock activity of ~300 B with non-ASCII text, as ActivityAddedEvent
// carries it; bench/ceiling.c formats the very same bytes.
const HEX_PREFIX = '65f0a1b2c3d4e5f6';

function hex8(n) {
    return (n >>> 0).toString(16).padStart(8, '0');
}

function eventFrame(event, seq, sentNs) {
    const payload = '{"_id":"' + HEX_PREFIX + hex8(seq) + '",' +
        '"_tenantID":"5f8d0d55b54764421b7156c9","type":"note",' +
        '"_personIDs":["60a7c1e2f1d2c3b4' + hex8(seq * 7) + '"],' +
        '"_userID":"5f8d0d55b54764421b7156d1",' +
        '"data":{"title":"Rückruf bei Frau Weiß wegen Ölprüfung – 2.500 €"},' +
        '"createdAt":"2026-12-04T09:30:00.000Z","seq":' + seq + ',"t":' + sentNs + '}';
    // Engine.IO MESSAGE (4) + Socket.IO EVENT (2) on the main namespace
    return '42["' + event + '",' + payload + ']';
}

/* ------------------------------------------------------------------------ */
/* Socket.IO                                                                 */

const httpServer = http.createServer(onRequest);
httpServer.keepAliveTimeout = 1000;

const io = new Server(httpServer, {
    path: opts.activitiesPath,
    serveClient: false,
    transports: ['websocket'],
    pingInterval: opts.pingInterval,
    pingTimeout: opts.pingTimeout,
    perMessageDeflate: false,
});

io.on('connection', (socket) => {
    stats.connects++;
    socket.on('disconnect', () => stats.disconnects++);
    socket.on('activities', (arg) => {
        const h = arg && arg.headers;
        if (!h || h.authorization !== `Bearer ${opts.token}`) {
            socket.emit('exception', { status: 'error', message: 'Unauthorized' });
            return;
        }
        socket.join('activities');
        stats.subscriptions++;
    });
});

function subscribers() {
    const list = [];
    const room = io.of('/').adapter.rooms.get('activities');
    if (!room)
        return list;
    for (const id of room) {
        const socket = io.of('/').sockets.get(id);
        const t = socket && socket.conn.transport;
        if (t && t.name === 'websocket' && t.socket && t.socket.readyState === 1)
            list.push(t.socket);
    }
    return list;
}

/* ------------------------------------------------------------------------ */
/* sending                                                                   */

function sendOne(targets, j) {
    const frame = eventFrame(j.event, j.startSeq + j.sent, process.hrtime.bigint());
    for (const ws of targets)
        ws.send(frame);
    j.sent++;
}

function finish(j, error) {
    j.sending = false;
    j.endNs = process.hrtime.bigint();
    j.error = error || null;
}

function pumpFast(j) {
    for (let turn = 0; turn < TURNS_PER_YIELD; turn++) {
        if (j.sent >= j.count)
            return finish(j);
        const targets = subscribers();
        if (targets.length === 0)
            return finish(j, 'no subscriber left');
        for (const ws of targets) {
            const buffered = ws.bufferedAmount;
            if (buffered > j.maxBufferedBytes)
                j.maxBufferedBytes = buffered;
            if (buffered > HIGH_WATER) {
                // The client (or the bus behind it) is slow: wait for TCP.
                j.drainWaits++;
                ws._socket.once('drain', () => pumpFast(j));
                return;
            }
        }
        const n = Math.min(BATCH, j.count - j.sent);
        for (const ws of targets)
            ws._socket.cork();
        for (let i = 0; i < n; i++)
            sendOne(targets, j);
        for (const ws of targets)
            ws._socket.uncork();
    }
    setImmediate(() => pumpFast(j));
}

function pumpPaced(j) {
    const elapsed = Number(process.hrtime.bigint() - j.startNs);
    const due = Math.min(j.count, Math.floor(elapsed * j.rate / 1e9) + 1);
    const targets = subscribers();
    if (targets.length === 0)
        return finish(j, 'no subscriber left');
    while (j.sent < due) {
        for (const ws of targets) {
            const buffered = ws.bufferedAmount;
            if (buffered > j.maxBufferedBytes)
                j.maxBufferedBytes = buffered;
            if (buffered > HIGH_WATER) {
                // Behind schedule because the client stopped reading: wait,
                // then catch up at once (the events stay stamped when sent).
                j.drainWaits++;
                ws._socket.once('drain', () => pumpPaced(j));
                return;
            }
        }
        sendOne(targets, j);
    }
    if (j.sent >= j.count)
        return finish(j);
    setTimeout(() => pumpPaced(j), 1);
}

function startJob(body) {
    if (job && job.sending)
        throw new Error('a send job is running');
    const count = body.count === undefined ? 1 : body.count;
    const rate = body.rate === undefined ? 0 : body.rate;
    if (!Number.isInteger(count) || count < 0 || count > 1e8)
        throw new Error('count must be an integer 0..1e8');
    if (typeof rate !== 'number' || rate < 0)
        throw new Error('rate must be a number >= 0');
    const n = subscribers().length;
    job = {
        count, rate, sent: 0, sending: true,
        startSeq: Number.isInteger(body.startSeq) ? body.startSeq : 0,
        event: typeof body.event === 'string' ? body.event : 'ActivityAddedEvent',
        startNs: process.hrtime.bigint(), endNs: 0n, drainWaits: 0, maxBufferedBytes: 0,
        error: null,
    };
    if (n === 0)
        finish(job, 'no subscriber');
    else if (rate > 0)
        setImmediate(() => pumpPaced(job));
    else
        setImmediate(() => pumpFast(job));
    return { started: n > 0, subscribers: n, startNs: job.startNs.toString() };
}

function jobStatus() {
    if (!job)
        return { sending: false, sent: 0, count: 0 };
    return {
        sending: job.sending, sent: job.sent, count: job.count, error: job.error,
        startNs: job.startNs.toString(), endNs: job.endNs.toString(),
        drainWaits: job.drainWaits, maxBufferedBytes: job.maxBufferedBytes,
    };
}

/* ------------------------------------------------------------------------ */
/* control API                                                               */

function dropAll() {
    let n = 0;
    for (const id of Object.keys(io.engine.clients)) {
        const t = io.engine.clients[id].transport;
        if (t && t.socket) {
            t.socket.terminate();   // the TCP socket goes, no close frame
            n++;
        }
    }
    return { sent: n };
}

const ROUTES = {
    'POST /_bench/send': startJob,
    'GET /_bench/status': jobStatus,
    'POST /_test/drop': dropAll,
    'GET /_test/stats': () => ({
        subscribers: subscribers().length,
        connections: io.of('/').sockets.size,
        ...stats,
    }),
    'GET /_test/health': () => ({ ok: true }),
};

function reply(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
}

function onRequest(req, res) {
    const url = new URL(req.url, 'http://localhost');
    const handler = ROUTES[`${req.method} ${url.pathname}`];
    if (!handler)
        return reply(res, 404, { error: 'not found' });
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        try {
            const text = Buffer.concat(chunks).toString('utf8');
            reply(res, 200, handler(text.trim() ? JSON.parse(text) : {}));
        } catch (e) {
            reply(res, 400, { error: e.message });
        }
    });
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

httpServer.listen(opts.port, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ ready: true, port: httpServer.address().port })}\n`);
});
