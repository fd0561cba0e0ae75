import { ConfigError } from '../../core/errors.js';

/** What sys.databases and SERVERPROPERTY say about the database cdc-sync works in. */
export interface ServerState {
  compatibility_level: number;
  /** SERVERPROPERTY('ProductVersion'), e.g. `16.0.1000.6`. */
  product_version: string;
}

/**
 * SQL Server 2016 SP1 (13.0.4001) is the oldest cdc-sync runs on: the
 * statements use OPENJSON, which "is available only under compatibility level
 * 130 or higher" (https://learn.microsoft.com/sql/t-sql/functions/openjson-transact-sql),
 * and the set-up uses CREATE OR ALTER, which came with 2016 SP1
 * (https://support.microsoft.com/help/3190548).
 */
export function checkServer(state: ServerState, path: string): void {
  const [major = 0, , build = 0] = state.product_version.split('.').map(Number);
  if (major < 13 || (major === 13 && build < 4001)) {
    throw new ConfigError(`${path}: SQL Server ${state.product_version} is too old; cdc-sync needs SQL Server 2016 SP1 (13.0.4001) or later`);
  }
  if (state.compatibility_level < 130) {
    throw new ConfigError(
      `${path}: the database's compatibility level is ${state.compatibility_level}; OPENJSON needs 130 or higher (ALTER DATABASE … SET COMPATIBILITY_LEVEL = 130)`,
    );
  }
}
