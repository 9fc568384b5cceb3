// Smoke test of the shim on a Mac: open the default Metal device, print what it reports, and
// compile every metal/*.ts kernel file with the real Metal compiler (pipelines included).
// Runs on any Metal device, paravirtual CI GPUs too; exits non-zero on any failure.
//   bun objc-shim/compile-check.ts

import { loadMetalShim } from "../ffi/metal.ts";
import { MetalDevice } from "../src/backend/metal/device.ts";
import { FILES } from "../src/backend/metal/kernels.ts";

const shim = loadMetalShim();
if ("error" in shim) {
  console.error(`compile-check: ${shim.error}`);
  process.exit(1);
}
const dev = new MetalDevice(shim.lib);
console.log(`device: ${JSON.stringify(dev.info)}`);
let failed = 0;
for (const kf of FILES) {
  try {
    const t0 = performance.now();
    dev.compile(kf.source, kf.kernels, `metal/${kf.file}.ts`);
    const info = kf.kernels.map((k) => { const p = dev.pipeline(k); return `${k} (max ${p.maxThreads} threads, simd ${p.simdWidth})`; });
    console.log(`ok   metal/${kf.file}.ts in ${(performance.now() - t0).toFixed(0)} ms: ${info.join(", ")}`);
  } catch (e) {
    failed++;
    console.error(`FAIL metal/${kf.file}.ts:\n${(e as Error).message}`);
  }
}
dev.dispose();
if (failed) process.exit(1);
