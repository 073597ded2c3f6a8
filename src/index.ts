/**
 * falbatch: run a fal.ai vision-language endpoint over a whole CSV manifest, durably.
 * manifest → queue → worker → fal → results. The CLI is a thin shell over these functions.
 */
export { resolveConfig, DEFAULT_CONFIG, redactUrl } from './config.js';
export type { Config, ConfigOverrides, ResolvedConfig, WaitMode } from './config.js';
export { openContext } from './context.js';
export type { FalbatchContext, OpenContextOptions } from './context.js';
export type { RedisClient } from './queue/connection.js';
export {
  BatchNotFoundError,
  ConfigError,
  EXIT,
  FalbatchError,
  FalHttpError,
  FalProtocolError,
  FalTimeoutError,
  FalTransportError,
  ManifestError,
  MissingCredentialsError,
  OutputError,
  RedisOutOfMemoryError,
  isRedisOutOfMemory,
  RedisUnavailableError,
  ResultsNotWrittenError,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export { createFalCaller } from './fal/fal-caller.js';
export type { FalCaller, FalCallerOptions, FalStatus } from './fal/fal-caller.js';
export { ENDPOINTS } from './fal/endpoints.js';
export type { EndpointSpec } from './fal/endpoints.js';
export { createRoutedFetch, routeFalUrl } from './fal/routing.js';
export { createLogger, silentLogger } from './log.js';
export type { Logger, LogFormat, LogLevel } from './log.js';
export { BatchBusyError, enqueueManifest, planEnqueue } from './queue/enqueue.js';
export type { EnqueuePlan } from './queue/enqueue.js';
export { writeCaptions } from './results/write-captions.js';
export type { CaptionsSummary, WriteCaptionsOptions } from './results/write-captions.js';
export { captionOptions, DEFAULT_CAPTIONS } from './results/caption-files.js';
export type { CaptionMode, CaptionOptions } from './results/caption-files.js';
export { forecastCost } from './ops/estimate.js';
export type { CostForecast } from './ops/estimate.js';
export { fetchFalPrice, parsePrice, resolvePrice } from './fal/pricing.js';
export { defaultBatchName } from './manifest/manifest-file.js';
export { manifestEncodingOf } from './manifest/manifest-format.js';
export type { ManifestEncoding, ManifestFormat } from './manifest/manifest-format.js';
export type { ManifestBytes } from './manifest/manifest-bytes.js';
export type { EnqueueOptions, EnqueueSummary, EnqueueProgress, Rejection } from './queue/enqueue.js';
export { exportResults, OUTPUT_COLUMNS, OUTPUT_FORMATS } from './results/export.js';
export type { ExportOptions, ExportSummary, OutputFormat } from './results/export.js';
export type { ExportReport, ReportCounts } from './results/export-report.js';
export { HF_METADATA_FILE } from './results/hf-metadata.js';
export type { HfMetadataOptions, HfMetadataSummary } from './results/hf-metadata.js';
export { PERCENTILE_ERROR } from './results/batch-figures.js';
export type { CostEstimate, Percentiles } from './results/batch-figures.js';
export { costOf } from './fal/price.js';
export type { Price } from './fal/price.js';
export type { RowResult, RowStatus, ExportStatus } from './results/row-result.js';
export { getStatus, listBatches, waitForBatch } from './ops/status.js';
export type { BatchStatus, GetStatusOptions, WaitForBatchOptions } from './ops/status.js';
export { watchStatus } from './ops/watch-status.js';
export type { WatchStatusOptions, WatchStatusResult } from './ops/watch-status.js';
export type { RowPhase } from './worker/process-row.js';
export { cancelBatch, pauseBatch, resumeBatch } from './ops/control.js';
export type { CancelBatchSummary, PauseBatchSummary, ResumeBatchOptions, ResumeBatchSummary } from './ops/control.js';
export { pauseQueue, pauseQueueByOperator, pausedReason, queuePause, resumeQueue } from './queue/queue-pause.js';
export { applyBatchSettings, batchControlState } from './queue/batch-settings.js';
export type { BatchControlState, BatchSettings } from './queue/batch-settings.js';
export { DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY } from './queue/batch-control.js';
export type { BatchControl, BatchHold, FalQueuePriority, SpendCap } from './queue/batch-control.js';
export { retryFailed } from './ops/retry.js';
export { pruneBatch, pruneExpired } from './ops/prune.js';
export type { PruneBatchOptions, PruneBatchSummary, PruneExpiredSummary, PrunedJobs } from './ops/prune.js';
export { BatchPrunedError, FOREVER, formatRetention, parseRetention, sweepExpiredBatches } from './queue/retention.js';
export type { SweepSummary } from './queue/retention.js';
export { addSchedule, listSchedules, removeSchedule, tickRecords, parseEvery, TICK_HISTORY } from './ops/schedules.js';
export type {
  AddScheduleOptions,
  ListSchedulesOptions,
  Schedule,
  ScheduleDefinition,
  ScheduleFetchLimits,
  ScheduleSettings,
  TickRecord,
} from './ops/schedules.js';
export { createAdmission, runScheduleTick } from './ops/schedule-tick.js';
export { createCheckedUploads } from './manifest/upload-images.js';
export type { CheckedUploads } from './manifest/upload-images.js';
export type { Admission, AdmissionOptions, CallCost, RunTickOptions } from './ops/schedule-tick.js';
export { fetchManifest, FETCH_DEFAULTS } from './manifest/fetch-manifest.js';
export type { FetchedManifest, FetchManifestOptions } from './manifest/fetch-manifest.js';
export { startScheduler } from './ops/start-scheduler.js';
export type { SchedulerCounts, SchedulerHandle, StartSchedulerOptions } from './ops/start-scheduler.js';
export type { RetryFailedOptions, RetryFailedSummary } from './ops/retry.js';
export { runBatch } from './run-batch.js';
export type { RunBatchOptions, RunBatchSummary } from './run-batch.js';
export { startWorker } from './worker/start-worker.js';
export type { StartWorkerOptions, WorkerHandle } from './worker/start-worker.js';
export type { WorkerEvent, WorkerEventListener } from './worker/worker-events.js';
export { startDashboard, QUEUES_PATH } from './dashboard/start-dashboard.js';
export type { DashboardCredentials, DashboardHandle, DashboardOptions } from './dashboard/start-dashboard.js';
export type { BullBoardQueue } from './dashboard/bull-board.js';
export { createWorkerMetrics } from './metrics/worker-metrics.js';
export type { WorkerMetrics, WorkerMetricsOptions } from './metrics/worker-metrics.js';
export { startMetricsServer } from './metrics/start-metrics-server.js';
export type { MetricsServer, MetricsServerOptions } from './metrics/start-metrics-server.js';
export { systemClock, SECOND, MINUTE, HOUR } from './time.js';
export type { Clock } from './time.js';
