#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// A Samdock-like Socket.IO server for samdock-eventd's integration tests,
// benchmarks and demos. One HTTP(S) server carries two Socket.IO servers (the
// activities and the contacts-import microservices) plus a small JSON control
// API under /_test/. See README.md beside this file for the full reference.
//
//   node samdock-server.js [--host 127.0.0.1] [--port 0] [--token TOKEN]
//       [--token-file FILE] [--tls-cert FILE --tls-key FILE] [--eio3]
//       [--auth-mode exception|connect_error|http|http403]
//       [--recovery MS] [--ping-interval MS] [--ping-timeout MS]
//       [--max-payload BYTES] [--activities-path P] [--import-path P]
//       [--demo [--demo-interval MS]] [--quiet]
//
// When listening it prints exactly one line to stdout:
//   {"ready":true,"port":N}
// The token is never printed or logged.
'use strict';

const http = require('http');
const https = require('https');
const fs = require('fs');
const crypto = require('crypto');
const { Server } = require('socket.io');

const ACTIVITY_EVENTS = [
    'ActivityAddedEvent',
    'ActivityEditedEvent',
    'ActivityDeletedEvent',
    'PersonDeletedEvent',
    'OrganizationDeletedEvent',
    'DealDeletedEvent',
    'TaskDeletedEvent',
];
const UNKNOWN_EVENTS = ['ActivityPinnedEvent', 'DealStageChangedEvent', 'CommentAddedEvent'];
const AUTH_MODES = ['exception', 'connect_error', 'http', 'http403'];
const BROWSE_MODES = ['ack', 'event', 'both', 'none'];
const HISTORY = 200;

/* ------------------------------------------------------------------------ */
/* command line                                                              */

function usage(msg) {
    if (msg)
        process.stderr.write(`samdock-server: ${msg}\n`);
    process.stderr.write(
        'usage: node samdock-server.js [--host 127.0.0.1] [--port 0] [--token TOKEN]\n' +
        '         [--token-file FILE] [--tls-cert FILE --tls-key FILE] [--eio3]\n' +
        '         [--auth-mode exception|connect_error|http|http403]\n' +
        '         [--recovery MS] [--ping-interval MS] [--ping-timeout MS]\n' +
        '         [--max-payload BYTES] [--activities-path PATH] [--import-path PATH]\n' +
        '         [--demo [--demo-interval MS]] [--quiet]\n');
    process.exit(2);
}

function parseArgs(argv) {
    const o = {
        host: '127.0.0.1', port: 0, token: 'test-token', tlsCert: null, tlsKey: null,
        eio3: false, recovery: 0, pingInterval: 25000, pingTimeout: 20000,
        maxPayload: 1e6, activitiesPath: '/api/activities/socket.io/',
        importPath: '/api/contacts/import/socket.io/', demo: false, demoInterval: 1000,
        quiet: false, authMode: 'exception',
    };
    const num = (name, v, min) => {
        const n = Number(v);
        if (v === undefined || v === '' || !Number.isInteger(n) || n < min)
            usage(`${name} needs an integer >= ${min}`);
        return n;
    };
    const str = (name, v) => {
        if (v === undefined)
            usage(`${name} needs a value`);
        return v;
    };
    for (let i = 0; i < argv.length; i++) {
        let a = argv[i];
        let v;
        const eq = a.indexOf('=');
        if (a.startsWith('--') && eq > 0) {
            v = a.slice(eq + 1);
            a = a.slice(0, eq);
        }
        const next = () => (v !== undefined ? v : argv[++i]);
        switch (a) {
        case '--host': o.host = str(a, next()); break;
        case '--port': o.port = num(a, next(), 0); break;
        case '--token': o.token = str(a, next()); break;
        case '--token-file': o.token = fs.readFileSync(str(a, next()), 'utf8').trim(); break;
        case '--tls-cert': o.tlsCert = str(a, next()); break;
        case '--tls-key': o.tlsKey = str(a, next()); break;
        case '--eio3': o.eio3 = true; break;
        case '--auth-mode': o.authMode = str(a, next()); break;
        case '--recovery': o.recovery = num(a, next(), 1); break;
        case '--ping-interval': o.pingInterval = num(a, next(), 1); break;
        case '--ping-timeout': o.pingTimeout = num(a, next(), 1); break;
        case '--max-payload': o.maxPayload = num(a, next(), 1); break;
        case '--activities-path': o.activitiesPath = str(a, next()); break;
        case '--import-path': o.importPath = str(a, next()); break;
        case '--demo': o.demo = true; break;
        case '--demo-interval': o.demoInterval = num(a, next(), 1); break;
        case '--quiet': case '-q': o.quiet = true; break;
        case '--help': case '-h': usage(); break;
        default: usage(`unknown argument: ${a}`);
        }
    }
    if (!AUTH_MODES.includes(o.authMode))
        usage(`--auth-mode must be one of ${AUTH_MODES.join(', ')}`);
    if (!!o.tlsCert !== !!o.tlsKey)
        usage('--tls-cert and --tls-key go together');
    for (const k of ['activitiesPath', 'importPath']) {
        if (!o[k].startsWith('/'))
            usage('paths must start with "/"');
        if (!o[k].endsWith('/'))
            o[k] += '/';
    }
    return o;
}

