// Builds objc-shim/libbunsai_metal.dylib (arm64) from bunsai_metal.m: `bun run build:shim`.
// Also imported by ffi/metal.ts, which builds on first use when no prebuilt dylib is present.

import { spawnSync } from "node:child_process";
import { join } from "node:path";

export const SHIM_DIR = import.meta.dir;
export const DYLIB_PATH = join(SHIM_DIR, "libbunsai_metal.dylib");
const SOURCE = join(SHIM_DIR, "bunsai_metal.m");

/** Why the shim cannot be built here, or null when it can. */
export function buildUnavailableReason(): string | null {
  if (process.platform !== "darwin") {
    return `the Metal shim builds only on macOS (this is ${process.platform}); Metal does not exist elsewhere`;
  }
  const probe = spawnSync("xcrun", ["--find", "clang"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    return "xcrun clang was not found: install the Xcode Command Line Tools (`xcode-select --install`)";
  }
  return null;
}

/** Compiles the dylib; returns null on success or the compiler's complaint. */
export function buildShim(): string | null {
  const why = buildUnavailableReason();
  if (why !== null) return why;
  const args = [
    "clang", "-dynamiclib", "-arch", "arm64", "-O2", "-fobjc-arc", "-Wall",
    "-framework", "Metal", "-framework", "Foundation",
    "-install_name", "@rpath/libbunsai_metal.dylib",
    "-o", DYLIB_PATH, SOURCE,
  ];
  const r = spawnSync("xcrun", args, { encoding: "utf8" });
  if (r.error) return `could not run xcrun: ${r.error.message}`;
  if (r.status !== 0) return `xcrun ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`;
  return null;
}

if (import.meta.main) {
  const err = buildShim();
  if (err !== null) {
    console.error(`build:shim: ${err}`);
    process.exit(1);
  }
  console.log(`build:shim: wrote ${DYLIB_PATH}`);
}
