/** The bench scenarios, kept apart from the engine so the CLI can check arguments without loading the worker SDK. */
export const SCENARIOS = ['noop', 'activity-chain', 'order-processing'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Activities each scenario's workflow runs, for activities/s. */
export const ACTIVITIES_PER_WORKFLOW: Record<Scenario, number> = { noop: 0, 'activity-chain': 5, 'order-processing': 4 };
