// Matvec timings for every Bonsai-8B shape: CUDA events around many back-to-back launches after a
// warm-up; bytes = packed weights + f16 scales/biases + x + y. Weight sets rotate so consecutive
// launches of one shape do not find their weights in L2 (the 50 MB L2 holds a few of them).

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
  const reps = Number(argv[argv.indexOf("--reps") + 1] || 200) || 200;
  const b = new CudaBackend();
  const bw = b.info.bandwidth;
  console.log(`GPU: ${b.info.name} (${b.info.arch}, ${b.info.sms} SMs), theoretical bandwidth ${(bw / 1e9).toFixed(0)} GB/s; ${reps} reps after 20 warm-up`);
  const rng = new Rng(1);
  const cu = b.cu, e0 = cu.createEvent(), e1 = cu.createEvent();
  const rows: string[] = [];
  for (const [label, N, K] of SHAPES) {
    const bytes = N * K / 8 + 4 * N * (K / 128) + 4 * K + 4 * N;
    const sets = Math.max(1, Math.min(8, Math.ceil(200e6 / bytes))); // > 200 MB in rotation: no L2 reuse
    const ws: Q1Weight[] = [];
    for (let i = 0; i < sets; i++) ws.push(b.uploadQ1(exactWeight(rng, N, K)));
    const x: Buf = b.upload(Float32Array.from({ length: K }, () => rng.next() - 0.5)), y = b.alloc(N);
    for (const v of ["fast", "legacy"]) {
      b.setKernelVariant("matvec", v);
      for (let i = 0; i < 20; i++) b.matmul(y, x, ws[i % sets]!, 1);
      cu.record(e0, b.stream);
      for (let i = 0; i < reps; i++) b.matmul(y, x, ws[i % sets]!, 1);
      cu.record(e1, b.stream);
      cu.eventSync(e1);
      const us = (cu.elapsed(e0, e1) * 1e3) / reps, gbs = bytes / (us * 1e-6) / 1e9;
      const line = `${label.padEnd(24)} ${v.padEnd(6)} ${us.toFixed(2).padStart(8)} µs ${gbs.toFixed(0).padStart(6)} GB/s ${((100 * gbs * 1e9) / bw).toFixed(1).padStart(5)} %`;
      console.log(line);
      rows.push(line);
    }
  }
  console.log(`(timings include launch gaps between back-to-back launches; GPU ${b.info.name})`);
  b.dispose();
}
