import { DefaultFailureConverter } from '@temporalio/common';

/**
 * The failure converter of encrypted environments: a failure's message and stack trace move into an
 * encoded attributes payload, which the payload codec then encrypts like every other payload, so the
 * history keeps only "Encoded failure". Loaded by path (DataConverter.failureConverterPath) because
 * the worker's workflow bundle must carry it too: failures raised in workflow code are converted
 * inside the workflow sandbox. Workflow-safe: no I/O, no node modules.
 */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
