// Differential-test backend on Node's own HTTP parser (llhttp). Prints one
// JSON line per request it parsed ({"m","t","n"}: method, target, body
// bytes) and one per connection it refused ({"error"}), then answers 200.
'use strict';
const http = require('http');

const log = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => {
    log({ m: req.method, t: req.url, n });
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' });
    res.end('ok');
  });
});
// An Upgrade request that nobody accepts is still a request it parsed.
server.on('upgrade', (req, socket) => {
  log({ m: req.method, t: req.url, n: 0 });
  socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
});
server.on('clientError', (err, socket) => {
  if (err.code !== 'ECONNRESET') log({ error: err.code || String(err) });
  socket.destroy();
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 60000;
server.requestTimeout = 0;
server.listen(0, '127.0.0.1', () => log({ port: server.address().port }));
