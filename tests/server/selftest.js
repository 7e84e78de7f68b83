#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// Checks samdock-server.js with the official socket.io-client (a
// devDependency): npm run selftest. Starts its own server on 127.0.0.1.
'use strict';

const { spawn } = require('child_process');
const http = require('http');
const assert = require('assert');
const path = require('path');
const { io } = require('socket.io-client');

const TOKEN = 'selftest-token';

function control(port, method, route, body) {
    return new Promise((resolve, reject) => {
        const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
        const req = http.request({ host: '127.0.0.1', port, path: route, method,
            headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} },
        (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c) => { text += c; });
            res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text))
                : reject(new Error(`${route}: HTTP ${res.statusCode} ${text}`))));
        });
        req.on('error', reject);
        req.end(data);
    });
}

function startServer(args) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [path.join(__dirname, 'samdock-server.js'),
            '--port', '0', '--token', TOKEN, '--quiet', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d) => {
            out += d;
            const nl = out.indexOf('\n');
            if (nl >= 0)
                resolve({ child, port: JSON.parse(out.slice(0, nl)).port });
        });
        child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
}

const once = (emitter, ev) => new Promise((resolve) => emitter.once(ev, (...a) => resolve(a)));
const headers = { headers: { authorization: `Bearer ${TOKEN}` } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
    const { child, port } = await startServer(['--recovery', '60000']);
    const url = `http://127.0.0.1:${port}`;
    try {
        const sock = io(url, { path: '/api/activities/socket.io/', transports: ['websocket'],
            auth: { token: TOKEN }, reconnectionDelay: 100, reconnectionDelayMax: 200 });
        await once(sock, 'connect');
        sock.emit('activities', headers);
        // browse with an ack
        const list = await sock.timeout(5000).emitWithAck('activities-by-person', { _personID: 'p-1', ...headers });
        assert.ok(list.length >= 2 && list.every((a) => a._personIDs[0] === 'p-1'));
        // a generated event
        const got = once(sock, 'ActivityAddedEvent');
        const r = await control(port, 'POST', '/_test/emit', { event: 'ActivityAddedEvent' });
        assert.strictEqual(r.sent, 1);
        assert.deepStrictEqual((await got)[0], r.payloads[0]);
        // recovery: events missed while the connection was down are replayed
        await control(port, 'POST', '/_test/drop', {});
        const missed = await control(port, 'POST', '/_test/emit', { event: 'PersonDeletedEvent', count: 2 });
        const replay = [];
        sock.on('PersonDeletedEvent', (p) => replay.push(p));
        await once(sock, 'connect');
        assert.strictEqual(sock.recovered, true);
        for (let i = 0; i < 50 && replay.length < 2; i++)
            await sleep(20);
        assert.deepStrictEqual(replay, missed.payloads);
        // a server-side DISCONNECT: the client stops reconnecting by itself
        const gone = once(sock, 'disconnect');
        await control(port, 'POST', '/_test/disconnect', {});
        assert.strictEqual((await gone)[0], 'io server disconnect');
        sock.close();
        // import stream
        const imp = io(url, { path: '/api/contacts/import/socket.io/', transports: ['websocket'],
            auth: { token: TOKEN } });
        await once(imp, 'connect');
        imp.emit('connectImportID', { _importID: 'i-1', ...headers });
        for (let i = 0; i < 50 && (await control(port, 'GET', '/_test/stats')).subscriptions.import < 1; i++)
            await sleep(20);
        const events = [];
        imp.onAny((ev) => events.push(ev));
        await control(port, 'POST', '/_test/import', { importID: 'i-1', steps: 2 });
        for (let i = 0; i < 50 && events.length < 3; i++)
            await sleep(20);
        assert.deepStrictEqual(events, ['imported', 'imported', 'importFinished']);
        imp.close();
        // connect_error mode
        await control(port, 'POST', '/_test/config', { authMode: 'connect_error' });
        const bad = io(url, { path: '/api/activities/socket.io/', transports: ['websocket'],
            auth: { token: 'wrong' }, reconnection: false });
        const [err] = await once(bad, 'connect_error');
        assert.strictEqual(err.message, 'unauthorized');
        bad.close();
        const st = await control(port, 'GET', '/_test/stats');
        assert.ok(!JSON.stringify(st).includes(TOKEN));
        console.log('selftest: ok');
    } finally {
        child.kill('SIGTERM');
        const [code] = await once(child, 'exit');
        assert.strictEqual(code, 0);
    }
}

main().catch((e) => {
    console.error('selftest: FAILED:', e);
    process.exit(1);
});
