import { writeConfig } from './cli.js';

/** One reverse stream from a Supabase project (its stand-ins' URL and key) into PostgreSQL, as a config file. */
export function reverseConfig(options: {
  name?: string;
  url: string;
  key: string;
  sinkUrl: string;
  /** `source.target` pairs, each keyed by `id` with `updated_at`. */
  tables: [string, string][];
  /** More settings of the source, e.g. `tombstones: true, catchUp: { … }`. */
  source?: string;
  /** More settings of the stream (batch, retry), one YAML line each at the stream's indentation. */
  stream?: string[];
  webhookSecret?: string;
}): string {
  const source = `{ type: supabase-realtime, url: ${options.url}, key: ${options.key}${options.source ? `, ${options.source}` : ''} }`;
  return writeConfig(`
streams:
  - name: ${options.name ?? 'cloud-to-clinic'}
    direction: reverse
    source: ${source}
    sink: { type: postgres, url: "${options.sinkUrl}" }
    tables:
${options.tables.map(([from, to]) => `      - { source: ${from}, target: ${to}, key: [id], updatedAt: updated_at }`).join('\n')}
${(options.stream ?? []).map((line) => `    ${line}\n`).join('')}http: { port: 0, host: 127.0.0.1${options.webhookSecret ? `, webhookSecret: ${options.webhookSecret}` : ''} }
`);
}
