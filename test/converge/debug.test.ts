import { it } from 'vitest';
import { Pair } from './pair.js';
import { PostgresSide } from './sides.js';

it('debug', async () => {
  const a = await PostgresSide.create('a');
  const b = await PostgresSide.create('b');
  const pair = new Pair(a, b, { twoWay: true });
  await pair.start();
  const steps = JSON.parse(process.env.STEPS!);
  try {
    await pair.run(steps);
  } catch (e) {
    console.log(String(e).slice(0, 3000));
  }
  for (const [n, s] of [['a', a], ['b', b]] as const) {
    const db = (s as any).db;
    console.log(n, 'changes', JSON.stringify(await db.query(`SELECT id, table_name, op, origin, captured_at, row_data, old_data, xid FROM cdc_sync.changes WHERE table_name LIKE '%parent%' AND (row_data::text LIKE '%"id":1000,%' OR old_data::text LIKE '%"id":1000,%' OR row_data::text LIKE '%"id": 1000,%' OR old_data::text LIKE '%"id": 1000,%') ORDER BY id`), null, 1));
    console.log(n, 'conflicts', JSON.stringify(await db.query(`SELECT * FROM cdc_sync.conflicts`).catch(() => []), null, 1));
  }
  await pair.stop();
}, 120_000);
