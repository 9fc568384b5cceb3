// Prefill attention on CUDA: the split kernels (attention_partial_f32 + the merge "auto" would take)
// against the tiled attention_prefill_f32, GPU time per launch, for choosing PREFILL_TILED_ROWS.
//   bun run bench -- attention [--cases 512:0,128:4000,...]   (T:position, each for the 8B and 1.7B shapes)
// 3 warm-up and 20 timed launches of attention() between two events per case and kernel choice.

import { CudaBackend } from "../src/backend/cuda/index.ts";
import type { AttnShape } from "../src/backend/backend.ts";

const SHAPES: Record<string, AttnShape> = {
  "8b": { nHeads: 32, nKvHeads: 8, headDim: 128 }, "1.7b": { nHeads: 16, nKvHeads: 8, headDim: 128 },
};
const DEFAULT_CASES = "512:0,512:512,512:3584,512:7680,256:0,128:0,64:0,17:0,17:4000,64:4000,128:4000,256:4000";

export async function benchAttention(argv: string[]): Promise<void> {
  const i = argv.indexOf("--cases"), spec = i >= 0 ? argv[i + 1] ?? "" : DEFAULT_CASES;
  const cases = spec.split(",").map((c) => {
    const [T, pos] = c.split(":").map(Number);
    if (!Number.isInteger(T) || !Number.isInteger(pos) || T! < 2 || pos! < 0) throw new Error(`--cases: "${c}" is not T:position with T >= 2, position >= 0`);
    return [T!, pos!] as const;
  });
  const b = new CudaBackend();
  const cu = b.cu, stream = (b as unknown as { stream: bigint }).stream;
  console.log(`GPU: ${b.device}; µs per attention launch, split kernels / tiled`);
  try {
    for (const [name, sh] of Object.entries(SHAPES)) {
      for (const [T, pos] of cases) {
        const cache = b.allocKV(1, pos + T, sh.nKvHeads, sh.headDim);
        const q = b.upload(Float32Array.from({ length: T * sh.nHeads * sh.headDim }, (_, k) => Math.sin(k) * 0.1));
        const o = b.alloc(T * sh.nHeads * sh.headDim);
        b.setStep(pos, new Int32Array(T));
        const res: string[] = [];
        for (const v of [pos + T > 1024 ? "long" : "serial", "tiled"]) {
          b.setKernelVariant("attention", v);
          for (let k = 0; k < 3; k++) b.attention(o, q, sh, cache, 0, T);
          const e0 = cu.createEvent(), e1 = cu.createEvent(), n = 20;
          cu.record(e0, stream);
          for (let k = 0; k < n; k++) b.attention(o, q, sh, cache, 0, T);
          cu.record(e1, stream);
          b.sync();
          res.push(`${v} ${((cu.elapsed(e0, e1) * 1000) / n).toFixed(1)}`);
        }
        console.log(`${name.padEnd(5)} T=${String(T).padEnd(4)} at ${String(pos).padEnd(5)} ${res.join(" / ")} µs`);
      }
    }
  } finally {
    b.setKernelVariant("attention", "auto");
    b.dispose();
  }
}
