// The API: answers with the seed the `seed` task wrote (it must exist: `after` guarantees it).
const http = require("http");
const fs = require("fs");
const seed = fs.readFileSync("data/seed.txt", "utf8").trim();
const port = Number(process.env.PORT || 8083);
http
  .createServer((req, res) => res.end(`api v1 seed ${seed}\n`))
  .listen(port, "127.0.0.1", () => console.log(`api listening on ${port}`));
