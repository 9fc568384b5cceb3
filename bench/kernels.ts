// Matvec timings for every Bonsai-8B shape: `reps` back-to-back launches are captured once into a
// CUDA graph and the graph is replayed, timed with CUDA events, so the numbers are GPU time (a
// launch from JS through bun:ffi costs ~5 µs, more than the small kernels take). Bytes = packed
// weights + f16 scales/biases + x + y. Weight sets rotate (> 200 MB in rotation) so consecutive
// launches of one shape do not find their weights in the 50 MB L2.
// --variants fast,legacy picks variants; --shapes 0,2 picks rows of SHAPES.

import { CudaBackend } from "../src/backend/cuda/index.ts";
import type { Buf, Q1Weight } from "../src/backend/backend.ts";
import { Rng } from "../src/util/rng.ts";
import { exactWeight } from "./weights.ts";

const SHAPES: [string, number, number][] = [
  ["q/o proj 4096->4096", 4096, 4096],
  ["k/v proj 4096->1024", 1024, 4096],
  ["gate/up 4096->12288", 12288, 4096],
  ["down 12288->4096", 4096, 12288],
  ["LM head 4096->151669", 151669, 4096],
];

export async function benchKernels(argv: string[]): Promise<void> {
  const arg = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
  const reps = Number(arg("--reps") ?? 200) || 200, replays = 5;
  const variants = (arg("--variants") ?? "fast,legacy").split(",");
  const pick = arg("--shapes")?.split(",").map(Number);
  const b = new CudaBackend();
  const bw = b.info.bandwidth;
  console.log(`GPU: ${b.info.name} (${b.info.arch}, ${b.info.sms} SMs), theoretical bandwidth ${(bw / 1e9).toFixed(0)} GB/s; graph of ${reps} launches, ${replays} replays after 1 warm-up`);
  const rng = new Rng(1);
  const cu = b.cu, e0 = cu.createEvent(), e1 = cu.createEvent();
  for (const [si, [label, N, K]] of SHAPES.entries()) {
    if (pick && !pick.includes(si)) continue;
    const bytes = N * K / 8 + 4 * N * (K / 128) + 4 * K + 4 * N;
    const sets = Math.max(1, Math.min(8, Math.ceil(200e6 / bytes))); // > 200 MB in rotation: no L2 reuse
    const ws: Q1Weight[] = [];
    for (let i = 0; i < sets; i++) ws.push(b.uploadQ1(exactWeight(rng, N, K)));
    const x: Buf = b.upload(Float32Array.from({ length: K }, () => rng.next() - 0.5)), y = b.alloc(N);
    for (const v of variants) {
      b.setKernelVariant("matvec", v);
      const key = {};
      const graph = () => b.replayable(key, () => { for (let i = 0; i < reps; i++) b.matmul(y, x, ws[i % sets]!, 1); });
      graph(); // capture + warm-up
      cu.record(e0, b.stream);
      for (let r = 0; r < replays; r++) graph();
      cu.record(e1, b.stream);
      cu.eventSync(e1);
      const us = (cu.elapsed(e0, e1) * 1e3) / (reps * replays), gbs = bytes / (us * 1e-6) / 1e9;
      console.log(`${label.padEnd(24)} ${v.padEnd(6)} ${us.toFixed(2).padStart(8)} µs ${gbs.toFixed(0).padStart(6)} GB/s ${((100 * gbs * 1e9) / bw).toFixed(1).padStart(5)} %`);
    }
  }
  console.log(`(GPU time per launch inside a CUDA graph, launch gaps included; GPU ${b.info.name})`);
  b.dispose();
}
