export const message = "hello from vite src";
