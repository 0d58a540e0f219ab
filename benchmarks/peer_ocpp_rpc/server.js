// The Node peer of the benchmark suite: the `ocpp-rpc` package's RPCServer in strict mode
// (every CALL and every answer validated against the OCPP 1.6 JSON schemas, both ways),
// persisting nothing. It answers what benchmarks/peer_ocpp.py answers: BootNotification
// (Accepted), Heartbeat, Authorize and StartTransaction (Accepted; transaction ids counted up
// in memory), StopTransaction, MeterValues and StatusNotification.
//
// Run: node benchmarks/peer_ocpp_rpc/server.js --port 9001 [--host 127.0.0.1]
// (benchmarks/run.py installs ocpp-rpc here with `npm ci` when node_modules/ is missing).
//
// One change from the package's README, as for the Python peer: the HTTP server is made here
// (RPCServer.handleUpgrade, documented) so that it listens with a backlog of 4,096, not
// Node's 511, which drops connection attempts in a storm of 10,000 and measures the kernel's
// retry timer. Keepalive pings every 30 s, as ChargeLedger (the package's default).
'use strict';

const http = require('http');
const { RPCServer } = require('ocpp-rpc');

function option(name, fallback) {
    const at = process.argv.indexOf(`--${name}`);
    return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const host = option('host', '127.0.0.1');
const port = Number(option('port', '9001'));
if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: expected a TCP port, got ${option('port')}`);
    process.exit(2);
}

const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true });
let transactionIds = 0;
const now = () => new Date().toISOString();
const accepted = { status: 'Accepted' };

server.on('client', (client) => {
    client.handle('BootNotification', () => ({ currentTime: now(), interval: 300, status: 'Accepted' }));
    client.handle('Heartbeat', () => ({ currentTime: now() }));
    client.handle('Authorize', () => ({ idTagInfo: accepted }));
    client.handle('StartTransaction', () => ({ transactionId: ++transactionIds, idTagInfo: accepted }));
    client.handle('StopTransaction', () => ({ idTagInfo: accepted }));
    client.handle('MeterValues', () => ({}));
    client.handle('StatusNotification', () => ({}));
});

const httpServer = http.createServer({ noDelay: true }, (request, response) => {
    response.statusCode = 404;
    response.end();
});
httpServer.on('upgrade', server.handleUpgrade);
httpServer.listen({ host, port, backlog: 4096 }, () => {
    console.error(`ocpp-rpc peer listening on ws://${host}:${httpServer.address().port}/ocpp`);
});

process.on('SIGTERM', () => {
    // Stop at once: nothing to save. run.py waits for the exit.
    httpServer.close();
    server.close({ code: 1001, force: true }).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
});
