// Kernel files -> loaded CUDA functions, with an on-disk CUBIN cache.
//
// Cache: .cache/bunsai/kernels/ at the repo root (or $BUNSAI_CACHE_DIR), one file per compiled
// kernel file, keyed by sha256(source, NVRTC options, arch, NVRTC version).
// BUNSAI_NO_KERNEL_CACHE=1 compiles every time and writes nothing.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Nvrtc } from "../../../ffi/nvrtc.ts";
import type { KernelFile } from "../../../cuda/common.ts";

export function kernelCacheDir(): string {
  return process.env.BUNSAI_CACHE_DIR
    ? join(process.env.BUNSAI_CACHE_DIR, "kernels")
    : join(import.meta.dir, "..", "..", "..", ".cache", "bunsai", "kernels");
}

export interface CompileStats { compiled: number; cached: number; ms: number }

/** CUBIN for `kf` on `arch` (e.g. "sm_90"), from the cache when possible. */
export function cubinFor(nvrtc: Nvrtc, kf: KernelFile, arch: string, stats: CompileStats): Uint8Array {
  const options = [`--gpu-architecture=${arch}`, "--std=c++17", "-lineinfo"];
  const useCache = process.env.BUNSAI_NO_KERNEL_CACHE !== "1";
  const key = createHash("sha256").update(kf.source).update("\0" + options.join(" ")).update("\0" + arch).update("\0" + nvrtc.version).digest("hex").slice(0, 24);
  const dir = kernelCacheDir(), path = join(dir, `${kf.file}-${arch}-${key}.cubin`);
  const t0 = performance.now();
  if (useCache && existsSync(path)) {
    stats.cached++;
    const b = readFileSync(path);
    stats.ms += performance.now() - t0;
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const cubin = nvrtc.compile(kf.source, `cuda/${kf.file}.ts`, options);
  stats.compiled++;
  if (useCache) {
    try {
      mkdirSync(dir, { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, cubin);
      renameSync(tmp, path); // atomic: concurrent processes never read a half-written file
    } catch { /* a read-only cache only costs compile time */ }
  }
  stats.ms += performance.now() - t0;
  return cubin;
}
