import type Database from 'better-sqlite3';
import type { Pool } from '../db/postgres/connection.js';

/**
 * Makes changes on both sides, as people would: the clinic adds patients,
 * their work, aligner sets and batches, and edits phone numbers; doctors in
 * the portal change days per batch and write notes. Portal notes take ids
 * from a range the clinic never uses.
 */
export class DemoWriter {
  private tick = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly clinic: Database.Database,
    private readonly portal: Pool,
    private readonly intervalMs = 500,
  ) {}

  /** Rows every table needs before the first tick (parents of everything). */
  seed(): void {
    const now = new Date().toISOString();
    const count = this.clinic.prepare('SELECT count(*) AS n FROM AlignerDoctors').get() as { n: number };
    if (count.n > 0) return;
    this.clinic.transaction(() => {
      this.clinic.prepare('INSERT INTO AlignerDoctors VALUES (1, ?, ?), (2, ?, ?)').run('Dr. Rahim', now, 'Dr. Shwan', now);
      for (let i = 1; i <= 5; i += 1) this.addPatient(i, now);
    })();
  }

  start(): void {
    this.timer = setInterval(() => {
      this.busy = this.busy.then(() => this.step()).catch(() => undefined);
    }, this.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.busy;
  }

  private async step(): Promise<void> {
    this.tick += 1;
    const now = new Date().toISOString();
    const patients = (this.clinic.prepare('SELECT max(PersonID) AS n FROM tblPatients').get() as { n: number }).n;
    if (this.tick % 4 === 0) this.clinic.transaction(() => this.addPatient(patients + 1, now))();
    else this.clinic.prepare('UPDATE tblPatients SET Phone = ?, UpdatedAt = ? WHERE PersonID = ?').run(`07${String(this.tick).padStart(8, '0')}`, now, 1 + (this.tick % patients));
    // The portal: only rows the clinic already sent can be edited.
    const { rows } = await this.portal.query<{ id: number }>('SELECT aligner_batch_id AS id FROM aligner_batches ORDER BY aligner_batch_id DESC LIMIT 5');
    if (rows.length === 0) return;
    const batch = rows[this.tick % rows.length]!.id;
    if (this.tick % 3 === 0) {
      const set = await this.portal.query<{ s: number }>('SELECT aligner_set_id AS s FROM aligner_batches WHERE aligner_batch_id = $1', [batch]);
      await this.portal.query('INSERT INTO aligner_notes VALUES ($1, $2, $3, $4) ON CONFLICT (note_id) DO UPDATE SET note_text = EXCLUDED.note_text, updated_at = EXCLUDED.updated_at', [
        1_000_000 + this.tick,
        set.rows[0]!.s,
        `portal note ${this.tick}`,
        now,
      ]);
    } else {
      await this.portal.query('UPDATE aligner_batches SET days = $1, updated_at = $2 WHERE aligner_batch_id = $3', [7 + (this.tick % 14), now, batch]);
    }
  }

  private addPatient(id: number, now: string): void {
    const run = (sql: string, ...values: unknown[]) => this.clinic.prepare(sql).run(...values);
    run('INSERT INTO tblPatients VALUES (?, ?, ?, ?)', id, `Patient ${id}`, null, now);
    run('INSERT INTO tblWork VALUES (?, ?, ?, ?)', id, id, 'aligners', now);
    run('INSERT INTO tblAlignerSets VALUES (?, ?, ?, ?, ?)', id, id, 1 + (id % 2), 1, now);
    for (const n of [1, 2]) run('INSERT INTO tblAlignerBatches VALUES (?, ?, ?, ?, ?)', id * 10 + n, id, n, 14, now);
    run('INSERT INTO tblAlignerNotes VALUES (?, ?, ?, ?)', id, id, `set ${id} sent to the lab`, now);
  }
}
