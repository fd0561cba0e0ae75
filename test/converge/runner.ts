import { pino } from 'pino';
import { runConfig, type RunningProcess } from '../../src/commands/run.js';
import { loadConfigFile } from '../../src/config/load.js';
import { runCli, type CliProcess } from '../support/cli.js';

/** How the checker runs cdc-sync between the two sides, and the fault it can inject. */
export interface Runner {
  /** What `kill()` does, as a history step says it. */
  readonly fault: string;
  start(): Promise<void>;
  /**
   * Stops cdc-sync without warning where it can (a fault step then starts it
   * again, from its checkpoints); `everything`: all its processes (before an
   * offline command, at the end).
   */
  stop(everything?: boolean): Promise<void>;
  /** The last log lines, for a failure report. */
  logs(): string;
  /** Every log line (of this and earlier runs of the process) about a row with one of these ids, for a failure report. */
  about(ids: number[]): string;
  /** Base URL of the running process's HTTP server. */
  url(): Promise<string>;
}

/** The CLI as users run it, in its own process: a fault is SIGKILL. */
export class CliRunner implements Runner {
  readonly fault = 'kill -9 cdc-sync, start it again';
  private cli: CliProcess | undefined;
  /** The log of the processes a fault ended (the last few MB of it). */
  private earlier = '';

  constructor(
    private readonly config: string,
    private readonly env: Record<string, string> = {},
  ) {}

  async start(): Promise<void> {
    this.cli = runCli(['run', '--config', this.config], this.env);
    await this.cli.port();
  }

  get running(): boolean {
    return this.cli !== undefined;
  }

  async stop(): Promise<void> {
    const cli = this.cli;
    this.cli = undefined;
    if (cli && cli.child.exitCode === null) {
      cli.child.kill('SIGKILL');
      await cli.exited;
    }
    if (cli) this.earlier = `${this.earlier}${cli.stderr()}`.slice(-4_000_000);
  }

  logs(): string {
    return this.cli?.stderr().slice(-Number(process.env.CONVERGE_LOG_CHARS ?? 1500)) ?? '';
  }

  about(ids: number[]): string {
    return linesAbout(`${this.earlier}${this.cli?.stderr() ?? ''}`.split('\n'), ids);
  }

  async url(): Promise<string> {
    return `http://127.0.0.1:${await this.cli!.port()}`;
  }
}

/**
 * A pair through NATS run as issue 21 deploys it: the publishing stream in one
 * process, the applying stream in another. A fault kills one of them or both,
 * in turn (the publisher, the applier, both), so each dies at points the other
 * does not notice.
 */
export class SplitRunner implements Runner {
  readonly fault = 'kill -9 a cdc-sync process (in turn: the publisher, the applier, both), start it again';
  private kills = 0;

  constructor(
    private readonly publisher: CliRunner,
    private readonly applier: CliRunner,
  ) {}

  async start(): Promise<void> {
    await Promise.all([this.publisher, this.applier].filter((r) => !r.running).map((r) => r.start()));
  }

  async stop(everything = false): Promise<void> {
    const turn = everything ? 2 : this.kills++ % 3;
    if (turn !== 1) await this.publisher.stop();
    if (turn !== 0) await this.applier.stop();
  }

  logs(): string {
    return `(publisher)\n${this.publisher.logs()}\n(applier)\n${this.applier.logs()}`;
  }

  about(ids: number[]): string {
    return [this.publisher.about(ids), this.applier.about(ids)].filter((text) => text !== '').join('\n');
  }

  /** The publishing process: its streams copy and answer status. */
  url(): Promise<string> {
    return this.publisher.url();
  }
}

/**
 * cdc-sync's `run` inside the test's process, for an embedded database
 * (PGlite) that only one process can open: the side's edits and cdc-sync
 * share its one instance, as the demo's writer does. A fault is a stop and
 * a start (the process cannot be killed without the test).
 */
export class InProcessRunner implements Runner {
  readonly fault = 'stop cdc-sync (in the test process), start it again';
  private running: { process: RunningProcess; done: Promise<number> } | undefined;
  private readonly lines: string[] = [];

  constructor(private readonly config: string) {}

  async start(): Promise<void> {
    const log = pino({ level: 'info', base: { app: 'cdc-sync' } }, { write: (line: string) => void this.lines.push(line) });
    let started!: (running: RunningProcess) => void;
    const running = new Promise<RunningProcess>((resolve) => (started = resolve));
    const done = runConfig(loadConfigFile(this.config), { log, started });
    this.running = { process: await Promise.race([running, done.then((code) => Promise.reject(new Error(`cdc-sync ended with ${code}:\n${this.logs()}`)))]), done };
  }

  async stop(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    if (!running) return;
    running.process.stop('fault');
    await running.done;
  }

  logs(): string {
    return this.lines.slice(-10).join('').slice(-1500);
  }

  about(ids: number[]): string {
    return linesAbout(this.lines, ids);
  }

  async url(): Promise<string> {
    return `http://127.0.0.1:${this.running!.process.port}`;
  }
}

/** Log lines whose `key` names one of the ids (cdc-sync logs a row's key, never its values, at info level). */
function linesAbout(lines: string[], ids: number[]): string {
  const named = new RegExp(`"key":\\{[^}]*"id":(${ids.join('|')})[,}]`);
  return lines
    .filter((line) => named.test(line))
    .slice(-40)
    .map((line) => line.trimEnd())
    .join('\n');
}
