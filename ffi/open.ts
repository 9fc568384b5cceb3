// Opens the first shared library that loads from a list of candidates, with bun:ffi.
// A missing library is an ordinary condition (no GPU here): the error lists every path tried.

import { dlopen, type Library, type Symbols } from "bun:ffi";

export function openFirst<S extends Symbols>(what: string, candidates: string[], symbols: S): { lib: Library<S>; path: string } {
  const missing: string[] = [], failed: string[] = [];
  for (const path of candidates) {
    try {
      return { lib: dlopen(path, symbols), path };
    } catch (e) {
      const msg = String((e as Error).message).split("\n")[0]!;
      // an absent file is the ordinary case; a file that exists but fails to load (wrong
      // architecture, a missing symbol) is worth its message
      if (/No such file|cannot open shared object/i.test(msg)) missing.push(path);
      else failed.push(`${path}: ${msg}`);
    }
  }
  const parts = [...(missing.length ? [`not found at ${missing.join(", ")}`] : []), ...failed];
  throw new Error(`${what} could not be loaded: ${parts.join("; ")}`);
}

/** A NUL-terminated UTF-8 copy of `s`, for const char* arguments. */
export function cstr(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}
