module.exports = { text: "hello from node" };
