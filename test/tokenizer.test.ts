import { beforeAll, describe, expect, test } from "bun:test";
import { TextTokenizer, StreamDecoder } from "../src/tokenizer.ts";
import { PRESETS } from "../src/model/make.ts";
import { testModel } from "./helpers.ts";

let tok: TextTokenizer;
beforeAll(async () => { tok = TextTokenizer.load(await testModel("tiny-seed0", PRESETS.tiny!, 0), [151645]); });

describe("Qwen3 tokenizer and chat template", () => {
  test("encodes like the real Bonsai tokenizer (golden ids)", () => {
    expect(tok.encode("The capital of France is")).toEqual([785, 6722, 315, 9625, 374]);
    expect(tok.encode("<|im_end|>")).toEqual([151645]);
    expect(tok.eosIds).toContain(151645);
  });

  test("system + user conversation renders the Qwen3 template", () => {
    const text = tok.applyChatTemplate([{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }]);
    expect(text).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  });

  test("enable_thinking = false adds the empty think block", () => {
    const text = tok.applyChatTemplate([{ role: "user", content: "Hi" }], { enableThinking: false });
    expect(text.endsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n")).toBe(true);
  });

  test("streaming detokenization never splits a multi-byte character", () => {
    const text = "naïve 你好, 😀 déjà vu 🦀🦀";
    const ids = tok.encode(text);
    // at least one token must end mid-character, or this test would prove nothing
    expect(ids.some((id) => tok.decode([id]).includes("\uFFFD"))).toBe(true);
    const d = tok.stream();
    const parts = ids.map((id) => d.push(id));
    parts.push(d.flush());
    for (const p of parts) expect(p.includes("\uFFFD")).toBe(false);
    expect(parts.join("")).toBe(text);
  });

  test("genuinely invalid bytes are released after a few tokens, not held forever", () => {
    const d = new StreamDecoder(() => "\uFFFD", 3);
    expect(d.push(1)).toBe("");
    expect(d.push(2)).toBe("");
    expect(d.push(3)).toBe("\uFFFD");
  });
});
