// Every metal/*.ts kernel file against its cuda/*.ts twin (same file name): the same exports, the same
// geometry constants, the same kernel names, and the same kernel parameters in the same order
// (CUDA parameter i = Metal [[buffer(i)]], same name). Text checks only; they run everywhere.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cudaKernels, kernelFilesOf, mslKernels, stripComments, type KernelSig } from "../metal/stub/parse.ts";
import { FILES, SIGS } from "../src/backend/metal/kernels.ts";
import { CUDA_ONLY } from "../src/backend/kernel-sigs.ts";

const ROOT = join(import.meta.dir, "..");
const tsFiles = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".ts")).sort() : []);
const metalFiles = tsFiles(join(ROOT, "metal"));
const cudaFiles = tsFiles(join(ROOT, "cuda"));

// Kernel arguments that only one dialect spells as parameters: Metal's thread-position builtins.
const argsOf = (k: KernelSig) => k.params.filter((p) => p.attrs.length === 0 || p.bufferIndex !== null);

/** Helper function and macro names a COMMON prelude defines. */
function preludeNames(src: string): string[] {
  const fns = [...src.matchAll(/(?:__forceinline__|\binline)\s+[\w:<>]+\s+(\w+)\s*\(/g)].map((m) => m[1]!);
  const defs = [...src.matchAll(/^#define\s+(\w+)/gm)].map((m) => m[1]!);
  return [...fns, ...defs].sort();
}

// Numeric exports that differ on purpose: the CUDA value they were listed against, the Metal value,
// and why. If cuda/ changes such a constant, the check fails until someone looks at the twin again.
const CONSTANT_DEVIATIONS: Record<string, Record<string, { cuda: number; metal: number; why: string }>> = {
  "attention_prefill_f32.ts": {
    ATT_PREFILL_ROWS: { cuda: 64, metal: 32, why: "32 KiB of threadgroup memory: a 32-row Q tile (16.5 KiB at head_dim 128)" },
    ATT_PREFILL_KEYS: { cuda: 64, metal: 32, why: "32 KiB of threadgroup memory: 32-position K/V and p tiles" },
    ATT_PREFILL_THREADS: { cuda: 256, metal: 128, why: "the same 4-row x 4-key and 4-row x 8-dim work per thread on the halved tiles" },
  },
  "qmv_q1_f32.ts": {
    QMV_MAX_K: { cuda: 12288, metal: 2048, why: "32 KiB of threadgroup memory: the table holds one half slab (16 groups)" },
    qmvMaxSharedBytes: { cuda: 199040, metal: 32768, why: "the table alone, all of Apple's 32 KiB" },
    QMV_RING: { cuda: 12, metal: 4, why: "no cp.async: the ring is in registers, so it is shallow" },
  },
};

describe("Metal kernels twin the CUDA kernels", () => {
  test("listed constant deviations still fit Apple's 32 KiB of threadgroup memory", async () => {
    const m = (await import(join(ROOT, "metal", "qmv_q1_f32.ts"))) as { qmvSharedBytes: (k: number) => number; QMV_MAX_K: number; qmvMaxSharedBytes: number };
    expect(m.qmvSharedBytes(m.QMV_MAX_K)).toBe(m.qmvMaxSharedBytes);
    expect(m.qmvMaxSharedBytes).toBeLessThanOrEqual(32768);
  });

  const cudaOnly = (f: string) => f.replace(/\.ts$/, "") in CUDA_ONLY;
  const missingMetal = cudaFiles.filter((f) => !metalFiles.includes(f) && !cudaOnly(f));
  test("CUDA kernel files without a Metal twin (reported, not failed); CUDA-only ones say why", () => {
    if (missingMetal.length) console.log(`metal-twins: no Metal twin yet for cuda/${missingMetal.join(", cuda/")}`);
    for (const f of cudaFiles.filter(cudaOnly)) {
      expect(metalFiles).not.toContain(f);
      expect(CUDA_ONLY[f.replace(/\.ts$/, "")]!.why.length).toBeGreaterThan(20);
    }
  });

  for (const f of metalFiles) {
    const hasCuda = cudaFiles.includes(f);
    if (!hasCuda) console.log(`metal-twins: skipping metal/${f}: cuda/${f} does not exist (yet)`);

    test.skipIf(!hasCuda)(`${f}: same exports and constants as cuda/${f}`, async () => {
      const m = (await import(join(ROOT, "metal", f))) as Record<string, unknown>;
      const c = (await import(join(ROOT, "cuda", f))) as Record<string, unknown>;
      expect(Object.keys(m).sort()).toEqual(Object.keys(c).sort());
      const listed = CONSTANT_DEVIATIONS[f] ?? {};
      for (const [k, v] of Object.entries(c)) {
        if (typeof v !== "number") continue;
        // a listed constant must still have the CUDA value it was listed against, and the Metal one
        if (listed[k]) expect([k, v, m[k]]).toEqual([k, listed[k]!.cuda, listed[k]!.metal]);
        else expect([k, m[k]]).toEqual([k, v]);
      }
      for (const k of Object.keys(listed)) expect([k, typeof c[k]]).toEqual([k, "number"]);
      if (typeof c.COMMON === "string" && typeof m.COMMON === "string") {
        const have = new Set(preludeNames(m.COMMON));
        for (const n of preludeNames(c.COMMON)) expect(have.has(n) ? "" : `COMMON lacks ${n}`).toBe("");
      }
    });

    test.skipIf(!hasCuda)(`${f}: same kernels with the same parameters as cuda/${f}`, async () => {
      const m = kernelFilesOf((await import(join(ROOT, "metal", f))) as Record<string, unknown>);
      const c = kernelFilesOf((await import(join(ROOT, "cuda", f))) as Record<string, unknown>);
      expect([...m.keys()].sort()).toEqual([...c.keys()].sort());
      for (const [name, ck] of c) {
        const mk = m.get(name)!;
        expect(mk.file).toBe(ck.file);
        expect([...mk.kernels].sort()).toEqual([...ck.kernels].sort());
        const mSigs = mslKernels(mk.source), cSigs = cudaKernels(ck.source);
        // the declared kernel list is what the source defines, in both dialects
        expect(mSigs.map((k) => k.name).sort()).toEqual([...mk.kernels].sort());
        expect(cSigs.map((k) => k.name).sort()).toEqual([...ck.kernels].sort());
        for (const cs of cSigs) {
          const ms = mSigs.find((k) => k.name === cs.name)!;
          const margs = argsOf(ms);
          expect(margs.map((p) => p.name)).toEqual(cs.params.map((p) => p.name));
          expect(margs.map((p) => p.bufferIndex)).toEqual(margs.map((_, i) => i));
        }
      }
    });
  }

  // A cheap drift detector for kernel bodies: the same number of barriers, reductions, f16
  // conversions, loops, unroll hints, branches, returns and shuffles in each twin (prelude excluded).
  // Deliberate differences are listed with their reason.
  const SHAPE: [string, RegExp][] = [
    ["barrier", /__syncthreads\(\)|threadgroup_barrier\(/g], ["warp_sum", /warp_sum\(/g], ["warp_max", /warp_max\(/g],
    ["block_sum", /block_sum\(/g], ["h2f", /h2f\(/g], ["f2h", /f2h\(/g], ["for", /\bfor\s*\(/g],
    ["unroll", /#pragma unroll|_Pragma\("unroll"\)/g], ["if", /\bif\s*\(/g], ["return", /\breturn\b/g], ["shuffle", /__shfl_xor_sync|simd_shuffle_xor/g],
  ];
  const DEVIATIONS: Record<string, { why: string; d: Record<string, number> }[]> = {
    "attention_f32.ts": [
      { why: "attention_partial_f32: CUDA prefetches the value rows of earlier steps into L2 before its PDL wait (prefetch.global.L2, a hint with no Metal form): one loop and two branches", d: { for: -1, unroll: -1, if: -2 } },
      { why: "attention_partial_f32's one-barrier sum: Metal stores each head's 8 sums one by one (CUDA: two float4 stores into its 16-byte aligned array)", d: { for: 1, unroll: 1 } },
    ],
    "attention_prefill_f32.ts": [
      { why: "K/V tiles stay f16 in threadgroup memory: kv_store copies the 16-byte chunks (CUDA's converts them in a loop of 4 words), and a helper kv4 returning 4 converted halves reads them", d: { for: -1, unroll: -1, h2f: 2, return: 1 } },
    ],
    "qmm_q1_f32.ts": [
      { why: "8x8x8 simdgroup matrices instead of m16n8k16 mma.sync: one unhinted loop of 16 k8 steps replaces CUDA's word / k16-half loops and the per-word load loop (kw, wd, h), and P is zeroed per 8x8 matrix, not per element", d: { for: -3, unroll: -4 } },
      { why: "no PTX wrapper returning a value (bits_h2): B's elements are written through thread_elements()", d: { return: -1 } },
      { why: "x halves stored to threadgroup memory one by one (CUDA's cp.async copies 16 bytes)", d: { for: 1, unroll: 1 } },
      { why: "no cp.async on Apple GPUs: each group's tiles are staged through registers one group ahead and written to threadgroup memory between two barriers (CUDA: one barrier per group, the next two groups' copies in flight)", d: { barrier: 1, if: -1 } },
      { why: "qmm_x_split_f32 loads x with scalar loads only (CUDA takes one 16-byte load when the row is aligned)", d: { if: -1 } },
      { why: "lo (matmul variant) tested at run time; CUDA instantiates the body for lo = 0 and 1 and picks one per launch", d: { if: -1 } },
    ],
    "sample_f32.ts": [{
      why: "argmax_f32: no 64-bit atomic max in Metal; simdgroup maxima meet in threadgroup memory (+1 barrier, loop, branch) and the 64-bit key is shuffled as two halves (+1 shuffle)",
      d: { barrier: 1, for: 1, if: 1, shuffle: 1 },
    }],
    "qmv_q1_f32.ts": [
      { why: "no ITS = 2, 3 register path (qmv_rows): the 32 KiB table holds one half slab, K <= 2048", d: { barrier: -1, warp_sum: -1, h2f: -2, for: -8, unroll: -7, if: -3 } },
      { why: "one table size, so the kernel has no ITS dispatch", d: { if: -2 } },
      { why: "sx summed from the table by each lane (group_sx, CUDA's butterfly order) instead of a warp per group through shared memory: no room for sx", d: { for: 1, unroll: 1, warp_sum: -1, if: -1, return: 1 } },
    ],
  };
  for (const f of metalFiles) {
    if (!cudaFiles.includes(f) || f === "common.ts") continue;
    test(`${f}: kernel bodies have the same structure as cuda/${f}`, async () => {
      const shape = (src: string, prelude: string) => {
        const body = stripComments(src.startsWith(prelude) ? src.slice(prelude.length) : src);
        return Object.fromEntries(SHAPE.map(([n, re]) => [n, (body.match(re) ?? []).length]));
      };
      const mc = ((await import(join(ROOT, "metal", "common.ts"))) as { COMMON: string }).COMMON;
      const cc = ((await import(join(ROOT, "cuda", "common.ts"))) as { COMMON: string }).COMMON;
      const m = [...kernelFilesOf((await import(join(ROOT, "metal", f))) as Record<string, unknown>).values()];
      const c = [...kernelFilesOf((await import(join(ROOT, "cuda", f))) as Record<string, unknown>).values()];
      const want = (i: number) => {
        const s = shape(c[i]!.source, cc);
        for (const { d } of DEVIATIONS[f] ?? []) for (const [k, v] of Object.entries(d)) s[k] = s[k]! + v;
        return s;
      };
      m.forEach((kf, i) => expect(shape(kf.source, mc)).toEqual(want(i)));
    });
  }

  test("the Metal backend's argument signatures match its MSL kernels", () => {
    const kinds = (k: KernelSig) => argsOf(k).map((p) => (/[*]/.test(p.text) ? "p" : /\bint\s*&/.test(p.text) ? "i" : /\bfloat\s*&/.test(p.text) ? "f" : "?")).join("");
    const all = FILES.flatMap((kf) => mslKernels(kf.source));
    expect(all.map((k) => k.name).sort()).toEqual(Object.keys(SIGS).sort());
    for (const k of all) expect([k.name, kinds(k)]).toEqual([k.name, SIGS[k.name]!]);
  });

  test("the Metal backend's argument signatures equal the CUDA kernels' parameter kinds", async () => {
    const kind = (t: string) => (t.includes("*") ? "p" : /^(const )?int\b/.test(t) ? "i" : /^(const )?float\b/.test(t) ? "f" : "?");
    const cuda: Record<string, string> = {};
    for (const f of cudaFiles) {
      for (const kf of kernelFilesOf((await import(join(ROOT, "cuda", f))) as Record<string, unknown>).values()) {
        for (const k of cudaKernels(kf.source)) cuda[k.name] = k.params.map((p) => kind(p.text)).join("");
      }
    }
    for (const [name, sig] of Object.entries(SIGS)) if (name in cuda) expect([name, sig]).toEqual([name, cuda[name]!]);
    for (const [name, { sig }] of Object.entries(CUDA_ONLY)) expect([name, sig]).toEqual([name, cuda[name]!]);
    // The CUDA host's own table is the CUDA engineer's; a disagreement there is reported, not failed.
    const cudaHost = join(ROOT, "src", "backend", "cuda", "index.ts");
    if (existsSync(cudaHost)) {
      const block = /const SIGS[^{]*\{([\s\S]*?)\};/.exec(readFileSync(cudaHost, "utf8"))?.[1] ?? "";
      for (const m of block.matchAll(/(\w+):\s*"(\w+)"/g)) {
        if (cuda[m[1]!] !== undefined && cuda[m[1]!] !== m[2]) {
          console.log(`metal-twins: NOTE src/backend/cuda/index.ts SIGS.${m[1]} = "${m[2]}" but cuda/ declares "${cuda[m[1]!]}"`);
        }
      }
    }
  });
});
