// From a validated request to what the generation loop takes: prompt token ids and options.
// Context overflow is a client error answered before any work starts.

import type { GenerateOptions } from "../generate.ts";
import type { ChatMessage, Model } from "../index.ts";
import { ApiError } from "./errors.ts";
import type { ChatRequest, CompletionRequest } from "./schema.ts";
import type { ServerState } from "./state.ts";

export interface Prepared {
  ids: number[];
  opts: GenerateOptions;
}

type Content = string | { type: string; text?: unknown }[] | undefined;

/** Text of a message's content; only text parts are understood. */
function contentText(c: Content, param: string): string {
  if (c === undefined || typeof c === "string") return c ?? "";
  return c.map((p, i) => {
    if (p.type !== "text" || typeof p.text !== "string") throw new ApiError(400, `${param}[${i}]: only text content parts are supported, got type "${p.type}"`, `${param}[${i}]`, "unsupported_content");
    return p.text;
  }).join("");
}

export function chatPromptIds(model: Model, r: ChatRequest): number[] {
  const messages: ChatMessage[] = r.messages.map((m, i) => {
    const text = contentText(m.content as Content, `messages[${i}].content`);
    if (m.role === "user" && text.trim().length === 0) throw new ApiError(400, `messages[${i}].content: a user message must not be empty`, `messages[${i}].content`, "empty_content");
    return { role: m.role === "developer" ? "system" : m.role, content: text };
  });
  if (!model.tokenizer.hasChatTemplate) throw new ApiError(400, "this model has no chat template; use /v1/completions", "messages", "no_chat_template");
  return model.promptIds(messages, { enableThinking: r.chat_template_kwargs?.enable_thinking ?? true });
}

export function completionPromptIds(model: Model, r: CompletionRequest): number[] {
  const p = r.prompt;
  if (Array.isArray(p) && p.length !== 1 && typeof p[0] === "string") throw new ApiError(400, `prompt: only one prompt per request is supported, got ${p.length}`, "prompt", "unsupported_parameter");
  if (Array.isArray(p) && (p.length === 0 || typeof p[0] === "number")) {
    const V = model.config.vocabSize;
    const ids = p as number[];
    const bad = ids.findIndex((t) => t >= V);
    if (bad >= 0) throw new ApiError(400, `prompt[${bad}]: token id ${ids[bad]} is outside the vocabulary (0..${V - 1})`, "prompt", "invalid_value");
    if (ids.length === 0) throw new ApiError(400, "prompt: must not be empty", "prompt", "empty_content");
    return ids;
  }
  const text = typeof p === "string" ? p : (p[0] as string);
  if (text.length === 0) throw new ApiError(400, "prompt: must not be empty", "prompt", "empty_content");
  return model.tokenizer.encode(text);
}

/** Generation options; throws 400 when prompt + completion cannot fit the context. */
export function prepare(state: ServerState, r: ChatRequest | CompletionRequest, ids: number[], logprobs: number | undefined): Prepared {
  const ctx = state.ctx;
  const asked = r.max_completion_tokens ?? r.max_tokens;
  const param = r.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens";
  if (ids.length >= ctx) {
    throw new ApiError(400, `this model's context holds ${ctx} tokens, but the prompt has ${ids.length} tokens (at least 1 must be left for the completion)`, "messages" in r ? "messages" : "prompt", "context_length_exceeded");
  }
  if (asked !== undefined && ids.length + asked > ctx) {
    throw new ApiError(400, `this model's context holds ${ctx} tokens, but ${ids.length + asked} were requested (${ids.length} in the prompt, ${asked} for the completion)`, param, "context_length_exceeded");
  }
  const maxTokens = asked ?? ctx - ids.length;
  const stop = r.stop === undefined ? undefined : typeof r.stop === "string" ? [r.stop] : r.stop;
  return {
    ids,
    opts: {
      maxTokens,
      ctx: ids.length + maxTokens,
      temperature: r.temperature ?? 1, // OpenAI's default
      topP: r.top_p,
      topK: r.top_k === undefined || r.top_k < 0 ? undefined : r.top_k,
      minP: r.min_p,
      repetitionPenalty: r.repetition_penalty,
      presencePenalty: r.presence_penalty,
      frequencyPenalty: r.frequency_penalty,
      seed: r.seed,
      stop,
      logprobs,
    },
  };
}
