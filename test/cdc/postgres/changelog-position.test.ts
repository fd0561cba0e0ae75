import { describe, expect, it } from 'vitest';
import { ChangeLogPosition, snapshotBefore } from '../../../src/cdc/postgres/changelog-position.js';

describe('ChangeLogPosition', () => {
  it('reads positions stored before the server run was recorded, and writes the run when it is known', () => {
    const old = ChangeLogPosition.parse('100:105:101,103||0');
    expect(old.server).toBeNull();
    expect(old.toString()).toBe('100:105:101,103||0');
    expect(old.onServer('1764700000000000').toString()).toBe('100:105:101,103||0|1764700000000000');
    expect(ChangeLogPosition.parse('100:105:101,103|106:106:|42|1764700000000000')).toEqual(
      new ChangeLogPosition('100:105:101,103', '106:106:', 42n, '1764700000000000'),
    );
  });

  it('takes ids handed out again after a crash back out of both snapshots, keeping the running ones below', () => {
    const position = new ChangeLogPosition('100:110:101,107', '100:112:101', 7n, 'run-1').reissuedFrom(105n, 'run-2');
    expect(position).toEqual(new ChangeLogPosition('100:105:101', '100:105:101', 7n, 'run-2'));
  });

  it('leaves a snapshot alone when no id it has seen is handed out again', () => {
    expect(snapshotBefore('100:105:101', 105n)).toBe('100:105:101');
    expect(snapshotBefore('100:105:101', 200n)).toBe('100:105:101');
  });

  it('moves xmin down too when every id of the snapshot is handed out again', () => {
    expect(snapshotBefore('734:734:', 729n)).toBe('729:729:');
  });
});
