// Our CPU backend against Hugging Face transformers (fixtures from test/reference/, computed on the
// GPU machine with transformers 5.17 in float32 from the same generated checkpoints).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { CpuBackend } from "../src/backend/cpu/index.ts";
import { Qwen3 } from "../src/model/qwen3.ts";
import { argmax } from "../src/sample.ts";
import { REFERENCE_MODELS } from "./reference/models.ts";
import { testModel } from "./helpers.ts";

interface Fixture {
  input_ids: number[]; col_stride: number; inv_freq: number[]; attention_scaling: number;
  positions: { top: [number, number][]; cols: number[] }[]; greedy: number[]; greedy_margins: number[];
}

for (const [name, ref] of Object.entries(REFERENCE_MODELS)) {
  describe(`transformers fixture: ${name}`, () => {
    const fx: Fixture = JSON.parse(readFileSync(join(import.meta.dir, "fixtures", `${name}.json`), "utf8"));
    const load = async () => {
      const ck = loadCheckpoint(await testModel(`ref-${name}`, ref.spec, ref.seed));
      return new Qwen3(ck.config, new CpuBackend(), ck);
    };

    test("rope tables equal transformers' (YaRN factor, ramp, attention factor)", async () => {
      const m = await load();
      expect(m.rope.invFreq.length).toBe(fx.inv_freq.length);
      for (let i = 0; i < fx.inv_freq.length; i++) {
        expect(Math.abs(m.rope.invFreq[i]! - fx.inv_freq[i]!)).toBeLessThanOrEqual(1e-7 * Math.abs(fx.inv_freq[i]!) + 1e-12);
      }
      expect(m.rope.attentionFactor).toBeCloseTo(fx.attention_scaling, 6);
    });

    test("logits at every prompt position within 1e-3 (max abs)", async () => {
      const m = await load();
      expect(ref.prompt).toEqual(fx.input_ids);
      const V = m.config.vocabSize;
      const logits = await m.forward(m.newSession(fx.input_ids.length), fx.input_ids, { allPositions: true });
      let worst = 0;
      fx.positions.forEach((p, t) => {
        for (const [id, v] of p.top) worst = Math.max(worst, Math.abs(logits[t * V + id]! - v));
        p.cols.forEach((v, j) => (worst = Math.max(worst, Math.abs(logits[t * V + j * fx.col_stride]! - v))));
      });
      console.log(`${name}: max |ours - transformers| over ${fx.positions.length} positions = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-3);
    });

    test("greedy tokens equal transformers' where the top-2 margin is clear", async () => {
      const m = await load();
      const s = m.newSession(fx.input_ids.length + fx.greedy.length);
      let logits = await m.forward(s, fx.input_ids);
      for (let i = 0; i < fx.greedy.length; i++) {
        if (fx.greedy_margins[i]! < 0.01) break; // a near tie: both answers are right
        expect(argmax(logits)).toBe(fx.greedy[i]!);
        logits = await m.forward(s, [fx.greedy[i]!]);
      }
    });
  });
}
