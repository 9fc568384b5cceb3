// Request bodies of /v1/chat/completions and /v1/completions, validated with zod.
// Unknown fields pass through (clients send many harmless ones); fields whose meaning we cannot
// honour (n > 1, tools, json mode, best_of, echo, suffix) are refused so a client never gets a
// silently different answer.

import { z } from "zod";
import { ApiError } from "./errors.ts";

// OpenAI clients send null for "not set"; treat it as absent.
const opt = <T extends z.ZodTypeAny>(t: T) => t.nullish().transform((v) => v ?? undefined);
const int = () => z.number().int();

const sampling = {
  model: opt(z.string()),
  max_tokens: opt(int().min(1)),
  max_completion_tokens: opt(int().min(1)),
  temperature: opt(z.number().min(0).max(2)),
  top_p: opt(z.number().gt(0).max(1)),
  top_k: opt(int().min(-1)), // -1 = off, as in vLLM
  min_p: opt(z.number().min(0).max(1)),
  repetition_penalty: opt(z.number().gt(0).max(10)),
  presence_penalty: opt(z.number().min(-2).max(2)),
  frequency_penalty: opt(z.number().min(-2).max(2)),
  stop: opt(z.union([z.string(), z.array(z.string()).max(16)], { errorMap: () => ({ message: "must be a string or a list of at most 16 strings" }) })),
  seed: opt(int()),
  stream: opt(z.boolean()),
  stream_options: opt(z.object({ include_usage: opt(z.boolean()) }).passthrough()),
  n: opt(int().min(1)),
  user: opt(z.string()),
};

const content = z.union([z.string(), z.array(z.object({ type: z.string() }).passthrough())], {
  errorMap: () => ({ message: "must be a string or a list of content parts ({type: \"text\", text})" }),
});

const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: opt(content),
  name: opt(z.string()),
}).passthrough();

export const chatRequest = z.object({
  ...sampling,
  messages: z.array(message).min(1),
  logprobs: opt(z.boolean()),
  top_logprobs: opt(int().min(0).max(20)),
  chat_template_kwargs: opt(z.object({ enable_thinking: opt(z.boolean()) }).passthrough()),
  tools: opt(z.array(z.unknown())),
  tool_choice: opt(z.unknown()),
  functions: opt(z.array(z.unknown())),
  response_format: opt(z.object({ type: z.string() }).passthrough()),
}).passthrough();

export const completionRequest = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()), z.array(int().min(0))], {
    errorMap: () => ({ message: "must be a string, a list of one string, or a list of token ids" }),
  }),
  logprobs: opt(int().min(0).max(20)),
  best_of: opt(int().min(1)),
  echo: opt(z.boolean()),
  suffix: opt(z.string()),
}).passthrough();

export type ChatRequest = z.infer<typeof chatRequest>;
export type CompletionRequest = z.infer<typeof completionRequest>;

/** "messages[0].content" from a zod path. */
function paramName(path: (string | number)[]): string | null {
  if (path.length === 0) return null;
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

export function parse<T extends z.ZodTypeAny>(schema: T, body: unknown): z.infer<T> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ApiError(400, "the request body must be a JSON object", null, "invalid_request");
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = paramName(issue.path);
  const value = issue.path.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], body);
  if (value === undefined) throw new ApiError(400, `${param}: is required`, param, "missing_required_parameter");
  throw new ApiError(400, `${param ?? "body"}: ${issue.message.replace(/^./, (c) => c.toLowerCase())}`, param, "invalid_value");
}

const unsupported = (param: string, why: string) => new ApiError(400, `${param}: ${why} is not supported by this server`, param, "unsupported_parameter");

/** Refuses what would change the meaning of a request we cannot honour. */
export function checkSupported(req: ChatRequest | CompletionRequest): void {
  const r = req as { n?: number; tools?: unknown[]; functions?: unknown[]; tool_choice?: unknown; response_format?: { type: string }; best_of?: number; echo?: boolean; suffix?: string };
  if (r.n !== undefined && r.n > 1) throw unsupported("n", "n > 1 (several choices)");
  if (r.tools && r.tools.length > 0) throw unsupported("tools", "tool calling");
  if (r.functions && r.functions.length > 0) throw unsupported("functions", "function calling");
  if (r.tool_choice !== undefined && r.tool_choice !== "none") throw unsupported("tool_choice", "tool calling");
  if (r.response_format && r.response_format.type !== "text") throw unsupported("response_format", `response_format "${r.response_format.type}"`);
  if (r.best_of !== undefined && r.best_of > 1) throw unsupported("best_of", "best_of > 1");
  if (r.echo) throw unsupported("echo", "echo");
  if (r.suffix) throw unsupported("suffix", "suffix (fill in the middle)");
}