const opts = parseArgs(process.argv.slice(2));

function log(...parts) {
    if (!opts.quiet)
        process.stderr.write(`samdock-server: ${parts.join(' ')}\n`);
}

/* ------------------------------------------------------------------------ */
/* run-time settings and statistics                                          */

const settings = {
    token: opts.token,
    authMode: opts.authMode,
    browseReply: 'ack',
    browseDelayMs: 0,
    pingSilence: false,     // false | true (all connections, new ones too) | "existing"
};

const STREAMS = ['activities', 'import'];
const perStream = (v) => ({ activities: v, import: v });
const stats = {
    connects: perStream(0),          // CONNECT packets received (accepted or not)
    connected: perStream(0),         // CONNECTs accepted
    rejected: perStream(0),          // CONNECTs refused with CONNECT_ERROR
    httpRefused: perStream(0),       // upgrades/handshakes refused in the http modes
    subscriptions: perStream(0),     // successful activities / connectImportID emits
    exceptions: perStream(0),        // "exception" events sent
    recovered: 0,
    emitsReceived: [],
    connectAuth: [],
    disconnects: [],
    browseReplies: [],
};

function remember(list, item) {
    list.push(item);
    if (list.length > HISTORY)
        list.splice(0, list.length - HISTORY);
}

function isAuthorized(arg) {
    if (!arg || typeof arg !== 'object' || Array.isArray(arg))
        return false;
    const h = arg.headers;
    if (!h || typeof h !== 'object')
        return false;
    const v = typeof h.authorization === 'string' ? h.authorization : h.Authorization;
    return typeof v === 'string' && v === `Bearer ${settings.token}`;
}

// A copy of a client's event argument without the token, for /_test/stats.
function redactArg(arg) {
    if (!arg || typeof arg !== 'object' || Array.isArray(arg))
        return arg === undefined ? null : arg;
    let copy;
    try {
        copy = JSON.parse(JSON.stringify(arg));
    } catch (e) {
        copy = {};
    }
    if (copy.headers && typeof copy.headers === 'object') {
        delete copy.headers.authorization;
        delete copy.headers.Authorization;
        if (Object.keys(copy.headers).length === 0)
            delete copy.headers;
    }
    copy.authorized = isAuthorized(arg);
    return copy;
}

function redactAuth(auth) {
    const copy = (auth && typeof auth === 'object') ? { ...auth } : {};
    const had = Object.prototype.hasOwnProperty.call(copy, 'token');
    delete copy.token;
    copy.authorized = had && auth.token === settings.token;
    return copy;
}

/* ------------------------------------------------------------------------ */
/* realistic Samdock payloads                                                */

