// Splits Qwen3 output into reasoning and answer: text inside a leading <think>...</think> goes to
// `reasoning_content`, the rest to `content`. Works on streamed deltas: a tag split across deltas
// is held back until it is complete or clearly not a tag.

const OPEN = "<think>", CLOSE = "</think>";

export interface Split { reasoning: string; content: string }

export class ReasoningSplitter {
  private state: "start" | "thinking" | "answer" = "start";
  private held = ""; // text not yet assigned to either side
  private trimAnswer = false; // drop the newlines that follow </think>
  private trimReasoning = false; // drop the newline that follows <think>

  push(delta: string): Split {
    this.held += delta;
    const out: Split = { reasoning: "", content: "" };
    for (;;) {
      if (this.state === "start") {
        const t = this.held.trimStart();
        if (t.startsWith(OPEN)) { this.held = t.slice(OPEN.length); this.state = "thinking"; this.trimReasoning = true; continue; }
        if (t.length === 0 || OPEN.startsWith(t)) return out; // maybe the start of <think>
        this.state = "answer";
        continue;
      }
      if (this.state === "thinking") {
        if (this.trimReasoning) {
          this.held = this.held.replace(/^\n+/, "");
          if (this.held.length === 0) return out;
          this.trimReasoning = false;
        }
        const i = this.held.indexOf(CLOSE);
        if (i >= 0) {
          out.reasoning += this.held.slice(0, i).replace(/\n+$/, "");
          this.held = this.held.slice(i + CLOSE.length);
          this.state = "answer";
          this.trimAnswer = true;
          continue;
        }
        const keep = partialSuffix(this.held, CLOSE);
        // newlines right before </think> are dropped, so hold trailing ones back as well
        const cut = this.held.length - keep - (this.held.slice(0, this.held.length - keep).match(/\n*$/)![0].length);
        out.reasoning += this.held.slice(0, cut);
        this.held = this.held.slice(cut);
        return out;
      }
      if (this.trimAnswer) {
        this.held = this.held.replace(/^\n+/, "");
        if (this.held.length === 0) return out;
        this.trimAnswer = false;
      }
      out.content += this.held;
      this.held = "";
      return out;
    }
  }

  /** Whatever is held at the end of generation. */
  flush(): Split {
    const rest = this.held;
    this.held = "";
    if (this.state === "thinking") return { reasoning: rest.replace(/\n+$/, ""), content: "" };
    if (this.state === "answer" && this.trimAnswer) return { reasoning: "", content: rest.replace(/^\n+/, "") };
    return { reasoning: "", content: rest };
  }
}

/** Length of the longest suffix of `s` that is a proper prefix of `tag`. */
function partialSuffix(s: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, s.length); n > 0; n--) if (tag.startsWith(s.slice(s.length - n))) return n;
  return 0;
}
