#!/usr/bin/env node
import { main } from "./main.js";

// A reader that stops early (`weitiao train … | head`) is not an error: drop the rest of that stream's output and
// carry on, so a training run still finishes and saves its model (instead of dying on an unhandled EPIPE).
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    stream.write = (() => true) as typeof stream.write;
  });
}

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