function rngFrom(seed) {
    // mulberry32 on a 32-bit seed; seed from a string via sha1
    let s = typeof seed === 'number' ? seed >>> 0
        : crypto.createHash('sha1').update(String(seed)).digest().readUInt32LE(0);
    return () => {
        s = (s + 0x6D2B79F5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
const defaultRng = Math.random;

function hexId(rng = defaultRng) {
    let s = '';
    for (let i = 0; i < 24; i++)
        s += Math.floor(rng() * 16).toString(16);
    return s;
}
const pick = (rng, list) => list[Math.floor(rng() * list.length)];

const TENANT_ID = '5f8d0d55b54764421b7156c9';
const USER_IDS = ['5f8d0d55b54764421b7156d1', '60a7c1e2f1d2c3b4a5968778', '61b2aa0c9e4f3d2c1b0a9988'];
const TEXTS = [
    'Café Müller – Angebot 東京 😀',
    'Rückruf bei Frau Weiß wegen Ölprüfung',
    'Größe: 3×4 m – Preis ≤ 2.500 € (zzgl. MwSt.)',
    'Treffen in Zürich; Notizen: „Straße“ ≠ “Strasse” ✓',
    'Обсудить договор — 合同 — عقد 🚀',
    'Tab\tand newline\nand "quotes" and back\\slash',
];
const ACTIVITY_TYPES = ['note', 'call', 'email', 'meeting', 'task', 'dealStageChanged'];

function isoAt(ms) {
    return new Date(ms).toISOString();
}

function makeActivity(rng = defaultRng, over = {}) {
    const type = pick(rng, ACTIVITY_TYPES);
    const created = Date.UTC(2024, 0, 1) + Math.floor(rng() * 300 * 86400) * 1000;
    const data = {
        title: pick(rng, TEXTS),
        text: pick(rng, TEXTS),
    };
    if (type === 'call') {
        data.durationSec = 60 + Math.floor(rng() * 1800);
        data.direction = pick(rng, ['inbound', 'outbound']);
    } else if (type === 'email') {
        data.subject = `Re: ${pick(rng, TEXTS)}`;
        data.to = ['j.mueller@example.com'];
    } else if (type === 'dealStageChanged') {
        data.fromStage = 'Qualifiziert';
        data.toStage = 'Angebot erstellt';
        data.value = Math.round(rng() * 100000) / 100;
    } else if (type === 'meeting') {
        data.location = 'München, Sendlinger Straße 7';
        data.startsAt = isoAt(created + 86400000);
    }
    const a = {
        _id: hexId(rng),
        _tenantID: TENANT_ID,
        type,
        _personIDs: [hexId(rng)],
        _organizationIDs: rng() < 0.7 ? [hexId(rng)] : [],
        _dealID: rng() < 0.5 ? hexId(rng) : null,
        _taskIDs: rng() < 0.3 ? [hexId(rng)] : [],
        _userID: pick(rng, USER_IDS),
        data,
        timestamp: isoAt(created),
        createdAt: isoAt(created),
        updatedAt: isoAt(created + Math.floor(rng() * 3600) * 1000),
    };
    return Object.assign(a, over);
}

function makeEventPayload(name, rng = defaultRng) {
    const now = new Date().toISOString();
    switch (name) {
    case 'ActivityAddedEvent':
        return makeActivity(rng);
    case 'ActivityEditedEvent':
        return makeActivity(rng, { updatedAt: now });
    case 'ActivityDeletedEvent':
        return { _id: hexId(rng), _tenantID: TENANT_ID, _userID: pick(rng, USER_IDS), deletedAt: now };
    case 'PersonDeletedEvent':
        return { _personID: hexId(rng), _tenantID: TENANT_ID, _userID: pick(rng, USER_IDS), timestamp: now };
    case 'OrganizationDeletedEvent':
        return { _organizationID: hexId(rng), _tenantID: TENANT_ID, _userID: pick(rng, USER_IDS), timestamp: now };
    case 'DealDeletedEvent':
        return { _dealID: hexId(rng), _tenantID: TENANT_ID, _userID: pick(rng, USER_IDS), timestamp: now };
    case 'TaskDeletedEvent':
        return { _taskID: hexId(rng), _tenantID: TENANT_ID, _userID: pick(rng, USER_IDS), timestamp: now };
    default:
        // unknown / future events: something activity-like
        return { _id: hexId(rng), _tenantID: TENANT_ID, kind: name, note: pick(rng, TEXTS), timestamp: now };
    }
}

// The browse reply for one id: deterministic, 2 or 3 activities.
function browseList(key, id) {
    const rng = rngFrom(`${key}:${id}`);
    const n = 2 + Math.floor(rng() * 2);
    const list = [];
    for (let i = 0; i < n; i++) {
        const a = makeActivity(rng);
        if (key === '_personID')
            a._personIDs = [String(id)];
        else
            a._organizationIDs = [String(id)];
        list.push(a);
    }
    return list;
}

/* ------------------------------------------------------------------------ */
/* HTTP server, control API                                                  */

function sendJson(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
    });
    res.end(body);
}

class HttpError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let size = 0;
        req.on('data', (c) => {
            size += c.length;
            if (size > 64 * 1024 * 1024) {
                reject(new HttpError(413, 'body too large'));
                req.destroy();
                return;
            }
            chunks.push(c);
        });
        req.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (text.trim() === '')
                return resolve({});
            try {
                const v = JSON.parse(text);
                if (!v || typeof v !== 'object' || Array.isArray(v))
                    return reject(new HttpError(400, 'body must be a JSON object'));
                resolve(v);
            } catch (e) {
                reject(new HttpError(400, `invalid JSON: ${e.message}`));
            }
        });
        req.on('error', reject);
    });
}

