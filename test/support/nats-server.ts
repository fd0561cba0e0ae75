// A private NATS JetStream cluster for tests and benchmarks: three `nats-server` processes (Debian's package) on
// loopback, each with its own store directory, routed to each other, so streams can have 3 replicas
// and one node can be stopped under a running stream.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, logTail } from './free-port.js';

const HOST = '127.0.0.1';

export interface NatsNode {
  name: string;
  port: number;
  clusterPort: number;
  url: string;
}

export interface NatsCluster {
  nodes: NatsNode[];
  /** Every node's client URL, comma-separated (the form `url:` of a nats endpoint takes). */
  url: string;
  /** Stops one node (SIGTERM: a clean shutdown; SIGKILL: a crash). */
  stopNode(index: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped node again with its store and ports. */
  startNode(index: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Options as nats-server's command line documents them (`nats-server --help`):
 * `-js` JetStream, `-sd` its store directory, `-n` the server name (unique in a
 * JetStream cluster), `--cluster_name`, `--cluster` this node's route listener
 * and `--routes` the others' (https://docs.nats.io/running-a-nats-service/configuration/clustering).
 */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  // A port found free can be taken before its node binds it (freePort): then the cluster starts again on new ports.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnce(size);
    } catch (error) {
      if (attempt >= 3 || !/address already in use/.test(String(error))) throw error;
    }
  }
}

async function startOnce(size: number): Promise<NatsCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nats-test-'));
  const nodes: NatsNode[] = [];
  for (let i = 0; i < size; i += 1) {
    const port = await freePort();
    const clusterPort = await freePort();
    nodes.push({ name: `n${i + 1}`, port, clusterPort, url: `nats://${HOST}:${port}` });
  }
  const processes: (ChildProcess | undefined)[] = [];
  // An outage step may start its node again after the test stopped the cluster (a time limit): it must not outlive it.
  let stopped = false;
  const start = async (i: number): Promise<void> => {
    if (stopped) return;
    const node = nodes[i]!;
    const routes = nodes.filter((n) => n !== node).map((n) => `nats://${HOST}:${n.clusterPort}`).join(',');
    const args = ['-a', HOST, '-p', String(node.port), '-n', node.name, '-js', '-sd', path.join(dir, node.name)];
    if (size > 1) args.push('--cluster_name', 'cdc-sync-test', '--cluster', `nats://${HOST}:${node.clusterPort}`, '--routes', routes);
    const log = fs.openSync(path.join(dir, `${node.name}.log`), 'a');
    const child = spawn(natsServer(), args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    processes[i] = child;
    await waitForPort(node.port, child, path.join(dir, `${node.name}.log`));
  };
  const stopNode = async (i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const child = processes[i];
    processes[i] = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  };
  try {
    await Promise.all(nodes.map((_, i) => start(i)));
    if (size > 1) await waitForJetStreamCluster(dir, nodes);
  } catch (error) {
    await Promise.all(nodes.map((_, i) => stopNode(i, 'SIGKILL')));
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    nodes,
    url: nodes.map((n) => n.url).join(','),
    stopNode,
    startNode: start,
    async stop() {
      stopped = true;
      await Promise.all(nodes.map((_, i) => stopNode(i, 'SIGKILL')));
      // A node restarted by an outage step may still be writing its store while the test ends.
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}

function natsServer(): string {
  for (const candidate of ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error('nats-server is not installed: `apt-get install -y nats-server` (.ci/run does)');
}

async function waitForPort(port: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited (${child.exitCode}):\n${logTail(logFile)}`);
    if (await connects(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nats-server did not listen on ${port} within 15 s:\n${logTail(logFile)}`);
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** JetStream takes requests once its meta group has a leader; each server logs when one is elected. */
async function waitForJetStreamCluster(dir: string, nodes: NatsNode[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const logs = nodes.map((n) => logTail(path.join(dir, `${n.name}.log`), 100_000)).join('\n');
    if (/JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/.test(logs)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the JetStream cluster elected no meta leader within 30 s:\n${logTail(path.join(dir, 'n1.log'))}`);
}
