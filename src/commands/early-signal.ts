/**
 * Removes the launcher's handler for signals that come before a command
 * installs its own (tools/launcher.mjs): from here on, the command's
 * handler decides how to stop.
 */
export function endEarlySignalHandler(): void {
  const handler = (globalThis as { __cdcSyncEarlySignal?: (signal: NodeJS.Signals) => void }).__cdcSyncEarlySignal;
  if (!handler) return;
  process.off('SIGTERM', handler);
  process.off('SIGINT', handler);
}
