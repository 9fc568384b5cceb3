// The checkpoint's own tokenizer (tokenizer.json) and chat template (tokenizer_config.json),
// through @huggingface/tokenizers and @huggingface/jinja.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
}

export interface ChatOptions {
  addGenerationPrompt?: boolean; // default true
  enableThinking?: boolean; // Qwen3: default true, as in the template
}

export class TokenizerError extends Error {}

function readJson(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new TokenizerError(`${path}: file not found`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new TokenizerError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

export class TextTokenizer {
  private readonly template: Template | null;
  /** Token ids that end generation: the config's EOS plus the tokenizer's eos_token. */
  readonly eosIds: number[];

  private constructor(private readonly tok: Tokenizer, private readonly config: Record<string, unknown>, eos: number[]) {
    const t = config.chat_template;
    this.template = typeof t === "string" ? new Template(t) : null;
    const ids = new Set(eos);
    const named = tokenName(config.eos_token);
    const id = named === undefined ? undefined : tok.token_to_id(named);
    if (id !== undefined) ids.add(id);
    this.eosIds = [...ids];
  }

  static load(dir: string, eosIds: number[] = []): TextTokenizer {
    const tj = readJson(join(dir, "tokenizer.json"));
    const tc = readJson(join(dir, "tokenizer_config.json"));
    try {
      return new TextTokenizer(new Tokenizer(tj, tc), tc, eosIds);
    } catch (e) {
      throw new TokenizerError(`${join(dir, "tokenizer.json")}: cannot build the tokenizer (${(e as Error).message})`);
    }
  }

  get hasChatTemplate(): boolean { return this.template !== null; }

  /** Text -> ids. Special tokens written in the text (e.g. <|im_start|>) become their ids. */
  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: number[], skipSpecial = false): string {
    return this.tok.decode(ids, { skip_special_tokens: skipSpecial });
  }

  tokenText(id: number): string {
    return this.tok.decode([id], { skip_special_tokens: false });
  }

  /** Renders a conversation with the checkpoint's chat template. */
  applyChatTemplate(messages: ChatMessage[], opts: ChatOptions = {}): string {
    if (!this.template) throw new TokenizerError("this tokenizer has no chat_template; use --no-chat-template");
    return this.template.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      enable_thinking: opts.enableThinking ?? true,
      bos_token: tokenName(this.config.bos_token) ?? "",
      eos_token: tokenName(this.config.eos_token) ?? "",
    });
  }

  /** A streaming detokenizer for one generation. */
  stream(): StreamDecoder {
    return new StreamDecoder((ids) => this.decode(ids));
  }
}

function tokenName(t: unknown): string | undefined {
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as { content?: unknown }).content === "string") return (t as { content: string }).content;
  return undefined;
}

/**
 * Turns a stream of token ids into text deltas without ever splitting a multi-byte character:
 * byte-level BPE tokens can end mid-character, which decodes to U+FFFD; such tokens are held
 * until the character completes (or, for genuinely invalid bytes, a few tokens later).
 */
export class StreamDecoder {
  private pending: number[] = [];
  constructor(private readonly decodeFn: (ids: number[]) => string, private readonly maxHold = 8) {}

  push(id: number): string {
    this.pending.push(id);
    const text = this.decodeFn(this.pending);
    if (text.endsWith("\uFFFD") && this.pending.length < this.maxHold) return "";
    this.pending = [];
    return text;
  }

  /** Whatever is still held (at the end of generation). */
  flush(): string {
    if (this.pending.length === 0) return "";
    const text = this.decodeFn(this.pending);
    this.pending = [];
    return text;
  }
}
