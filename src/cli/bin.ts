#!/usr/bin/env node
import { main } from "./main.js";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    // Not a user error: a bug. Keep the stack.
    console.error(e);
    process.exitCode = 2;
  },
);
