/** Environment variables as the configuration reads them (process.env, or a test's own). */
export type Environment = Record<string, string | undefined>;
