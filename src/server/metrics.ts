// Server metrics in the Prometheus text format (version 0.0.4).

const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Metrics {
  private readonly requests = new Map<string, number>(); // `${endpoint}\0${status}` -> count
  private readonly finishes = new Map<string, number>(); // finish reason -> count
  promptTokens = 0;
  generatedTokens = 0;
  lastGenerationTps = 0;
  private decodeSeconds = 0;
  private readonly ttftCounts = new Array<number>(TTFT_BUCKETS.length).fill(0);
  private ttftSum = 0;
  private ttftN = 0;

  constructor(private readonly gauges: () => { active: number; queued: number; loaded: boolean }) {}

  request(endpoint: string, status: number): void {
    const k = `${endpoint}\0${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  /** One finished (or aborted) generation. */
  generation(s: { promptTokens: number; generatedTokens: number; finishReason: string; ttftMs: number; generationTps: number }): void {
    this.promptTokens += s.promptTokens;
    this.generatedTokens += s.generatedTokens;
    this.finishes.set(s.finishReason, (this.finishes.get(s.finishReason) ?? 0) + 1);
    if (s.generationTps > 0) {
      this.lastGenerationTps = s.generationTps;
      this.decodeSeconds += (s.generatedTokens - 1) / s.generationTps;
    }
    if (s.generatedTokens > 0) {
      const t = s.ttftMs / 1000;
      TTFT_BUCKETS.forEach((b, i) => { if (t <= b) this.ttftCounts[i]!++; });
      this.ttftSum += t;
      this.ttftN++;
    }
  }

  finishCount(reason: string): number { return this.finishes.get(reason) ?? 0; }

  render(): string {
    const g = this.gauges();
    const out: string[] = [];
    const head = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    head("bunsai_requests_total", "counter", "HTTP requests by endpoint and status code.");
    for (const [k, n] of this.requests) {
      const [endpoint, status] = k.split("\0");
      out.push(`bunsai_requests_total{endpoint="${endpoint}",status="${status}"} ${n}`);
    }
    head("bunsai_generations_total", "counter", "Finished generations by finish reason (abort = client went away).");
    for (const [r, n] of this.finishes) out.push(`bunsai_generations_total{finish_reason="${r}"} ${n}`);
    head("bunsai_prompt_tokens_total", "counter", "Prompt tokens processed.");
    out.push(`bunsai_prompt_tokens_total ${this.promptTokens}`);
    head("bunsai_generation_tokens_total", "counter", "Tokens generated.");
    out.push(`bunsai_generation_tokens_total ${this.generatedTokens}`);
    head("bunsai_generation_tokens_per_second", "gauge", "Decode tokens per second of the last finished generation.");
    out.push(`bunsai_generation_tokens_per_second ${round(this.lastGenerationTps)}`);
    head("bunsai_decode_seconds_total", "counter", "Seconds spent decoding after the first token, summed over generations.");
    out.push(`bunsai_decode_seconds_total ${round(this.decodeSeconds)}`);
    head("bunsai_active_requests", "gauge", "Generations running now.");
    out.push(`bunsai_active_requests ${g.active}`);
    head("bunsai_queue_depth", "gauge", "Requests waiting for a generation slot.");
    out.push(`bunsai_queue_depth ${g.queued}`);
    head("bunsai_model_loaded", "gauge", "1 once the model is loaded.");
    out.push(`bunsai_model_loaded ${g.loaded ? 1 : 0}`);
    head("bunsai_time_to_first_token_seconds", "histogram", "Time from the start of a generation (after queueing) to its first token.");
    TTFT_BUCKETS.forEach((b, i) => out.push(`bunsai_time_to_first_token_seconds_bucket{le="${b}"} ${this.ttftCounts[i]}`));
    out.push(`bunsai_time_to_first_token_seconds_bucket{le="+Inf"} ${this.ttftN}`);
    out.push(`bunsai_time_to_first_token_seconds_sum ${round(this.ttftSum)}`);
    out.push(`bunsai_time_to_first_token_seconds_count ${this.ttftN}`);
    return out.join("\n") + "\n";
  }
}

function round(x: number): number { return Math.round(x * 1e6) / 1e6; }
