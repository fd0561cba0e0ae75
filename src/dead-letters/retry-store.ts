/** An open (not yet retried) dead letter: its store's id, source table and payload. */
export interface OpenDeadLetter {
  id: string;
  table: string;
  payload: string;
  position: string;
}

/** Reading and marking dead letters, one implementation per place they are kept. */
export interface DeadLetterRetryStore {
  open(stream: string, table?: string): Promise<OpenDeadLetter[]>;
  markRetried(ids: string[]): Promise<void>;
  close(): Promise<void>;
}
