/**
 * `depinfer` command line for model developers, providers and payers.
 *
 *   depinfer models publish <file.onnx> --name <name> --price-wei <n> --payout-address <0x…> [--description <text>]
 *                           [--int8 [--class-output <name>]… [--shape <input>=<d1,d2,…>]… | --int8-file <q.onnx> --int8-report <report.json>] [--min-agreement <0..1>]
 *   depinfer models list [--name <name>]
 *   depinfer provider|payouts|escrow|contracts …   on-chain commands (chain-commands.ts)
 *
 * The edge and the key come from DEPINFER_URL (default http://127.0.0.1:8787, what `npm start`
 * runs) and DEPINFER_API_KEY; the chain commands' account from DEPINFER_PRIVATE_KEY.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { loggedProgress, terminalProgress, type TransferProgress } from '@depinfer/device-agent/progress'
import { DEFAULT_MAX_MODEL_BYTES, messageOf } from '@depinfer/shared'
import { CHAIN_GROUPS, CHAIN_USAGE } from './chain-usage.js'
import { edgeUrlFrom, requestEdge } from './edge.js'
import { CliError, readUserFile, UsageError } from './errors.js'
import { describeReport, quantizeForPublishing, readInt8Variant, type Int8Variant } from './int8.js'

/** A file's size as listings show it: bytes under 1 KiB (a tiny model is not "0 KiB"), else KiB. */
const fileSize = (bytes: number): string => (bytes < 1024 ? `${bytes} B` : `${Math.round(bytes / 1024)} KiB`)
import { checkPublishTerms, publishModelFile, type PublishedVersion } from './publish.js'

const USAGE = `usage:
  depinfer models publish <file.onnx> --name <name> --price-wei <n> --payout-address <0x…> [--description <text>]
                          [--int8 [--class-output <name>]… [--shape <input>=<d1,d2,…>]… | --int8-file <q.onnx> --int8-report <report.json>] [--min-agreement <0..1>]
  depinfer models list [--name <name>]
${CHAIN_USAGE.commands}

  --int8              also publish an int8 variant: quantized here (the agent's quantizer), compared with
                      fp32 on seeded sample inputs; devices run it where its top-1 agreement reaches
                      --min-agreement (default 0.99), else the fp32 file
  --class-output      with --int8: the output whose top-1 agreement is judged, repeatable (default: every
                      output with a class axis or integer labels, the lowest counts); the others count
                      for max abs error only
  --shape             with --int8: the sizes of an input's sample tensors, e.g. x=1,3,48,192, repeatable
                      (default: the model's fixed sizes, batch 1, and a guess for the other open ones)
  --int8-file, --int8-report
                      publish an int8 variant made elsewhere, with its depinfer-quantize --json report
${CHAIN_USAGE.options}
environment: DEPINFER_URL (default http://127.0.0.1:8787), DEPINFER_API_KEY (required for models and payouts, and to
  read the chain settings from the edge), DEPINFER_EDGE_TIMEOUT_SEC (give up on an edge silent this long, default 30)
${CHAIN_USAGE.environment}`

const OPTIONS = {
  name: { type: 'string' },
  'price-wei': { type: 'string' },
  'payout-address': { type: 'string' },
  description: { type: 'string' },
  int8: { type: 'boolean' },
  'int8-file': { type: 'string' },
  'int8-report': { type: 'string' },
  'min-agreement': { type: 'string' },
  // Repeatable rather than comma-separated, as for depinfer-quantize: an output name may hold a comma.
  'class-output': { type: 'string', multiple: true },
  shape: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const satisfies NonNullable<ParseArgsConfig['options']>

function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, options: OPTIONS })
  } catch (error) {
    // node:util's own words name the option (e.g. "Unknown option '--prize-wei'").
    throw new UsageError(messageOf(error))
  }
}

