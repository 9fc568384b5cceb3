// Opens the first shared library that loads from a list of candidates, with bun:ffi.
// A missing library is an ordinary condition (no GPU here): the error lists every path tried.

import { dlopen, type Library, type Symbols } from "bun:ffi";

export function openFirst<S extends Symbols>(what: string, candidates: string[], symbols: S): { lib: Library<S>; path: string } {
  const tried: string[] = [];
  for (const path of candidates) {
    try {
      return { lib: dlopen(path, symbols), path };
    } catch (e) {
      tried.push(`${path} (${String((e as Error).message).split("\n")[0]})`);
    }
  }
  throw new Error(`${what} not found; tried: ${tried.join("; ")}`);
}

/** A NUL-terminated UTF-8 copy of `s`, for const char* arguments. */
export function cstr(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}
