import { readFileSync, readdirSync } from 'node:fs';

/** Linux /proc readings: peak resident set and CPU time of processes. */

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** VmHWM (peak resident set) and VmRSS of a live process, in bytes. */
export function memory(pid: number): { peak: number; current: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(match[1]) * 1024;
  };
  return { peak: kib('VmHWM'), current: kib('VmRSS') };
}

interface Stat {
  pid: number;
  ppid: number;
  /** utime + stime, seconds. */
  cpu: number;
}

function stat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces; everything after the last ')' is fixed.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS };
}

/** CPU seconds used so far by one process (its own threads, not its children). */
export function cpuSeconds(pid: number): number {
  return stat(pid)?.cpu ?? 0;
}

/** CPU seconds per live child of `parent` (PostgreSQL backends and workers of a postmaster). */
export function childrenCpu(parent: number): Map<number, number> {
  const result = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (s && s.ppid === parent) result.set(s.pid, s.cpu);
  }
  return result;
}

/** The postmaster's pid, from postmaster.pid in the data directory. */
export function postmasterPid(dataDir: string): number {
  return Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
}

/** CPU used by children of `parent` between two `childrenCpu` readings (new children count from 0). */
export function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, cpu] of after) total += cpu - (before.get(pid) ?? 0);
  return total;
}

/** Per child of `parent`, CPU used between two readings with its process title (BENCH_WAL_DETAIL). */
export function cpuDetail(before: Map<number, number>, after: Map<number, number>): string[] {
  const lines: string[] = [];
  for (const [pid, cpu] of after) {
    const used = cpu - (before.get(pid) ?? 0);
    if (used < 0.05) continue;
    let title = String(pid);
    try {
      title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      // gone already
    }
    lines.push(`${used.toFixed(2)} s  ${title}`);
  }
  return lines;
}

export interface ProcessCpu {
  comm: string;
  ppid: number;
  cpu: number;
}

/** Every process's command name, parent and CPU seconds. */
export function allProcesses(): Map<number, ProcessCpu> {
  const result = new Map<number, ProcessCpu>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const comm = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    result.set(Number(entry), { comm, ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS });
  }
  return result;
}

/**
 * Watches the CPU every other process uses while the benchmark runs, to say
 * whether the numbers were taken on a busy machine. Processes of `ours`
 * (and their descendants) are not counted.
 */
export class NeighbourWatch {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, ProcessCpu>();
  private readonly ours = new Set<number>();
  private readonly timer: NodeJS.Timeout;
  private readonly started = Date.now();

  constructor(intervalMs = 2000) {
    this.ours.add(process.pid);
    for (const [pid, p] of allProcesses()) this.first.set(pid, p.cpu);
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** A process of the benchmark (postmaster, cdc-sync): it and its children are not neighbours. */
  own(pid: number): void {
    this.ours.add(pid);
  }

  private sample(): void {
    for (const [pid, p] of allProcesses()) {
      if (!this.first.has(pid)) this.first.set(pid, 0);
      this.last.set(pid, p);
    }
  }

  /** Command names that used more than `minShare` of one CPU on average, busiest first. */
  stop(minShare = 0.1): string[] {
    clearInterval(this.timer);
    this.sample();
    const isOurs = (pid: number): boolean => {
      for (let p = pid, depth = 0; p > 1 && depth < 20; depth += 1) {
        if (this.ours.has(p)) return true;
        p = this.last.get(p)?.ppid ?? 0;
      }
      return false;
    };
    const seconds = (Date.now() - this.started) / 1000;
    const byName = new Map<string, number>();
    for (const [pid, p] of this.last) {
      if (isOurs(pid)) continue;
      byName.set(p.comm, (byName.get(p.comm) ?? 0) + p.cpu - (this.first.get(pid) ?? 0));
    }
    return [...byName.entries()]
      .filter(([, cpu]) => cpu / seconds >= minShare)
      .sort((a, b) => b[1] - a[1])
      .map(([name, cpu]) => `${name} (${((cpu / seconds) * 100).toFixed(0)} % of a CPU)`);
  }
}

/** The machine's CPU counters (/proc/stat, all CPUs): the time the hypervisor gave to other guests ("steal"), and the total. */
export function cpuCounters(): { steal: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { steal: fields[7] ?? 0, total: fields.reduce((sum, n) => sum + n, 0) };
}

/** Share of CPU time taken by other guests between two readings (0 on bare metal). */
export function stealShare(before: { steal: number; total: number }, after: { steal: number; total: number }): number {
  const total = after.total - before.total;
  return total > 0 ? (after.steal - before.steal) / total : 0;
}

/** A process's title (its command line), or its pid once it is gone. */
function title(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() || String(pid);
  } catch {
    return String(pid);
  }
}

/**
 * CPU of the children of `parent` and of `others()` sampled every `everyMs`:
 * per interval, the share of one CPU each busy process used. Totals alone
 * hide whether the processes of a pipeline ran at once or waited for each
 * other (BENCH_WAL_TIMELINE).
 */
export class CpuTimeline {
  private readonly samples: { at: number; cpu: Map<number, number> }[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();

  constructor(
    private readonly parent: number,
    private readonly others: () => number[] = () => [],
    everyMs = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  /** Stops sampling; returns the table: one column per process that used at least `minimum` CPU-seconds, then their sum. */
  stop(minimum = 0.2): string[] {
    clearInterval(this.timer);
    this.sample();
    const first = this.samples[0]!.cpu;
    const last = this.samples.at(-1)!.cpu;
    const pids = [...last.keys()].filter((pid) => last.get(pid)! - (first.get(pid) ?? 0) >= minimum);
    pids.sort((a, b) => last.get(b)! - (first.get(b) ?? 0) - (last.get(a)! - (first.get(a) ?? 0)));
    const lines = pids.map((pid, i) => `  [${i + 1}] ${title(pid).slice(0, 90)}`);
    lines.push(`  ${'ms'.padStart(6)} ${pids.map((_, i) => `[${i + 1}]`.padStart(5)).join(' ')}   sum (% of one CPU)`);
    for (let i = 1; i < this.samples.length; i += 1) {
      const [a, b] = [this.samples[i - 1]!, this.samples[i]!];
      const seconds = (b.at - a.at) / 1000;
      const shares = pids.map((pid) => ((b.cpu.get(pid) ?? 0) - (a.cpu.get(pid) ?? b.cpu.get(pid) ?? 0)) / seconds);
      const cells = shares.map((s) => (s * 100).toFixed(0).padStart(5));
      lines.push(`  ${Math.round(b.at).toString().padStart(6)} ${cells.join(' ')}   ${(shares.reduce((x, y) => x + y, 0) * 100).toFixed(0).padStart(3)}`);
    }
    return lines;
  }

  private sample(): void {
    const cpu = childrenCpu(this.parent);
    for (const pid of this.others()) cpu.set(pid, cpuSeconds(pid));
    this.samples.push({ at: performance.now() - this.started, cpu });
  }
}
