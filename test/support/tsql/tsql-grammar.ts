import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A T-SQL syntax check independent of our own code: the Transact-SQL grammar
 * of grammars-v4 (https://github.com/antlr/grammars-v4/tree/master/sql/tsql,
 * TSqlLexer.g4 and TSqlParser.g4 at commit aca577d9e, MIT, kept here as they
 * are), turned into a parser by antlr-ng and bundled by esbuild once per
 * grammar and tool version under node_modules/.cache. SQL Server itself
 * cannot run here; this catches a statement SQL Server would refuse with
 * "Incorrect syntax near …" (Msg 102) before a test would believe it ran.
 * The grammar is not Microsoft's parser: it accepts some text SQL Server
 * refuses, so passing it is necessary, not sufficient.
 */
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../../..');
const GRAMMARS = ['TSqlLexer.g4', 'TSqlParser.g4'];

let loaded: ((sql: string) => string[]) | undefined;
const verdicts = new Map<string, string[]>();

/** The syntax errors of a T-SQL script (batches separated by GO); none when it parses. Cached per text. */
export function tsqlSyntaxErrors(sql: string): string[] {
  let errors = verdicts.get(sql);
  if (!errors) {
    loaded ??= (createRequire(import.meta.url)(tsqlParserBundle()) as { syntaxErrors: (sql: string) => string[] }).syntaxErrors;
    errors = loaded(sql);
    verdicts.set(sql, errors);
  }
  return errors;
}

/** The bundle's path, built when missing (about 10 s). Concurrent builders each write their own directory and rename it into place. */
export function tsqlParserBundle(): string {
  const version = (name: string) => (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  const hash = createHash('sha256');
  for (const file of [...GRAMMARS, 'parse-entry.ts']) hash.update(readFileSync(join(HERE, file)));
  hash.update(`${version('antlr-ng')} ${version('antlr4ng')} ${version('esbuild')}`);
  const dir = join(ROOT, 'node_modules', '.cache', 'cdc-sync-tsql', hash.digest('hex').slice(0, 16));
  const bundle = join(dir, 'tsql-parser.cjs');
  if (existsSync(bundle)) return bundle;
  mkdirSync(dirname(dir), { recursive: true });
  const work = mkdtempSync(`${dir}.tmp-`);
  try {
    for (const file of [...GRAMMARS, 'parse-entry.ts']) copyFileSync(join(HERE, file), join(work, file));
    const generate = spawnSync(process.execPath, [join(ROOT, 'node_modules/antlr-ng/dist/cli/runner.js'), '-Dlanguage=TypeScript', '--generate-visitor', 'false', '--generate-listener', 'false', '-o', work, ...GRAMMARS.map((g) => join(work, g))], { encoding: 'utf8' });
    if (generate.status !== 0) throw new Error(`antlr-ng failed on the T-SQL grammar: ${generate.stderr || generate.stdout}`);
    const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
    esbuild.buildSync({ entryPoints: [join(work, 'parse-entry.ts')], bundle: true, platform: 'node', format: 'cjs', outfile: join(work, 'out', 'tsql-parser.cjs'), logLevel: 'error' });
    try {
      renameSync(join(work, 'out'), dir);
    } catch (error) {
      // Another worker put the same bundle in place first.
      if (!existsSync(bundle)) throw error;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return bundle;
}
