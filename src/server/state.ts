// What every handler shares: the model (null while it loads), its admission scheduler and metrics.

import type { Model } from "../index.ts";
import { Metrics } from "./metrics.ts";
import { Scheduler } from "./scheduler.ts";

export interface ServerOptions {
  modelId: string; // the id clients name in `model`
  maxConcurrency: number; // generations running at once
  maxQueue: number; // requests waiting beyond those
  ctx?: number; // tokens per sequence (prompt + completion); default min(model max, 4096)
  apiKey?: string; // when set, /v1/* requires `Authorization: Bearer <key>`
  bodyLimit: number; // bytes
  keepAliveMs: number; // SSE comment interval while a stream has nothing to say
}

export class ServerState {
  model: Model | null = null;
  loadError: string | null = null;
  readonly scheduler: Scheduler;
  readonly metrics: Metrics;
  readonly started = Math.floor(Date.now() / 1000);

  constructor(readonly opts: ServerOptions) {
    this.scheduler = new Scheduler(opts.maxConcurrency, opts.maxQueue);
    this.metrics = new Metrics(() => ({ active: this.scheduler.activeCount, queued: this.scheduler.queueDepth, loaded: this.model !== null }));
  }

  /** Context size of one sequence. */
  get ctx(): number {
    const max = this.model?.config.maxPositionEmbeddings ?? 4096;
    return Math.min(max, this.opts.ctx ?? 4096);
  }
}
