/**
 * `depinfer` command line for model developers.
 *
 *   depinfer models publish <file.onnx> --name <name> --price-wei <n> --payout-address <0x…> [--description <text>]
 *   depinfer models list [--name <name>]
 *
 * The edge and the key come from DEPINFER_URL (default http://127.0.0.1:8787, what `npm start`
 * runs) and DEPINFER_API_KEY.
 */
import { parseArgs } from 'node:util'
import { progressBar } from './progress.js'
import { PublishError, publishModelFile } from './publish.js'

const USAGE = `usage:
  depinfer models publish <file.onnx> --name <name> --price-wei <n> --payout-address <0x…> [--description <text>]
  depinfer models list [--name <name>]
environment: DEPINFER_URL (default http://127.0.0.1:8787), DEPINFER_API_KEY (required)`

class UsageError extends Error {
  override name = 'UsageError'
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      'price-wei': { type: 'string' },
      'payout-address': { type: 'string' },
      description: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const [group, command, file] = positionals
  if (values.help || group !== 'models' || (command !== 'publish' && command !== 'list')) {
    console.log(USAGE)
    return values.help ? 0 : 2
  }
  const edgeUrl = process.env.DEPINFER_URL || 'http://127.0.0.1:8787'
  const apiKey = process.env.DEPINFER_API_KEY
  if (!apiKey) throw new UsageError('set DEPINFER_API_KEY to your API key (npm start prints one)')

  if (command === 'list') {
    const url = new URL('/api/models', edgeUrl)
    if (values.name) url.searchParams.set('name', values.name)
    const response = await fetch(url, { headers: { Authorization: `Bearer ${apiKey}` } })
    const body = (await response.json()) as { models?: { name: string; version: string; sha256: string; size: number; priceWei: string }[]; detail?: string }
    if (!response.ok) throw new PublishError(`list failed (${response.status}): ${body.detail ?? ''}`, response.status)
    for (const m of body.models ?? []) console.log(`${m.name}\tv${m.version}\t${m.priceWei} wei\t${(m.size / 1024).toFixed(0)} KiB\tsha256 ${m.sha256}`)
    return 0
  }

  if (!file) throw new UsageError('publish needs the .onnx file')
  if (!values.name || !values['price-wei'] || !values['payout-address']) throw new UsageError('publish needs --name, --price-wei and --payout-address')
  let bar: ReturnType<typeof progressBar> | undefined
  const { model, created } = await publishModelFile({
    edgeUrl,
    apiKey,
    file,
    name: values.name,
    priceWei: values['price-wei'],
    payoutAddress: values['payout-address'],
    ...(values.description !== undefined && { description: values.description }),
    onProgress: (sent, total) => {
      bar ??= progressBar(`uploading ${file}`, total)
      bar.update(sent)
    },
  })
  bar?.finish()
  console.log(`${created ? 'published' : 'already published (same file)'}: ${model.name} version ${model.version}, sha256 ${model.sha256}, ${model.priceWei} wei per inference`)
  for (const spec of model.inputs) console.log(`  input  ${spec.name} ${spec.datatype} [${spec.shape.join(',')}]`)
  for (const spec of model.outputs) console.log(`  output ${spec.name} ${spec.datatype} [${spec.shape.join(',')}]`)
  return 0
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) console.error(`${error.message}\n\n${USAGE}`)
    else console.error(error instanceof PublishError ? error.message : error)
    process.exit(error instanceof UsageError ? 2 : 1)
  },
)
