// Starts dynalite (an in-memory DynamoDB API) on 127.0.0.1 at a free port chosen by the OS,
// prints the port on stdout, and exits when its stdin closes, i.e. when the test process that
// started it ends, however it ends.
const path = require('path');
const dynalite = require(path.join(__dirname, '..', '..', 'node_modules', 'dynalite'));

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
