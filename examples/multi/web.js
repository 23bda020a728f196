// The front: asks the API on every request (it is up before this starts: `after`).
const http = require("http");
const port = Number(process.env.PORT || 8084);
const apiPort = Number(process.env.API_PORT || 8083);
http
  .createServer((req, res) => {
    http.get({ host: "127.0.0.1", port: apiPort, path: "/" }, (r) => {
      let body = "";
      r.on("data", (c) => (body += c));
      r.on("end", () => res.end(`web v1 -> ${body}`));
    }).on("error", (e) => res.end(`web v1 -> api unreachable: ${e.message}\n`));
  })
  .listen(port, "127.0.0.1", () => console.log(`web listening on ${port}`));
