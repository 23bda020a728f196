// The node-express example: an Express server whose answer comes from message.js.
const express = require("express");
const { text } = require("./message");

const app = express();
const port = Number(process.env.PORT || 3000);
app.get("/", (req, res) => res.type("text/plain").send(text + "\n"));
app.listen(port, "127.0.0.1", () => console.log(`express listening on http://127.0.0.1:${port}`));
