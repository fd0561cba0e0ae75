import { Command, CommanderError, Option } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { loadConfigFile } from './config/load.js';
import { configWarnings } from './config/warnings.js';
import { ConfigError, errorMessage } from './core/errors.js';
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, runCommand } from './commands/run.js';
import { demoCommand } from './commands/demo.js';
import { SETUP_TARGETS, initSql, initSqlFiles, type SetupTarget } from './commands/init-sql.js';
import { snapshotCommand } from './commands/snapshot.js';
import { dropSlotCommand } from './commands/drop-slot.js';
import { resetCommand, retryFailedCommand, statusCommand } from './commands/control.js';
import { createLogger } from './log.js';
import { createMetrics } from './metrics/metrics.js';
import { buildStreams } from './streams/build.js';

const DEFAULT_CONFIG = process.env.CDC_SYNC_CONFIG ?? 'cdc-sync.yaml';

function program(): Command {
  const cli = new Command('cdc-sync')
    .description('Change-data-capture sync between SQL Server / SQLite and PostgreSQL / Supabase')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) });

  cli
    .command('run', { isDefault: true })
    .description('run the configured streams until stopped (SIGINT/SIGTERM)')
    .option('-c, --config <path>', 'configuration file', DEFAULT_CONFIG)
    .option('--once', 'drain what is pending, then exit 0 (for cron or Task Scheduler); serves no HTTP')
    .action(async (options: { config: string; once?: boolean }) => {
      process.exitCode = await runCommand(options);
    });

  cli
    .command('demo')
    .description('run a complete two-way sync with nothing to install: SQLite (the clinic) ⇄ PGlite (the portal) under ./data/demo')
    .option('--dir <path>', 'where the demo databases live', './data/demo')
    .option('--port <port>', 'HTTP port for /metrics', (v) => Number(v), 9464)
    // In a container the metrics must be reachable through -p 9464:9464: the image sets CDC_SYNC_DEMO_HOST=0.0.0.0.
    .option('--host <address>', 'address the HTTP server binds (default: CDC_SYNC_DEMO_HOST, else 127.0.0.1)', process.env.CDC_SYNC_DEMO_HOST ?? '127.0.0.1')
    .action(async (options: { dir: string; port: number; host: string }) => {
      process.exitCode = await demoCommand(options);
    });

  cli
    .command('validate')
    .description('check a configuration file against its databases (tables, columns, set-up) without running it; writes nothing')
    .option('-c, --config <path>', 'configuration file', DEFAULT_CONFIG)
    .option('--offline', 'check the file only (syntax, settings), without connecting to the databases')
    .action(async (options: { config: string; offline?: boolean }) => {
      const config = loadConfigFile(options.config);
      // Silent: the first problem is printed once, as the exit message (the stream's own "stops" line would mislead here).
      const streams = buildStreams(config, createMetrics(new Registry()), createLogger('silent' as 'info'));
      // The checks `run` makes at start, one stream after the other; the first that fails exits 2 (configuration) or 1 (a database did not answer).
      if (!options.offline) for (const stream of streams) await stream.check();
      const checked = options.offline ? 'the file only' : 'against the databases';
      for (const warning of configWarnings(config)) process.stderr.write(`${options.config}: warning: ${warning.path}: ${warning.message}\n`);
      process.stdout.write(`${options.config}: valid, checked ${checked} (${config.streams.map((s) => s.name).join(', ')})\n`);
    });

  cli
    .command('init-sql')
    .description('print the database set-up (triggers, change tables) for the configured tables')
    .option('-c, --config <path>', 'configuration file', DEFAULT_CONFIG)
    .addOption(new Option('-t, --target <database>', 'only the set-up that runs on this kind of database (a script its own client runs as is)').choices([...SETUP_TARGETS]))
    .option('-o, --out <dir>', 'write one script per kind of database, DIR/<database>.sql, instead of printing')
    .action((options: { config: string; target?: SetupTarget; out?: string }) => {
      const config = loadConfigFile(options.config);
      if (!options.out) {
        process.stdout.write(initSql(config, options.target));
        return;
      }
      mkdirSync(options.out, { recursive: true });
      for (const [target, script] of initSqlFiles(config)) {
        if (options.target && target !== options.target) continue;
        writeFileSync(join(options.out, `${target}.sql`), script);
        process.stdout.write(`${join(options.out, `${target}.sql`)}\n`);
      }
    });

  cli
    .command('drop-slot')
    .description("drop a postgres-wal stream's replication slot so the server frees its WAL; refuses while the slot is in use")
    .option('-c, --config <path>', 'configuration file', DEFAULT_CONFIG)
    .requiredOption('-s, --stream <name>', 'the stream')
    .action(async (options: { config: string; stream: string }) => {
      process.stdout.write(await dropSlotCommand(options));
    });

  const processOptions = (command: Command) =>
    command
      .option('-c, --config <path>', 'configuration file', DEFAULT_CONFIG)
      .option('--url <url>', 'a running cdc-sync (default: http://127.0.0.1:<http.port>)')
      .option('--token <token>', 'bearer token of the control API (default: http.token)');

  processOptions(cli.command('status'))
    .description("show each stream's state and checkpoint: from the running process, else from the checkpoint stores")
    .option('--json', 'print JSON')
    .action(async (options: { config: string; url?: string; token?: string; json?: boolean }) => {
      process.stdout.write(await statusCommand(options));
    });

  processOptions(cli.command('retry-failed'))
    .description('apply the open dead letters again (through the running process, else directly) and mark the ones that apply')
    .option('-s, --stream <name>', 'only this stream')
    .option('-t, --table <table>', 'only dead letters of this source table')
    .action(async (options: { config: string; url?: string; token?: string; stream?: string; table?: string }) => {
      process.stdout.write(await retryFailedCommand(options));
    });

  processOptions(cli.command('snapshot'))
    .description("copy a stream's tables again: in the running process while it streams (control API), else at the next start")
    .requiredOption('-s, --stream <name>', 'the stream')
    .option('-t, --table <table...>', 'source tables to copy (default: all of the stream)')
    .option('--where <condition>', "copy only the rows this SQL condition holds for, in the source's own SQL (one --table; PostgreSQL and SQLite sources)")
    .option('-w, --wait', 'wait for the copy to finish, printing its progress (running process only)')
    .action(async (options: { config: string; url?: string; token?: string; stream: string; table?: string[]; where?: string; wait?: boolean }) => {
      process.stdout.write(await snapshotCommand(options));
    });

  processOptions(cli.command('reset'))
    .description('force a full resync of a stream at its next start (a snapshot where the source can take one, else from the beginning); refuses while a process runs')
    .requiredOption('-s, --stream <name>', 'the stream')
    .option('-t, --table <table...>', 'source tables to copy again (snapshot sources only)')
    .action(async (options: { config: string; url?: string; token?: string; stream: string; table?: string[] }) => {
      process.stdout.write(await resetCommand(options));
    });

  return cli;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT_OK : EXIT_CONFIG;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`cdc-sync: ${error.message}\n`);
      return EXIT_CONFIG;
    }
    process.stderr.write(`cdc-sync: ${errorMessage(error)}\n`);
    return EXIT_FAILURE;
  }
}

// Exit explicitly: a stopped run may leave idle sockets or timers behind. (No top-level await: the bundle is a script, see tools/launcher.mjs.)
void main(process.argv).then((code) => process.exit(code));