async function main(argv: string[]): Promise<number> {
  // Their options are their own: parsed there, so neither set accepts the other's. Imported
  // only to run one: they bring viem (chain-usage.ts).
  if (argv[0] !== undefined && CHAIN_GROUPS.includes(argv[0])) return (await import('./chain-commands.js')).runChainCommand(argv, process.env, USAGE)
  const { positionals, values } = parseCommandLine(argv)
  const [group, command, file] = positionals
  if (values.help || group !== 'models' || (command !== 'publish' && command !== 'list')) {
    console.log(USAGE)
    return values.help ? 0 : 2
  }
  const edgeUrl = edgeUrlFrom(process.env.DEPINFER_URL)
  const apiKey = process.env.DEPINFER_API_KEY
  if (!apiKey) throw new UsageError('set DEPINFER_API_KEY to your API key (npm start prints one)')

  if (command === 'list') {
    const url = new URL('/api/models', edgeUrl)
    if (values.name) url.searchParams.set('name', values.name)
    const { json } = await requestEdge(edgeUrl, url, { headers: { Authorization: `Bearer ${apiKey}` } }, 'list')
    const models = (json.models ?? []) as (PublishedVersion & { size: number })[]
    // On stderr: stdout stays one line per version, empty when there are none, for scripts.
    if (models.length === 0) console.error(values.name ? `no published model named ${JSON.stringify(values.name)}` : 'no models published yet')
    for (const m of models) {
      console.log(`${m.name}\tv${m.version}\t${m.priceWei} wei\t${fileSize(m.size)}\tsha256 ${m.sha256}`)
      for (const v of m.variants ?? []) console.log(`  ${v.kind}\t${fileSize(v.size)}\tsha256 ${v.sha256}\t${describeReport(v.report, v.minAgreement)}`)
    }
    return 0
  }

  if (!file) throw new UsageError('publish needs the .onnx file')
  if (!values.name || !values['price-wei'] || !values['payout-address']) throw new UsageError('publish needs --name, --price-wei and --payout-address')
  // Before anything slow (reading, quantizing, uploading a large file) is done for nothing.
  checkPublishTerms(values.name, values['price-wei'], values['payout-address'])
  const bytes = await readUserFile(file, 'the model file')
  if (bytes.byteLength === 0) throw new CliError(`the model file ${file} is empty: an .onnx file holds the model's graph and weights`, 2)
  const int8 = await int8Variant(file, bytes, values)
  // One bar per file, the int8 variant's first: each is ended when the next one starts.
  const progressOf = process.stderr.isTTY
    ? terminalProgress(process.stderr)
    : loggedProgress((line) => console.error(line), 2_000, Date.now, { doing: 'uploading', done: 'uploaded' })
  let bar: { file: string; progress: TransferProgress } | undefined
  const { model, created } = await publishModelFile({
    edgeUrl,
    apiKey,
    bytes,
    name: values.name,
    priceWei: values['price-wei'],
    payoutAddress: values['payout-address'],
    ...(values.description !== undefined && { description: values.description }),
    ...(int8 && { int8 }),
    onProgress: (which, sent, total) => {
      if (bar?.file !== which) {
        bar?.progress.end(true)
        const what = which === 'int8' ? 'the int8 variant' : file
        bar = { file: which, progress: progressOf(process.stderr.isTTY ? `uploading ${what}` : what) }
        bar.progress.start(total, 0)
      }
      bar.progress.update(sent)
    },
    onResume: (which, held, count, heldBytes, totalBytes) => {
      bar?.progress.end(true)
      const what = which === 'int8' ? 'the int8 variant' : file
      console.error(`resuming the upload of ${what}: the edge holds ${held} of its ${count} parts`)
      bar = { file: which, progress: progressOf(process.stderr.isTTY ? `uploading ${what}` : what) }
      bar.progress.start(totalBytes, heldBytes)
    },
    onStored: (which) => console.error(`the edge holds ${which === 'int8' ? 'the int8 variant' : file} already: nothing to upload`),
  })
  bar?.progress.end(true)
  const what = created ? 'published' : `already published (same file${int8 ? ' and variant' : ''}, same terms)`
  console.log(`${what}: ${model.name} version ${model.version}, sha256 ${model.sha256}, price ${model.priceWei} wei per inference (callers pay it plus the edge's provider fee: parameters.price_wei in the model's metadata)`)
  for (const spec of model.inputs) console.log(`  input  ${spec.name} ${spec.datatype} [${spec.shape.join(',')}]`)
  for (const spec of model.outputs) console.log(`  output ${spec.name} ${spec.datatype} [${spec.shape.join(',')}]`)
  for (const v of model.variants) console.log(`  ${v.kind} variant sha256 ${v.sha256}, ${fileSize(v.size)}: ${describeReport(v.report, v.minAgreement)}`)
  if (bytes.byteLength > DEFAULT_MAX_MODEL_BYTES) {
    // Else the callers' 503s say only that no device serves it yet, and the publisher never hears why.
    console.error(
      `note: ${file} is ${bytes.byteLength} bytes, over the ${DEFAULT_MAX_MODEL_BYTES} that devices serving "published": "*" take by default (maxModelBytes): ` +
        'only devices that name the model, or raise their maxModelBytes, will serve it',
    )
  }
  return 0
}

