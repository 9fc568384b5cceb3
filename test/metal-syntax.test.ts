// Every MSL source in metal/*.ts, parsed and type-checked as C++14 against metal/stub/metal_stdlib_stub.h
// with `clang++ -fsyntax-only` (else `g++ -fsyntax-only -x c++`). A syntax and type check, NOT a
// Metal compile: see the stub header and metal/README.md for what it does not prove.

import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { KNOWN_MSL_ATTRS, kernelFilesOf, mslKernels, stripComments } from "../metal/stub/parse.ts";

const METAL = join(import.meta.dir, "..", "metal");
const STUB_DIR = join(METAL, "stub");

function findCompiler(): { cmd: string; flags: string[] } | null {
  const has = (c: string) => spawnSync(c, ["--version"], { encoding: "utf8" }).status === 0;
  if (has("clang++")) return { cmd: "clang++", flags: ["-Wno-unknown-attributes"] };
  if (has("g++")) return { cmd: "g++", flags: ["-Wno-attributes"] };
  return null;
}

const files = readdirSync(METAL).filter((f) => f.endsWith(".ts")).sort();
const sources: { file: string; name: string; src: string }[] = [];
for (const f of files) {
  const mod = (await import(join(METAL, f))) as Record<string, unknown>;
  for (const [name, kf] of kernelFilesOf(mod)) sources.push({ file: f, name, src: kf.source });
}

const cc = findCompiler();
if (!cc) console.log("metal-syntax: neither clang++ nor g++ found; skipping the C++ syntax check of the MSL kernels");

// What leaks from CUDA C into a twin by accident; none of it means anything in MSL.
const CUDA_ISMS = [
  "__global__", "__device__", "__shared__", "__syncthreads", "__shfl", "threadIdx", "blockIdx", "blockDim",
  "gridDim", "__half", "__float2half", "__restrict__", "atomicAdd", "__ldg", "extern \"C\"", "printf",
  "std::", "double", "__launch_bounds__",
];

describe("MSL kernels (Linux checks)", () => {
  test("metal/ holds kernel sources", () => {
    expect(sources.length).toBeGreaterThan(0);
  });

  for (const { file, name, src } of sources) {
    const id = `${file}:${name}`;

    test.skipIf(!cc)(`${id} parses and type-checks as C++ against the Metal stub`, () => {
      // [[threadgroup(i)]] would expand the stub's `threadgroup` macro; rename it to an ignored attribute
      const unit = src.replace("#include <metal_stdlib>", '#include "metal_stdlib_stub.h"').replace(/\[\[\s*threadgroup\s*\(/g, "[[threadgroup_index(");
      const r = spawnSync(
        cc!.cmd,
        ["-fsyntax-only", "-x", "c++", "-std=c++14", "-Wall", "-Werror", ...cc!.flags, "-Wno-unknown-pragmas", "-I", STUB_DIR, "-"],
        { input: unit, encoding: "utf8" },
      );
      if (r.status !== 0) console.error(`${id}:\n${r.stderr}`);
      expect(r.status).toBe(0);
    });

    test(`${id} has no CUDA-isms and only known [[attributes]]`, () => {
      const code = stripComments(src);
      for (const w of CUDA_ISMS) expect(code.includes(w) ? `${w} in ${id}` : "").toBe("");
      for (const m of code.matchAll(/\[\[\s*(\w+)/g)) expect(KNOWN_MSL_ATTRS.has(m[1]!) ? "" : `[[${m[1]}]]`).toBe("");
    });

    test(`${id}: a kernel's position builtins share one width (all uint, or all uint3)`, () => {
      for (const k of mslKernels(src)) {
        const widths = new Set(k.params.filter((p) => p.bufferIndex === null && p.attrs.length > 0 && !/simdgroup|^threadgroup$/.test(p.attrs[0]!))
          .map((p) => /^(uint|ushort)(\d?)\b/.exec(p.text)?.[2] || "1"));
        expect([k.name, widths.size <= 1]).toEqual([k.name, true]);
      }
    });

    test(`${id}: every kernel pointer argument names its address space`, () => {
      // the stub erases address spaces, so a missing one would otherwise pass unseen
      const ks = mslKernels(src);
      expect(ks.length).toBeGreaterThan(0);
      for (const k of ks) {
        for (const p of k.params) {
          if (!/[*&]/.test(p.text)) continue;
          expect(/^(device|constant|threadgroup)\b/.test(p.text) ? "" : `${k.name}: ${p.text}`).toBe("");
        }
      }
    });
  }
});
