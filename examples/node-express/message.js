module.exports = { text: "hello from express" };
