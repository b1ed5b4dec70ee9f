import type { LoadedConfig } from '../config/load';
import { createSmokeActivities } from './smoke';

/**
 * All activities of one environment, built from config. Later modules (postgres, s3, dns,
 * kubernetes) add their factories here with the clients they close over.
 */
export function createActivities(_loaded: LoadedConfig, _environment: string) {
  return {
    ...createSmokeActivities(),
  };
}

export type Activities = ReturnType<typeof createActivities>;
