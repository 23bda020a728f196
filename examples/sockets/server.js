// The sockets example, Node: `server.listen({ fd: 3 })` serves the socket reload passes. Node
// does not read LISTEN_PID; this checks it, as sd_listen_fds does. On SIGTERM it drains: stops
// accepting, answers every connection it accepted (Connection: close), closes idle keep-alive
// ones, then exits. Not http's server.close(): since Node 19 it also drops connections accepted
// a moment ago whose request is not read yet (their clients would see a reset).
const http = require("http");
const net = require("net");
const fs = require("fs");

const message = fs.readFileSync("message.txt");
let draining = false;
const conns = new Map(); // socket -> requests served so far, -1 while one is in progress

const server = http.createServer((req, res) => {
  conns.set(req.socket, -1);
  res.on("finish", () => conns.has(req.socket) && conns.set(req.socket, 1));
  if (draining) res.setHeader("Connection", "close");
  res.end(message);
});
server.on("connection", (socket) => {
  conns.set(socket, 0);
  socket.on("close", () => conns.delete(socket));
});

const inherited = process.env.LISTEN_FDS && Number(process.env.LISTEN_PID) === process.pid;
server.listen(inherited ? { fd: 3 } : { port: Number(process.env.PORT), host: "127.0.0.1" }, () =>
  console.log(`node: ${inherited ? "serving the inherited socket" : "listening"}`)
);

process.on("SIGTERM", () => {
  draining = true;
  net.Server.prototype.close.call(server, () => process.exit(0));
  for (const [socket, served] of conns) if (served > 0) socket.end(); // idle keep-alive
});
