// The real Bonsai-1.7B (MLX 1-bit) against outputs published from PrismML's MLX fork
// (../shared/reference/bonsai-1.7b-golden.json, copied to test/fixtures). Runs only when
// BONSAI_1_7B_DIR points at a checkpoint; BUNSAI_GOLDEN_BACKEND picks the backend (default auto).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../src/index.ts";
import { argmax } from "../src/sample.ts";
import type { BackendChoice } from "../src/backend/select.ts";

const dir = process.env.BONSAI_1_7B_DIR;
const golden = JSON.parse(readFileSync(join(import.meta.dir, "fixtures", "bonsai-1.7b-golden.json"), "utf8")) as {
  cases: { prompt: string; input_ids: number[]; topk: [number, number][]; greedy: number[]; greedy_text: string }[];
};
if (!dir) console.log("golden: skipped: set BONSAI_1_7B_DIR to a Bonsai-1.7B-mlx-1bit folder to run the real-model test");

describe.skipIf(!dir)("real Bonsai-1.7B golden outputs", () => {
  test("tokenization, top-1, logits within 0.1 and greedy text", async () => {
    const m = await loadModel(dir!, { backend: (process.env.BUNSAI_GOLDEN_BACKEND ?? "auto") as BackendChoice });
    try {
      for (const c of golden.cases) {
        expect(m.tokenizer.encode(c.prompt)).toEqual(c.input_ids);
        const logits = await m.logits(c.input_ids);
        expect(argmax(logits)).toBe(c.topk[0]![0]);
        for (const [id, v] of c.topk) expect(Math.abs(logits[id]! - v)).toBeLessThan(0.1);
        const g = m.generate(c.input_ids, { maxTokens: c.greedy.length, temperature: 0 });
        const toks: number[] = [];
        let r = await g.next();
        while (!r.done) { if (r.value.token !== null) toks.push(r.value.token); r = await g.next(); }
        expect(toks).toEqual(c.greedy);
        expect(r.value.text).toBe(c.greedy_text);
      }
    } finally {
      m.dispose();
    }
  }, 600_000);
});
