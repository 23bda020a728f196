// The node-vite example's config. Vite reads it once at start (Vite 5 bundles it into
// vite.config.js.timestamp-<ms>-<hash>.mjs beside it, and removes that file), so reload restarts
// Vite when it changes: edit the message below. Vite serves a change to src/ itself (HMR).
import { defineConfig } from "vite";

const message = "hello from the vite config";

export default defineConfig({
  plugins: [
    {
      name: "message",
      transformIndexHtml: (html) => html.replace("%MESSAGE%", message),
    },
  ],
});
