/**
 * Worker entry: the HTTP app, the scheduled batcher and settler, and the Gateway Durable Object
 * class.
 */
import { messageOf } from '@depinfer/shared'
import { app } from './app.js'
import { runArchiveTick } from './batching/archive.js'
import { runBatchTick } from './batching/batcher.js'
import type { Env } from './env.js'
import { flushGatewayAttestations } from './gateway/flush-attestations.js'
import { gatewayStub } from './gateway/stub.js'
import { expireUnpublishedFiles } from './models/registry.js'
import { expireUploads } from './models/uploads.js'
import { runSettlementTick } from './payments/settler.js'

export { Gateway } from './gateway/gateway.js'

export default {
  fetch: app.fetch,
  // Awaited rather than waitUntil: the invocation then lasts as long as the tick, and a caller
  // of the scheduled event (tests, `npm start`) sees it finished.
  async scheduled(controller, env) {
    const flushStartedAt = Date.now()
    // First the jobs answered until now into D1, so the batch cut next includes all of them.
    const pending = await flushGatewayAttestations(env)
    // Each stage on its own: one that fails (a D1 or RPC error) is logged and leaves its work to
    // the next tick, without keeping the others from theirs.
    await stage('batcher', () => runBatchTick(env))
    // Settles the batches just confirmed (and any left from earlier ticks), in batch order, and
    // releases abandoned reservations: only those expired before the flush started, and only
    // when it completed. A job is answered before its reservation expires (payments/hold.ts),
    // so such a reservation's job, if it was answered at all, was in the outbox this flush
    // emptied and is charged by now: a reservation still `reserved` really was abandoned.
    await stage('settler', () => runSettlementTick(env, pending === 0 ? flushStartedAt : undefined))
    // Confirmed, settled batches older than the retention move from D1 to R2.
    await stage('archive', () => runArchiveTick(env, controller.scheduledTime))
    await stage('devices', () => gatewayStub(env).forgetGoneDevices())
    // Resumable uploads left unfinished for a day: their parts go.
    await stage('uploads', () => expireUploads(env.DB, env.MODELS, controller.scheduledTime))
    // Uploaded files no version names, a week after their upload.
    await stage('files', () => expireUnpublishedFiles(env.DB, env.MODELS, controller.scheduledTime))
  },
} satisfies ExportedHandler<Env>

async function stage(name: string, run: () => Promise<unknown>): Promise<void> {
  try {
    await run()
  } catch (error) {
    console.warn(`scheduled ${name}: ${messageOf(error)}`)
  }
}
