// The Metal shim's C ABI (objc-shim/bunsai_metal.h) against its bun:ffi table (ffi/metal.ts) and its
// implementation (objc-shim/bunsai_metal.m). Runs everywhere: it reads text, it loads nothing.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { METAL_SYMBOLS } from "../ffi/metal.ts";

const SHIM = join(import.meta.dir, "..", "objc-shim");

interface Proto { name: string; ret: string; args: string[] }

/** C type -> bun:ffi type name; null for types the ABI forbids (narrow integers, floats, structs). */
function ffiType(cType: string): string | null {
  const t = cType.replace(/\bconst\b/g, "").replace(/\s+/g, " ").trim();
  if (t.includes("*")) return "ptr";
  return ({ uint64_t: "u64", int64_t: "i64", int32_t: "i32", void: "void" } as Record<string, string>)[t] ?? null;
}

/** "const char *name" -> "const char *" */
const typeOf = (param: string): string => param.trim().replace(/\w+$/, "").trim();

function parse(decls: RegExpMatchArray[]): Proto[] {
  return decls.map((m) => {
    const params = m[3]!.replace(/\s+/g, " ").trim();
    const args = params === "void" || params === "" ? [] : params.split(",").map(typeOf);
    return { ret: m[1]!.trim(), name: m[2]!, args };
  });
}

const header = readFileSync(join(SHIM, "bunsai_metal.h"), "utf8");
const impl = readFileSync(join(SHIM, "bunsai_metal.m"), "utf8");
const declared = parse([...header.matchAll(/^BM_API ([\w\s*]+?)\s*\b(bm_\w+)\(([^)]*)\);/gm)]);
const defined = parse([...impl.matchAll(/^([\w]+\s*\*?)\s*(bm_\w+)\(([^)]*)\)\s*\{/gm)]);

describe("metal shim ABI", () => {
  test("the header declares functions", () => {
    expect(declared.length).toBeGreaterThan(10);
    // every BM_API line was understood (a prototype the regex missed would escape every check)
    expect(declared.length).toBe(header.split("\n").filter((l) => l.startsWith("BM_API")).length);
  });

  test("ffi/metal.ts declares exactly the header's functions", () => {
    expect(Object.keys(METAL_SYMBOLS).sort()).toEqual(declared.map((p) => p.name).sort());
  });

  for (const p of declared) {
    test(`${p.name}: argument and return types match the bun:ffi table`, () => {
      const sym = (METAL_SYMBOLS as Record<string, { args: readonly string[]; returns: string }>)[p.name]!;
      const mapped = p.args.map(ffiType);
      expect(mapped).not.toContain(null); // only pointers and 64-bit integers cross the ABI
      expect([...sym.args]).toEqual(mapped as string[]);
      expect(sym.returns).toBe(ffiType(p.ret)!);
    });

    test(`${p.name}: at most 8 arguments, every integer argument 64-bit`, () => {
      expect(p.args.length).toBeLessThanOrEqual(8);
      for (const a of p.args) expect(["ptr", "u64", "i64"]).toContain(ffiType(a)!);
    });
  }

  test("bunsai_metal.m defines every declared function with the same signature", () => {
    const byName = new Map(defined.map((d) => [d.name, d]));
    for (const p of declared) {
      const d = byName.get(p.name);
      expect(d, `${p.name} is declared but not defined`).toBeDefined();
      expect(d!.args.map(ffiType)).toEqual(p.args.map(ffiType));
      expect(ffiType(d!.ret)).toBe(ffiType(p.ret));
    }
    expect(defined.map((d) => d.name).sort()).toEqual(declared.map((p) => p.name).sort());
  });

  test("every entry point of the shim drains an autorelease pool", () => {
    // bun:ffi calls in from a thread with no pool; each function body must open one.
    for (const m of impl.matchAll(/^[\w]+\s*\*?\s*(bm_\w+)\([^)]*\)\s*\{\s*\n\s*(\S+)/gm)) {
      expect(`${m[1]}: ${m[2]}`).toBe(`${m[1]}: @autoreleasepool`);
    }
  });
});