/** The int8 variant the options ask for (printing its report), or undefined. */
async function int8Variant(
  file: string,
  bytes: Uint8Array,
  values: { int8?: boolean; 'int8-file'?: string; 'int8-report'?: string; 'min-agreement'?: string; 'class-output'?: string[]; shape?: string[] },
): Promise<Int8Variant | undefined> {
  const elsewhere = values['int8-file'] !== undefined || values['int8-report'] !== undefined
  if (values.int8 && elsewhere) throw new UsageError('--int8 quantizes here; --int8-file and --int8-report publish a variant made elsewhere: not both')
  if (elsewhere && (values['int8-file'] === undefined || values['int8-report'] === undefined)) throw new UsageError('--int8-file and --int8-report go together')
  const classOutputs = values['class-output'] ?? []
  if (classOutputs.length > 0 && !values.int8) {
    // A variant made elsewhere was judged when it was measured: its report says on which outputs.
    throw new UsageError(
      elsewhere
        ? '--class-output goes with --int8: a variant made elsewhere is judged as its report says (depinfer-quantize --class-output)'
        : '--class-output names the output --int8 judges the int8 variant on: add --int8',
    )
  }
  const shapes = values.shape ?? []
  if (shapes.length > 0 && !values.int8) {
    throw new UsageError(
      elsewhere
        ? '--shape goes with --int8: a variant made elsewhere was measured as its report says (depinfer-quantize --shape)'
        : '--shape sets the sizes of the sample inputs --int8 compares the int8 variant with fp32 on: add --int8',
    )
  }
  let minAgreement: number | undefined
  if (values['min-agreement'] !== undefined) {
    minAgreement = /^[0-9]*\.?[0-9]+$/.test(values['min-agreement']) ? Number(values['min-agreement']) : Number.NaN
    if (!(minAgreement >= 0 && minAgreement <= 1)) throw new UsageError('--min-agreement must be a number between 0 and 1 (a share of top-1 agreement)')
  }
  if (!values.int8 && !elsewhere) {
    if (minAgreement !== undefined) throw new UsageError('--min-agreement applies to an int8 variant: add --int8 (or --int8-file and --int8-report)')
    return undefined
  }
  if (!elsewhere) console.log(`quantizing ${file} to int8 and comparing it with fp32…`)
  const variant = elsewhere
    ? await readInt8Variant(values['int8-file']!, values['int8-report']!, minAgreement, { file, bytes })
    : await quantizeForPublishing(bytes, file, minAgreement, { classOutputs, shapes })
  console.log(variant.text)
  return variant
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // An expected failure is one line saying what to fix; anything else is a bug in the CLI,
    // whose stack is what a report of it needs.
    if (error instanceof UsageError) console.error(`${error.message}\n\n${USAGE}`)
    else console.error(error instanceof CliError ? error.message : error)
    process.exit(error instanceof CliError ? error.exitCode : 1)
  },
)
