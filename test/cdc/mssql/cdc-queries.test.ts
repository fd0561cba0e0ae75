import { describe, expect, it } from 'vitest';
import { PENDING_TRANSACTIONS, READ_WINDOW, columnList, readChanges } from '../../../src/cdc/mssql/cdc-queries.js';

describe('mssql-cdc statements', () => {
  it('finds the checkpoint\'s commit time by a seek (TOP 1 … ORDER BY start_lsn DESC), not by scanning the mapping back to the retention', () => {
    expect(PENDING_TRANSACTIONS.sql).toMatch(/SELECT TOP 1 .*tran_end_time\) FROM cdc\.lsn_time_mapping WHERE start_lsn <= @after_lsn ORDER BY start_lsn DESC/);
    expect(PENDING_TRANSACTIONS.sql).not.toMatch(/MAX\(tran_end_time\)/);
  });

  it('bounds a read by a number of transactions, skipping the capture job\'s idle entries', () => {
    expect(READ_WINDOW.sql).toMatch(/TOP \(@transactions\) start_lsn FROM cdc\.lsn_time_mapping/);
    expect(READ_WINDOW.sql).toContain('tran_id <> 0x00');
  });

  it('reads a change table with CDC\'s own __$ names, ordered by command id within a transaction, without TOP', () => {
    const read = readChanges('dbo_tblNotes_CT', columnList([{ column_name: 'Fee', column_type: 'money' }, { column_name: 'operation', column_type: 'nvarchar' }]));
    expect(read.sql).toMatch(/^SELECT __\$start_lsn, __\$command_id, __\$seqval, __\$operation, CONVERT\(varchar\(64\), \[Fee\], 2\) AS \[Fee\], \[operation\]\n/);
    expect(read.sql).toContain('FROM cdc.[dbo_tblNotes_CT]');
    expect(read.sql).toMatch(/ORDER BY __\$start_lsn, __\$command_id, __\$seqval, __\$operation$/);
    expect(read.sql).not.toMatch(/TOP|fn_cdc_get_all_changes/);
  });
});
