// objc-shim/bunsai_metal.m parsed and type-checked by clang as Objective-C with ARC, for an arm64
// macOS target, against objc-shim/stub/ (declaration-only stand-ins for the Foundation and Metal
// subset it uses). Catches syntax errors, ARC bridging mistakes, misspelled selectors and wrong
// argument types as far as the stubs model them. It is not a build: only `bun run build:shim` on a
// Mac, against the real SDK, proves the shim compiles. Skips (with the reason) without clang.

import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const SHIM = join(import.meta.dir, "..", "objc-shim");
const hasClang = spawnSync("clang", ["--version"], { encoding: "utf8" }).status === 0;
if (!hasClang) console.log("metal-shim-syntax: clang not found; skipping the Objective-C syntax check of the shim");

test.skipIf(!hasClang)("bunsai_metal.m parses and type-checks (ARC, arm64 macOS target, stub SDK)", () => {
  const r = spawnSync("clang", [
    "-x", "objective-c", "-target", "arm64-apple-macos13", "-fobjc-arc", "-fblocks", "-ffreestanding",
    "-fsyntax-only", "-Wall", "-Werror", "-I", join(SHIM, "stub"), join(SHIM, "bunsai_metal.m"),
  ], { encoding: "utf8" });
  if (r.status !== 0) console.error(r.stderr);
  expect(r.status).toBe(0);
});
