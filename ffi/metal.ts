// bun:ffi declarations for objc-shim/bunsai_metal.h, and the loader that finds (or builds) the dylib.
//
// The table below must match the header exactly: test/metal-ffi.test.ts parses the header and
// compares every function, argument and return type against it. C -> FFI type mapping:
//   any pointer -> "ptr", uint64_t -> "u64", int32_t -> "i32", void -> "void".

import { dlopen, type FFIFunction, type Library } from "bun:ffi";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { DYLIB_PATH, SHIM_DIR, buildShim, buildUnavailableReason } from "../objc-shim/build.ts";

export const METAL_SYMBOLS = {
  bm_device_create: { args: ["ptr", "u64"], returns: "ptr" },
  bm_device_info: { args: ["ptr", "ptr", "u64", "ptr"], returns: "i32" },
  bm_queue_create: { args: ["ptr", "ptr", "u64"], returns: "ptr" },
  bm_library_create: { args: ["ptr", "ptr", "u64", "ptr", "u64"], returns: "ptr" },
  bm_pipeline_create: { args: ["ptr", "ptr", "ptr", "ptr", "u64", "ptr", "u64"], returns: "ptr" },
  bm_pipeline_info: { args: ["ptr", "ptr"], returns: "i32" },
  bm_buffer_create: { args: ["ptr", "u64", "ptr", "u64"], returns: "ptr" },
  bm_buffer_wrap: { args: ["ptr", "ptr", "u64", "ptr", "u64"], returns: "ptr" },
  bm_buffer_contents: { args: ["ptr"], returns: "ptr" },
  bm_buffer_length: { args: ["ptr", "ptr"], returns: "i32" },
  bm_cmd_create: { args: ["ptr", "ptr", "u64"], returns: "ptr" },
  bm_cmd_set_pipeline: { args: ["ptr", "ptr"], returns: "i32" },
  bm_cmd_set_buffer: { args: ["ptr", "ptr", "u64", "u64"], returns: "i32" },
  bm_cmd_set_bytes: { args: ["ptr", "ptr", "u64", "u64"], returns: "i32" },
  bm_cmd_set_threadgroup_memory: { args: ["ptr", "u64", "u64"], returns: "i32" },
  bm_cmd_dispatch: { args: ["ptr", "u64", "u64", "u64", "u64", "u64", "u64"], returns: "i32" },
  bm_cmd_commit: { args: ["ptr"], returns: "i32" },
  bm_cmd_wait: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i32" },
  bm_release: { args: ["ptr"], returns: "void" },
} as const satisfies Record<string, FFIFunction>;

export type MetalLib = Library<typeof METAL_SYMBOLS>["symbols"];

/** Status codes of the shim (BM_* in the header). */
export const BM_OK = 0;
export const BM_STATUS: Record<number, string> = {
  [-1]: "bad argument or handle",
  [-2]: "wrong state (command buffer already committed?)",
  [-3]: "GPU error",
};

let loaded: { lib: MetalLib } | { error: string } | undefined;

/** True when the dylib is missing or older than its source, and a toolchain could rebuild it. */
function needsBuild(): boolean {
  if (!existsSync(DYLIB_PATH)) return true;
  const src = join(SHIM_DIR, "bunsai_metal.m");
  return existsSync(src) && statSync(src).mtimeMs > statSync(DYLIB_PATH).mtimeMs && buildUnavailableReason() === null;
}

/**
 * The shim's symbols, or why they cannot be had. Uses the prebuilt dylib; else builds it when
 * `xcrun` exists; else says exactly what is missing. Never throws; the result is cached.
 */
export function loadMetalShim(): { lib: MetalLib } | { error: string } {
  if (loaded) return loaded;
  if (process.platform !== "darwin") {
    return (loaded = { error: `Metal needs macOS; this is ${process.platform}` });
  }
  if (needsBuild()) {
    const why = buildShim();
    if (why !== null && !existsSync(DYLIB_PATH)) {
      return (loaded = { error: `${DYLIB_PATH} is missing and could not be built: ${why}` });
    }
  }
  try {
    loaded = { lib: dlopen(DYLIB_PATH, METAL_SYMBOLS).symbols };
  } catch (e) {
    loaded = { error: `could not load ${DYLIB_PATH}: ${(e as Error).message}` };
  }
  return loaded;
}
