import type { Row } from '../../core/change-event.js';
import { formatLsn, parseLsn } from './wal-lsn.js';

/** A copy in progress: the tables still to copy (the first one now), and the key of the last row copied of it. */
export interface WalCopy {
  tables: string[];
  after: Row | null;
  /** `cdc-sync snapshot --where`: only the rows of the first table this condition holds for (copy-filter.ts). */
  where?: string;
}

/**
 * The postgres-wal checkpoint: the end LSN of the last applied transaction
 * and, while an initial copy (or `cdc-sync snapshot`) runs, how far it got.
 * Without a copy it is the bare LSN (`0/16B3748`); with one, JSON. Streaming
 * resumes from `lsn` once the copy is done, so every change made since the
 * slot was created (during the copy too) is applied after it.
 */
export class WalPosition {
  constructor(
    readonly lsn: bigint,
    readonly copy: WalCopy | null = null,
  ) {}

  static parse(text: string | null): WalPosition {
    if (text === null) return new WalPosition(0n);
    if (!text.startsWith('{')) return new WalPosition(parseLsn(text));
    const parsed = JSON.parse(text) as { lsn: string; copy?: WalCopy | null };
    return new WalPosition(parseLsn(parsed.lsn), parsed.copy ?? null);
  }

  withCopy(tables: string[], where?: string): WalPosition {
    return new WalPosition(this.lsn, tables.length > 0 ? { tables, after: null, ...(where === undefined ? {} : { where }) } : null);
  }

  toString(): string {
    if (!this.copy) return formatLsn(this.lsn);
    return JSON.stringify({ lsn: formatLsn(this.lsn), copy: this.copy });
  }
}
