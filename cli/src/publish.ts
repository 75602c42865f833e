/**
 * `depinfer models publish`: uploads an ONNX file to the edge (POST /api/models), streaming it
 * with a progress bar. The edge validates the file, stores it under its sha256 and answers with
 * the new version; the CLI checks that the sha256 the edge recorded is the file's.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'

export interface PublishOptions {
  edgeUrl: string
  apiKey: string
  file: string
  name: string
  priceWei: string
  payoutAddress: string
  description?: string
  onProgress?: (sentBytes: number, totalBytes: number) => void
}

export interface PublishedVersion {
  name: string
  version: string
  sha256: string
  size: number
  priceWei: string
  inputs: { name: string; datatype: string; shape: number[] }[]
  outputs: { name: string; datatype: string; shape: number[] }[]
}

/** An error answer of the edge (its RFC 9457 problem), or a transport failure. */
export class PublishError extends Error {
  override name = 'PublishError'
  constructor(message: string, readonly status?: number, readonly field?: string) {
    super(message)
  }
}

const CHUNK_BYTES = 256 * 1024

export async function publishModelFile(options: PublishOptions): Promise<{ model: PublishedVersion; created: boolean }> {
  const bytes = await readFile(options.file)
  const sha256 = createHash('sha256').update(bytes).digest('hex')
  const url = new URL('/api/models', options.edgeUrl)
  url.searchParams.set('name', options.name)
  url.searchParams.set('price_wei', options.priceWei)
  url.searchParams.set('payout_address', options.payoutAddress)
  if (options.description) url.searchParams.set('description', options.description)
  let sent = 0
  // Streamed in chunks so the progress bar follows what fetch has actually taken.
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= bytes.byteLength) {
        controller.close()
        return
      }
      const chunk = bytes.subarray(sent, sent + CHUNK_BYTES)
      sent += chunk.byteLength
      options.onProgress?.(sent, bytes.byteLength)
      controller.enqueue(chunk)
    },
  })
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${options.apiKey}`,
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(bytes.byteLength),
      },
      body,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' })
  } catch (error) {
    throw new PublishError(`cannot reach the edge at ${options.edgeUrl}: ${(error as Error).message}`)
  }
  const text = await response.text()
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {
    // reported below with the raw text
  }
  if (!response.ok) {
    const detail = typeof json.detail === 'string' ? json.detail : text.slice(0, 300)
    throw new PublishError(`publish failed (${response.status}): ${detail}`, response.status, typeof json.field === 'string' ? json.field : undefined)
  }
  const model = json as unknown as PublishedVersion
  if (model.sha256 !== sha256) throw new PublishError(`the edge recorded sha256 ${model.sha256}, but the file's is ${sha256}`)
  return { model, created: response.status === 201 }
}
