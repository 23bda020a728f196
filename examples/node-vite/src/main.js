import { message } from "./message.js";

document.querySelector("#src").textContent = message;
