import type { TimelineSnapshot } from '../workflows/lib/timeline';

const MARK: Record<string, string> = { succeeded: 'ok  ', failed: 'FAIL', cancelled: 'CNCL', skipped: 'skip', running: '... ' };

/** The timeline as an operator reads it: one line a step with duration and the evidence. */
export function renderTimeline(timeline: TimelineSnapshot): string {
  const lines = [`${timeline.runbook} on ${timeline.environment}: ${timeline.outcome}`];
  for (const step of timeline.steps) {
    const duration = step.durationMs !== undefined ? ` (${step.durationMs} ms)` : '';
    lines.push(`  [${MARK[step.outcome] ?? step.outcome}] ${step.name}${duration}`);
    const evidence = Object.entries(step.evidence).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
    if (evidence.length) lines.push(`         ${evidence.join(' ')}`);
    if (step.error) lines.push(`         error: ${step.error}`);
  }
  return lines.join('\n');
}
