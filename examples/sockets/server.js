// The sockets example, Node: `server.listen({ fd: 3 })` serves the socket reload passes. Node
// does not read LISTEN_PID; this checks it, as sd_listen_fds does. On SIGTERM the server stops
// accepting and finishes what it accepted.
const http = require("http");
const fs = require("fs");

const message = fs.readFileSync("message.txt");
const server = http.createServer((req, res) => res.end(message));
const inherited = process.env.LISTEN_FDS && Number(process.env.LISTEN_PID) === process.pid;
server.listen(inherited ? { fd: 3 } : { port: Number(process.env.PORT), host: "127.0.0.1" }, () =>
  console.log(`node: ${inherited ? "serving the inherited socket" : "listening"}`)
);
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
