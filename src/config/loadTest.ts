import { z } from 'zod';
import { parseDuration } from './duration';

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected a positive duration such as "30s" or "5m", found "${text}"` });
    return z.NEVER;
  }
  return ms;
});

/**
 * The loadTest runbook's plan and SLAs (environments.<name>.loadTest): a baseline rate, a peak at a
 * multiple of it, a failure phase (bench workers stopped for `outage`, or the payment dependency
 * slowed by `dependencyDelay`) and a recovery phase, each `phaseDuration` long.
 */
export const loadTestSchema = z
  .object({
    scenario: z.enum(['noop', 'activity-chain', 'order-processing'], { error: 'expected noop, activity-chain or order-processing' }).default('order-processing'),
    /** Workflows started per second in the baseline and recovery phases. */
    baselineRate: z.number().positive('expected workflows per second above 0').max(1_000, 'expected at most 1000 workflows per second'),
    peakMultiplier: z.number().min(1.5, 'a peak test runs at 2-3x the baseline: expected at least 1.5').max(10, 'expected at most 10').default(2.5),
    phaseDuration: duration.prefault('1m'),
    failure: z
      .object({
        mode: z.enum(['workers-stopped', 'slow-dependency'], { error: 'expected workers-stopped (the bench workers stop for outage) or slow-dependency (the payment call takes dependencyDelay longer)' }).default('workers-stopped'),
        outage: duration.optional(),
        dependencyDelay: duration.prefault('2s'),
      })
      .strict()
      .prefault({}),
    /** Workflows running at once at most; starts wait beyond it. */
    concurrency: z.number().int('expected a whole number').min(1).max(10_000).default(1_000),
    sla: z
      .object({
        p99StartToComplete: duration,
        maxErrorRate: z.number().min(0, 'expected a fraction from 0 to 1').max(1, 'expected a fraction from 0 to 1').default(0.01),
      })
      .strict(),
  })
  .strict()
  .superRefine((lt, ctx) => {
    if (lt.failure.outage !== undefined && lt.failure.outage >= lt.phaseDuration) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['failure', 'outage'], message: `the outage (${lt.failure.outage / 1000}s) must be shorter than phaseDuration (${lt.phaseDuration / 1000}s), so the workers come back within the failure phase` });
    }
  });

export type LoadTestConfig = z.output<typeof loadTestSchema>;
