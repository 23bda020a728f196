// The node example: a plain http server (no npm packages).
const http = require("http");
const message = require("./message");
const port = Number(process.env.PORT || 8081);
http
  .createServer((req, res) => res.end(message.text + "\n"))
  .listen(port, "127.0.0.1", () => console.log(`node server listening on http://127.0.0.1:${port}`));
