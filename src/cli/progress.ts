/**
 * Training progress: a live bar (cli-progress) with ETA, samples/s, running loss and lr when the stream is a
 * terminal; plain log lines every N steps otherwise (CI, pipes), so logs stay readable.
 */
import cliProgress from "cli-progress";
import type { TrainerHooks } from "../train/trainer.js";

export class ProgressReporter {
  private bar: cliProgress.SingleBar | null = null;
  private readonly tty: boolean;
  private epochStarted = 0;
  private samples = 0;
  private runningLoss = 0;
  private stepsInEpoch = 0;
  /** When this process's first epoch began, and the step it began after (a resumed run starts past 0). */
  private runStartedAt: number | null = null;
  private firstStep: number | null = null;

  constructor(private readonly stream: NodeJS.WriteStream, private readonly every: number) {
    this.tty = Boolean(stream.isTTY);
  }

  /** Print a line without tearing the bar. */
  line(text: string): void {
    if (this.bar) {
      this.bar.stop();
      this.stream.write(text + "\n");
      this.bar = null;
      return;
    }
    this.stream.write(text + "\n");
  }

  hooks(): Omit<TrainerHooks, "log"> {
    return {
      onEpochStart: (epoch, steps) => {
        this.epochStarted = Date.now();
        this.runStartedAt ??= this.epochStarted;
        this.samples = 0;
        this.runningLoss = 0;
        this.stepsInEpoch = 0;
        if (this.tty) {
          this.bar?.stop();
          this.bar = new cliProgress.SingleBar({
            format: `epoch ${epoch} |{bar}| {value}/{total} steps | ETA {eta_formatted} (run {runEta}) | {sps} samples/s | loss {loss} | lr {lr}`,
            stream: this.stream,
            hideCursor: true,
          }, cliProgress.Presets.shades_classic);
          this.bar.start(steps, 0, { sps: "-", loss: "-", lr: "-", runEta: "-" });
        }
      },
      onEpochEnd: (_summary, line) => {
        this.done();
        process.stdout.write(line + "\n");
      },
      onStep: ({ step, totalSteps, loss, lr, samples }) => {
        // The run's ETA from this process's pace so far (a resumed run's earlier steps took no time here).
        this.firstStep ??= step - 1;
        const perStep = (Date.now() - (this.runStartedAt ?? Date.now())) / 1000 / Math.max(1, step - this.firstStep);
        const runEta = formatSeconds(perStep * (totalSteps - step));
        this.samples += samples;
        this.stepsInEpoch++;
        this.runningLoss += loss;
        const secs = (Date.now() - this.epochStarted) / 1000;
        const sps = secs > 0 ? (this.samples / secs).toFixed(1) : "-";
        const mean = (this.runningLoss / this.stepsInEpoch).toFixed(4);
        if (this.bar) this.bar.increment(1, { sps, loss: mean, lr: lr.toExponential(2), runEta });
        else if (step % this.every === 0 || step === totalSteps) {
          this.stream.write(`step ${step}/${totalSteps} | loss ${mean} | lr ${lr.toExponential(2)} | ${sps} samples/s | ETA ${runEta}\n`);
        }
      },
    };
  }

  /** Download progress of one file: a bar on a terminal, a line when a file completes otherwise. */
  download(file: string, received: number, total: number): void {
    if (this.tty) {
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar({ format: `${file} |{bar}| {percentage}% {value}/{total} bytes`, stream: this.stream }, cliProgress.Presets.shades_classic);
        this.bar.start(total || 1, 0);
      }
      this.bar.update(received);
      if (received >= total) this.done();
    } else if (total > 0 && received >= total) {
      this.stream.write(`downloaded ${file} (${total} bytes)\n`);
    }
  }

  /** Rows done of a long job (prediction): a bar on a terminal, a line per 10% otherwise. */
  count(what: string, done: number, total: number): void {
    if (this.tty) {
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar({ format: `${what} |{bar}| {value}/{total} rows | ETA {eta_formatted}`, stream: this.stream }, cliProgress.Presets.shades_classic);
        this.bar.start(total, 0);
      }
      this.bar.update(done);
    } else if (Math.floor((done * 10) / total) > Math.floor(((done - 1) * 10) / total) || done === total) {
      this.stream.write(`${what}: ${done}/${total} rows\n`);
    }
  }

  done(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

/** 75 → "1m15s", 3700 → "1h01m". */
function formatSeconds(s: number): string {
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, "0")}m`;
}