async function onRequest(req, res) {
    const url = new URL(req.url, 'http://localhost');
    if (!url.pathname.startsWith('/_test/')) {
        sendJson(res, 404, { statusCode: 404, message: 'Not Found' });
        return;
    }
    const route = `${req.method} ${url.pathname}`;
    const handler = ROUTES[route];
    if (!handler) {
        sendJson(res, 404, { error: `no such control endpoint: ${route}` });
        return;
    }
    try {
        const body = req.method === 'POST' ? await readBody(req) : {};
        const reply = await handler(body, url);
        sendJson(res, 200, reply);
    } catch (e) {
        sendJson(res, e.status || 500, { error: e.message });
    }
}

const httpServer = opts.tlsCert
    ? https.createServer({ cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) }, onRequest)
    : http.createServer(onRequest);
httpServer.keepAliveTimeout = 1000;

/* ------------------------------------------------------------------------ */
/* the two Socket.IO servers                                                 */

function makeIo(stream, path) {
    const io = new Server(httpServer, {
        path,
        serveClient: false,
        transports: ['websocket', 'polling'],
        allowEIO3: opts.eio3,
        // two engine.io servers on one http server: neither may destroy the
        // other's upgrades (unknown paths are answered below)
        destroyUpgrade: false,
        pingInterval: opts.pingInterval,
        pingTimeout: opts.pingTimeout,
        maxHttpBufferSize: opts.maxPayload,
        connectTimeout: 45000,
        connectionStateRecovery: opts.recovery > 0
            ? { maxDisconnectionDuration: opts.recovery, skipMiddlewares: false }
            : undefined,
    });
    io._streamName = stream;

    // "http"/"http403" auth modes: refuse every handshake at the HTTP level
    io.engine.use((req, res, next) => {
        if (settings.authMode !== 'http' && settings.authMode !== 'http403')
            return next();
        stats.httpRefused[stream]++;
        const code = settings.authMode === 'http' ? 401 : 403;
        const text = code === 401 ? 'Unauthorized' : 'Forbidden';
        const body = JSON.stringify({ statusCode: code, message: text });
        log(`${stream}: refusing handshake with HTTP ${code}`);
        if (res instanceof http.ServerResponse) {
            res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
            res.end(body);
        } else {
            // an upgrade: res is engine.io's stand-in, res.socket the raw socket
            const sock = res.socket;
            sock.on('error', () => {});
            if (sock.writable) {
                sock.end(`HTTP/1.1 ${code} ${text}\r\nConnection: close\r\n` +
                         'Content-Type: application/json\r\n' +
                         `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
            }
        }
        // next() is deliberately not called: the request is answered
    });

    io.engine.on('connection', (conn) => wrapEngineSocket(conn, stream));

    io.use((socket, next) => {
        const auth = socket.handshake.auth;
        stats.connects[stream]++;
        const entry = { stream, ...redactAuth(auth), at: Date.now() };
        remember(stats.connectAuth, entry);
        if (settings.authMode === 'connect_error') {
            const ok = auth && typeof auth === 'object' && auth.token === settings.token;
            if (!ok) {
                stats.rejected[stream]++;
                log(`${stream}: CONNECT refused (unauthorized)`);
                return next(new Error('unauthorized'));
            }
        }
        next();
    });

    io.on('connection', (socket) => {
        stats.connected[stream]++;
        if (socket.recovered)
            stats.recovered++;
        log(`${stream}: connected ${socket.id} (EIO${socket.conn.protocol}, ${socket.conn.transport.name}${socket.recovered ? ', recovered' : ''})`);
        socket.on('disconnect', (reason) => {
            remember(stats.disconnects, { stream, reason, at: Date.now() });
            log(`${stream}: disconnected ${socket.id} (${reason})`);
        });
        socket.onAny((event, ...args) => {
            const ack = args.length && typeof args[args.length - 1] === 'function' ? args.pop() : null;
            const arg = args[0];
            const authorized = isAuthorized(arg);
            remember(stats.emitsReceived, {
                stream, event, arg: redactArg(arg), authorized, ack: !!ack, at: Date.now(),
            });
            if (stream === 'activities')
                onActivitiesEmit(socket, event, arg, authorized, ack);
            else
                onImportEmit(socket, event, arg, authorized, ack);
        });
    });
    return io;
}

function sendException(socket, stream) {
    stats.exceptions[stream]++;
    // like NestJS' BaseWsExceptionFilter: a plain event, sent to this socket only
    socket.emit('exception', { status: 'error', message: 'Unauthorized' });
}

function onActivitiesEmit(socket, event, arg, authorized, ack) {
    if (event === 'activities') {
        if (!authorized)
            return sendException(socket, 'activities');
        socket.join('activities');
        stats.subscriptions.activities++;
        return;
    }
    let key;
    if (event === 'activities-by-person')
        key = '_personID';
    else if (event === 'activities-by-organization')
        key = '_organizationID';
    else
        return; // unknown client events are ignored, as NestJS does
    if (!authorized)
        return sendException(socket, 'activities');
    const id = arg && typeof arg === 'object' ? arg[key] : undefined;
    const list = (typeof id === 'string' && id !== '') ? browseList(key, id) : [];
    const mode = settings.browseReply;
    remember(stats.browseReplies, { event, id: id === undefined ? null : id, mode, ack: !!ack, reply: list, at: Date.now() });
    const reply = () => {
        if (!socket.connected)
            return;
        if ((mode === 'ack' || mode === 'both') && ack)
            ack(list);
        if (mode === 'event' || mode === 'both' || (mode === 'ack' && !ack))
            socket.emit(event, list);
    };
    if (mode === 'none')
        return;
    if (settings.browseDelayMs > 0)
        setTimeout(reply, settings.browseDelayMs);
    else
        reply();
}

function onImportEmit(socket, event, arg, authorized, ack) {
    if (event !== 'connectImportID')
        return;
    if (!authorized)
        return sendException(socket, 'import');
    const id = arg && typeof arg === 'object' ? arg._importID : undefined;
    if (typeof id !== 'string' || id === '')
        return;
    socket.join(`import:${id}`);
    stats.subscriptions.import++;
}

/* pingSilence: an engine.io socket that is "frozen" sends nothing at all
 * (no pings, no pongs, no events, not even the open packet of a new
 * connection) and never times its peer out, while the TCP connection stays. */
function wrapEngineSocket(conn, stream) {
    const proto = Object.getPrototypeOf(conn);
    conn._frozen = false;
    conn.sendPacket = function (...a) {
        if (this._frozen)
            return;
        return proto.sendPacket.apply(this, a);
    };
    conn.schedulePing = function (...a) {
        if (this._frozen)
            return;
        return proto.schedulePing.apply(this, a);
    };
    conn.resetPingTimeout = function (...a) {
        if (this._frozen)
            return;
        return proto.resetPingTimeout.apply(this, a);
    };
    if (settings.pingSilence === true) {
        // engine.io's open packet went out already (it is sent before this
        // event), but the CONNECT reply will be swallowed: thaw() drops it
        conn._bornFrozen = true;
        freeze(conn);
    }
}

function freeze(conn) {
    if (conn._frozen)
        return;
    conn._frozen = true;
    clearTimeout(conn.pingIntervalTimer);
    clearTimeout(conn.pingTimeoutTimer);
    conn.pingTimeoutTimer = null;
}

function thaw(conn) {
    if (!conn._frozen)
        return;
    conn._frozen = false;
    if (conn.readyState !== 'open')
        return;
    if (conn._bornFrozen) {
        // its CONNECT reply was swallowed: the client cannot be saved, so
        // drop it and let it reconnect
        const t = conn.transport;
        if (t && t.name === 'websocket' && t.socket)
            t.socket.terminate();
        else
            conn.close(true);
        return;
    }
    if (conn.protocol === 3)
        conn.resetPingTimeout();
    else
        conn.schedulePing();
}

const ios = {
    activities: makeIo('activities', opts.activitiesPath),
    import: makeIo('import', opts.importPath),
};

// Upgrades for any other path: nobody else answers them (destroyUpgrade is off)
httpServer.on('upgrade', (req, socket) => {
    const p = req.url || '';
    if (p.startsWith(opts.activitiesPath) || p.startsWith(opts.importPath))
        return;
    socket.on('error', () => {});
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
});

/* ------------------------------------------------------------------------ */
/* control endpoints                                                         */

function streamOf(body, required = true) {
    const s = body.stream === undefined ? (required ? 'activities' : null) : body.stream;
    if (s !== null && !STREAMS.includes(s))
        throw new HttpError(400, `unknown stream ${JSON.stringify(s)}`);
    return s;
}

function engineClients(stream) {
    const list = [];
    for (const s of stream ? [stream] : STREAMS) {
        const eng = ios[s].engine;
        for (const id of Object.keys(eng.clients))
            list.push(eng.clients[id]);
    }
    return list;
}

function roomFor(stream, body) {
    if (body.room !== undefined) {
        if (typeof body.room !== 'string')
            throw new HttpError(400, 'room must be a string');
        return body.room;
    }
    if (stream === 'activities')
        return 'activities';
    if (typeof body.importID !== 'string' || body.importID === '')
        throw new HttpError(400, 'importID is required for the import stream');
    return `import:${body.importID}`;
}

function roomSize(stream, room) {
    const nsp = ios[stream].of('/');
    if (room === '*')
        return nsp.sockets.size;
    const r = nsp.adapter.rooms.get(room);
    return r ? r.size : 0;
}

function emitTo(stream, room, direct, args) {
    const nsp = ios[stream].of('/');
    if (direct) {
        // per socket: not stored for recovery, no offset appended
        for (const socket of nsp.sockets.values()) {
            if (room === '*' || socket.rooms.has(room))
                socket.emit(...args);
        }
    } else if (room === '*') {
        nsp.emit(...args);
    } else {
        nsp.to(room).emit(...args);
    }
}

function cloneArgs(args) {
    // socket.io's recovery adapter appends the offset to the packet's array,
    // and packets are encoded later: give every emit its own objects
    return args.map((a) => (Buffer.isBuffer(a) ? a : JSON.parse(JSON.stringify(a))));
}

const ROUTES = {
    'POST /_test/emit': (body) => {
        const stream = streamOf(body);
        const event = body.event === undefined ? 'ActivityAddedEvent' : body.event;
        if (typeof event !== 'string' || event === '')
            throw new HttpError(400, 'event must be a non-empty string');
        const count = body.count === undefined ? 1 : body.count;
        if (!Number.isInteger(count) || count < 0 || count > 10000000)
            throw new HttpError(400, 'count must be an integer 0..1e7');
        if (body.args !== undefined && !Array.isArray(body.args))
            throw new HttpError(400, 'args must be an array');
        const room = roomFor(stream, body);
        const sent = roomSize(stream, room);
        const generated = body.payload === undefined && body.args === undefined;
        const returnPayloads = body.returnPayloads !== undefined ? !!body.returnPayloads : count <= 10000;
        const payloads = [];
        for (let i = 0; i < count; i++) {
            let args;
            if (body.args !== undefined) {
                args = body.args;
            } else if (generated) {
                const p = stream === 'import'
                    ? { _importID: body.importID, progress: 0, _tenantID: TENANT_ID }
                    : makeEventPayload(event);
                if (returnPayloads)
                    payloads.push(p);
                args = [p];
            } else {
                args = [body.payload];
            }
            args = cloneArgs(args);
            if (typeof body.binaryBase64 === 'string')
                args.push(Buffer.from(body.binaryBase64, 'base64'));
            emitTo(stream, room, !!body.direct, [event, ...args]);
        }
        const reply = { sent };
        if (generated && returnPayloads)
            reply.payloads = payloads;
        return reply;
    },

    'POST /_test/raw': (body) => {
        const stream = streamOf(body);
        let data;
        let binary = false;
        if (typeof body.frame === 'string') {
            data = body.frame;
        } else if (typeof body.base64 === 'string') {
            data = Buffer.from(body.base64, 'base64');
            binary = true;
        } else {
            throw new HttpError(400, 'need "frame" (text) or "base64" (binary)');
        }
        let sent = 0;
        for (const conn of engineClients(stream)) {
            if (conn.readyState !== 'open' || !conn.transport || conn.transport.name !== 'websocket')
                continue;
            const ws = conn.transport.socket; // the `ws` WebSocket
            if (!ws || ws.readyState !== 1)
                continue;
            ws.send(data, { binary });
            sent++;
        }
        return { sent };
    },

    'POST /_test/drop': (body) => {
        const stream = streamOf(body, false);
        let sent = 0;
        for (const conn of engineClients(stream)) {
            const t = conn.transport;
            if (t && t.name === 'websocket' && t.socket) {
                t.socket.terminate(); // destroys the TCP socket, no close frame
            } else if (conn.request && conn.request.socket) {
                conn.request.socket.destroy();
                conn.close(true);
            } else {
                conn.close(true);
            }
            sent++;
        }
        log(`dropped ${sent} connection(s)`);
        return { sent };
    },

    'POST /_test/disconnect': (body) => {
        const stream = streamOf(body, false);
        let sent = 0;
        for (const s of stream ? [stream] : STREAMS) {
            for (const socket of [...ios[s].of('/').sockets.values()]) {
                socket.disconnect(true);
                sent++;
            }
        }
        log(`disconnected ${sent} socket(s)`);
        return { sent };
    },

    'POST /_test/config': (body) => {
        if (body.token !== undefined) {
            if (typeof body.token !== 'string')
                throw new HttpError(400, 'token must be a string');
            settings.token = body.token;
        }
        if (body.authMode !== undefined) {
            if (!AUTH_MODES.includes(body.authMode))
                throw new HttpError(400, `authMode must be one of ${AUTH_MODES.join(', ')}`);
            settings.authMode = body.authMode;
        }
        if (body.browseReply !== undefined) {
            if (!BROWSE_MODES.includes(body.browseReply))
                throw new HttpError(400, `browseReply must be one of ${BROWSE_MODES.join(', ')}`);
            settings.browseReply = body.browseReply;
        }
        if (body.browseDelayMs !== undefined) {
            if (!Number.isInteger(body.browseDelayMs) || body.browseDelayMs < 0)
                throw new HttpError(400, 'browseDelayMs must be an integer >= 0');
            settings.browseDelayMs = body.browseDelayMs;
        }
        if (body.pingSilence !== undefined) {
            const v = body.pingSilence;
            if (v !== true && v !== false && v !== 'existing')
                throw new HttpError(400, 'pingSilence must be true, false or "existing"');
            settings.pingSilence = v;
            for (const conn of engineClients(null)) {
                if (v)
                    freeze(conn);
                else
                    thaw(conn);
            }
        }
        const { token, ...visible } = settings;
        return { ok: true, ...visible };
    },

    'POST /_test/import': (body) => {
        const id = body.importID;
        if (typeof id !== 'string' || id === '')
            throw new HttpError(400, 'importID is required');
        const steps = body.steps === undefined ? 3 : body.steps;
        if (!Number.isInteger(steps) || steps < 0 || steps > 100000)
            throw new HttpError(400, 'steps must be an integer 0..100000');
        const interval = body.intervalMs === undefined ? 0 : body.intervalMs;
        const room = `import:${id}`;
        const sent = roomSize('import', room);
        const total = 40 * Math.max(steps, 1);
        const fileName = 'Kontakte_Müller_Geschäftspartner_2024.csv';
        const events = [];
        for (let k = 1; k <= steps; k++) {
            events.push(['imported', {
                _importID: id, _tenantID: TENANT_ID, fileName, progress: k / steps,
                step: k, steps, imported: 40 * k, total, timestamp: new Date().toISOString(),
            }]);
        }
        if (body.fail) {
            events.push(['importError', {
                _importID: id, _tenantID: TENANT_ID, fileName, status: 'error',
                message: 'Zeile 17: ungültige E-Mail-Adresse „müller@“ – Import abgebrochen',
                timestamp: new Date().toISOString(),
            }]);
        } else {
            events.push(['importFinished', {
                _importID: id, _tenantID: TENANT_ID, fileName, imported: 40 * steps, failed: 0,
                total: 40 * steps, timestamp: new Date().toISOString(),
            }]);
        }
        const payloads = events.map(([event, payload]) => ({ event, payload }));
        if (interval > 0) {
            let i = 0;
            const t = setInterval(() => {
                const [ev, p] = events[i++];
                emitTo('import', room, false, [ev, ...cloneArgs([p])]);
                if (i >= events.length)
                    clearInterval(t);
            }, interval);
        } else {
            for (const [ev, p] of events)
                emitTo('import', room, false, [ev, ...cloneArgs([p])]);
        }
        return { sent, events: payloads };
    },

    'GET /_test/stats': () => {
        const connections = {};
        const engine = {};
        for (const s of STREAMS) {
            connections[s] = ios[s].of('/').sockets.size;
            engine[s] = ios[s].engine.clientsCount;
        }
        const rooms = {};
        for (const s of STREAMS) {
            for (const [room, members] of ios[s].of('/').adapter.rooms) {
                if (room === 'activities' || room.startsWith('import:'))
                    rooms[room] = members.size;
            }
        }
        return {
            connections,
            engineConnections: engine,
            connects: stats.connects,
            connected: stats.connected,
            rejected: stats.rejected,
            httpRefused: stats.httpRefused,
            subscriptions: stats.subscriptions,
            exceptions: stats.exceptions,
            rooms,
            recovered: stats.recovered,
            emitsReceived: stats.emitsReceived,
            connectAuth: stats.connectAuth,
            disconnects: stats.disconnects,
            browseReplies: stats.browseReplies,
        };
    },

    'POST /_test/reset-stats': () => {
        for (const k of ['connects', 'connected', 'rejected', 'httpRefused', 'subscriptions', 'exceptions'])
            stats[k] = perStream(0);
        stats.recovered = 0;
        for (const k of ['emitsReceived', 'connectAuth', 'disconnects', 'browseReplies'])
            stats[k] = [];
        return { ok: true };
    },

    'GET /_test/health': () => ({ ok: true }),
};

/* ------------------------------------------------------------------------ */
/* demo mode                                                                 */

let demoTimer = null;
function startDemo() {
    let n = 0;
    demoTimer = setInterval(() => {
        let event;
        if (n % 8 === 7)
            event = pick(defaultRng, UNKNOWN_EVENTS);
        else
            event = ACTIVITY_EVENTS[(n - Math.floor(n / 8)) % ACTIVITY_EVENTS.length];
        n++;
        const payload = makeEventPayload(event);
        const reached = roomSize('activities', 'activities');
        const id = payload._id || payload._personID || payload._organizationID ||
            payload._dealID || payload._taskID || '';
        log(`demo: ${event} ${id} -> ${reached} subscriber(s)`);
        emitTo('activities', 'activities', false, [event, payload]);
    }, opts.demoInterval);
}

/* ------------------------------------------------------------------------ */
/* start and stop                                                            */

let stopping = false;
function shutdown(sig) {
    if (stopping)
        return;
    stopping = true;
    log(`${sig}: shutting down`);
    if (demoTimer)
        clearInterval(demoTimer);
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    Promise.allSettled([ios.activities.close(), ios.import.close()]).then(() => {
        if (typeof httpServer.closeAllConnections === 'function')
            httpServer.closeAllConnections();
        process.exit(0);
    });
    if (typeof httpServer.closeIdleConnections === 'function')
        httpServer.closeIdleConnections();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

httpServer.on('error', (e) => {
    process.stderr.write(`samdock-server: ${e.message}\n`);
    process.exit(1);
});

httpServer.listen(opts.port, opts.host, () => {
    const port = httpServer.address().port;
    log(`listening on ${opts.tlsCert ? 'https' : 'http'}://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}` +
        ` (EIO${opts.eio3 ? ' 3+4' : ' 4'}${opts.recovery ? `, recovery ${opts.recovery} ms` : ''})`);
    process.stdout.write(`${JSON.stringify({ ready: true, port })}\n`);
    if (opts.demo)
        startDemo();
});
