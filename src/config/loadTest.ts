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
        mode: z
          .enum(['workers-stopped', 'slow-dependency', 'command'], { error: 'expected workers-stopped (the bench workers stop for outage), slow-dependency (the payment call takes dependencyDelay longer) or command (inject runs a real fault into what is tested, recover ends it after outage)' })
          .default('workers-stopped'),
        outage: duration.optional(),
        dependencyDelay: duration.prefault('2s'),
        /** mode command: what the fault hits, in words for the approver and the report (e.g. "the matching service on temporal-2"). */
        target: z.string().min(1).max(200, 'expected at most 200 characters').optional(),
        /** mode command: the command (an argument list, run on the load generator's host) that injects the fault, and the one that ends it; recover must be safe to run twice. */
        inject: z.array(z.string().min(1, 'an argument may not be empty')).min(1, 'expected a command as an argument list, e.g. [ssh, temporal-2, sudo systemctl stop temporal-matching]').optional(),
        recover: z.array(z.string().min(1, 'an argument may not be empty')).min(1, 'expected a command as an argument list, e.g. [ssh, temporal-2, sudo systemctl start temporal-matching]').optional(),
        /** mode command: how long the fault's signed approval may wait before the run stops without injecting it. */
        approvalTimeout: duration.prefault('1h'),
        /** mode command in an environment marked production: true: refused unless this is true. */
        allowInProduction: z.boolean({ error: 'expected true or false' }).default(false),
      })
      .strict()
      .prefault({}),
    /** Workflows running at once at most; starts wait beyond it. */
    concurrency: z.number().int('expected a whole number').min(1).max(10_000).default(1_000),
    sla: z
      .object({
        p99StartToComplete: duration,
        maxErrorRate: z.number().min(0, 'expected a fraction from 0 to 1').max(1, 'expected a fraction from 0 to 1').default(0.01),
        /** After the fault ends (workers back, the recover command done), the workflows that waited must all have completed within this. Default: phaseDuration. */
        drainWithin: duration.optional(),
      })
      .strict(),
  })
  .strict()
  .superRefine((lt, ctx) => {
    if (lt.failure.mode === 'command') {
      for (const field of ['target', 'inject', 'recover'] as const) {
        if (lt.failure[field] === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['failure', field], message: `failure.mode command needs ${field === 'target' ? 'target: what the fault hits, in words' : `${field}: the command that ${field === 'inject' ? 'injects the fault' : 'ends it (safe to run twice)'}, as an argument list`}` });
      }
    } else {
      for (const field of ['target', 'inject', 'recover'] as const) {
        if (lt.failure[field] !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['failure', field], message: `${field} is used only with failure.mode: command (the mode is ${lt.failure.mode})` });
      }
    }
    if (lt.failure.outage !== undefined && lt.failure.outage >= lt.phaseDuration) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['failure', 'outage'], message: `the outage (${lt.failure.outage / 1000}s) must be shorter than phaseDuration (${lt.phaseDuration / 1000}s), so the workers come back within the failure phase` });
    }
  });

export type LoadTestConfig = z.output<typeof loadTestSchema>;
