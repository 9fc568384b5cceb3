// Per-token log probabilities in the two OpenAI shapes: chat (`content: [{token, logprob, bytes,
// top_logprobs}]`) and legacy completions (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

import type { Step } from "../generate.ts";
import type { TextTokenizer } from "../tokenizer.ts";

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

const enc = new TextEncoder();

export function chatLogprob(tok: TextTokenizer, s: Step): ChatLogprob | null {
  if (s.token === null || s.logprob === undefined) return null;
  const entry = (id: number, logprob: number) => {
    const token = tok.tokenText(id);
    return { token, logprob, bytes: [...enc.encode(token)] };
  };
  return { ...entry(s.token, s.logprob), top_logprobs: (s.topLogprobs ?? []).map((t) => entry(t.token, t.logprob)) };
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/** Appends a step's token to `into`; `offset` is the text length before it. */
export function addCompletionLogprob(tok: TextTokenizer, into: CompletionLogprobs, s: Step, offset: number): void {
  if (s.token === null || s.logprob === undefined) return;
  into.tokens.push(tok.tokenText(s.token));
  into.token_logprobs.push(s.logprob);
  into.top_logprobs.push(Object.fromEntries((s.topLogprobs ?? []).map((t) => [tok.tokenText(t.token), t.logprob])));
  into.text_offset.push(offset);
}

export function emptyCompletionLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}
