// Starts dynalite (an in-memory DynamoDB API) on 127.0.0.1 at a free port chosen by the OS,
// prints the port on stdout, and exits when its stdin closes, i.e. when the test process that
// started it ends, however it ends.
const path = require('path');
const dynalite = require(path.join(__dirname, '..', '..', '..', 'node_modules', 'dynalite'));

// HTTPS with the key and certificate in DYNALITE_TLS_KEY and DYNALITE_TLS_CERT when both are set.
const fs = require('fs');
const tls = process.env.DYNALITE_TLS_KEY && process.env.DYNALITE_TLS_CERT
  ? { ssl: true, key: fs.readFileSync(process.env.DYNALITE_TLS_KEY), cert: fs.readFileSync(process.env.DYNALITE_TLS_CERT) }
  : {};
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...tls });
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
