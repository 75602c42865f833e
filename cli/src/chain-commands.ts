/**
 * The on-chain commands of `depinfer`, for providers (stake, register devices, unstake), earners (claim
 * payouts), payers (deposit, withdraw) and operators (deploy the contracts): their command line, checked in full (options,
 * amounts, addresses, DEPINFER_PRIVATE_KEY) before the edge or the chain is asked anything.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { messageOf } from '@depinfer/shared'
import { addressFromEnv, chainTarget, connect, connectRpc, rpcUrlFromEnv, signerFromEnv } from './chain.js'
import { DEFAULT_DELAY_SECONDS, deployContracts, parseDelay, requireRpcUrl } from './deploy.js'
import { EdgeSession } from './edge-session.js'
import { CliError, UsageError } from './errors.js'
import { cancelWithdrawal, deposit, withdraw } from './escrow.js'
import { parseAddress, parseEthAmount } from './eth.js'
import { claimPayout, showPayouts } from './payouts.js'
import { cancelUnstake, deviceAccount, printProviderStatus, registerDevice, unregisterDevice, unstake } from './provider.js'

const OPTIONS = {
  'device-key': { type: 'string' },
  stake: { type: 'string' },
  address: { type: 'string' },
  account: { type: 'string' },
  for: { type: 'string' },
  amount: { type: 'string' },
  submitter: { type: 'string' },
  admin: { type: 'string' },
  'min-stake': { type: 'string' },
  'withdrawal-delay': { type: 'string' },
  'unstake-delay': { type: 'string' },
  slasher: { type: 'string', multiple: true },
  'attestations-only': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies NonNullable<ParseArgsConfig['options']>

type Option = Exclude<keyof typeof OPTIONS, 'help'>

/** Each command's options and how many positionals (after the command) it takes at most. */
const COMMANDS: Record<string, { options: readonly Option[]; positionals: number }> = {
  'provider register': { options: ['device-key', 'stake'], positionals: 0 },
  'provider status': { options: ['address'], positionals: 0 },
  'provider unstake': { options: ['amount'], positionals: 0 },
  'provider cancel-unstake': { options: [], positionals: 0 },
  'provider unregister': { options: ['device-key'], positionals: 1 },
  'payouts show': { options: [], positionals: 1 },
  'payouts claim': { options: ['account'], positionals: 0 },
  'escrow deposit': { options: ['for'], positionals: 1 },
  'escrow withdraw': { options: ['amount'], positionals: 0 },
  'escrow cancel-withdrawal': { options: [], positionals: 0 },
  'contracts deploy': { options: ['submitter', 'admin', 'min-stake', 'withdrawal-delay', 'unstake-delay', 'slasher', 'attestations-only'], positionals: 0 },
}

/** Runs `argv` (starting with one of CHAIN_GROUPS, chain-usage.ts); prints `usage` for --help. Returns the exit code. */
export async function runChainCommand(argv: string[], env: NodeJS.ProcessEnv, usage: string): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS })
  } catch (error) {
    // node:util's own words name the option (e.g. "Unknown option '--stakes'").
    throw new UsageError(messageOf(error))
  }
  const { positionals, values } = parsed
  if (values.help) {
    console.log(usage)
    return 0
  }
  const [group, command, ...rest] = positionals
  const name = `${group} ${command ?? ''}`.trim()
  const spec = COMMANDS[name]
  if (!spec) throw new UsageError(`unknown command: depinfer ${name}`)
  for (const option of Object.keys(values) as (keyof typeof values)[]) {
    if (option !== 'help' && !spec.options.includes(option)) throw new UsageError(`${name} takes no --${option}`)
  }
  if (rest.length > spec.positionals) throw new UsageError(`${name} takes ${spec.positionals === 0 ? 'no argument' : 'one argument'}, got ${JSON.stringify(rest.join(' ').slice(0, 100))}`)
  const edge = new EdgeSession(env)

  switch (name) {
    case 'provider register': {
      const path = values['device-key']
      if (!path) throw new UsageError("provider register needs --device-key <path>: the device's key file (from depinfer-agent init)")
      const stake = values.stake === undefined ? undefined : parseEthAmount(values.stake, '--stake')
      const provider = signerFromEnv(env, "the provider's account")
      const device = await deviceAccount(path)
      const conn = await connect(await chainTarget('providerRegistry', env, edge))
      await registerDevice({ conn, provider, device, ...(stake !== undefined && { stake }) })
      return 0
    }
    case 'provider status': {
      const provider = values.address === undefined ? addressFromEnv(env, "the provider's account") : parseAddress(values.address, '--address')
      if (!provider) throw new CliError("provider status needs --address <0x…>, or DEPINFER_PRIVATE_KEY to show its account's", 2)
      await printProviderStatus(await connect(await chainTarget('providerRegistry', env, edge)), provider)
      return 0
    }
    case 'provider unstake': {
      const amount = values.amount === undefined ? undefined : parseEthAmount(values.amount, '--amount')
      const provider = signerFromEnv(env, "the provider's account")
      await unstake(await connect(await chainTarget('providerRegistry', env, edge)), provider, amount)
      return 0
    }
    case 'provider cancel-unstake': {
      const provider = signerFromEnv(env, "the provider's account")
      await cancelUnstake(await connect(await chainTarget('providerRegistry', env, edge)), provider)
      return 0
    }
    case 'provider unregister': {
      const path = values['device-key']
      if ((rest[0] === undefined) === (path === undefined)) {
        throw new UsageError("provider unregister needs the device: its address (depinfer provider unregister 0x…) or --device-key <path>, not both")
      }
      const device = path === undefined ? parseAddress(rest[0]!, 'the device address') : (await deviceAccount(path)).address
      const provider = signerFromEnv(env, "the provider's account")
      await unregisterDevice(await connect(await chainTarget('providerRegistry', env, edge)), provider, device)
      return 0
    }
    case 'payouts show': {
      const account = rest[0] === undefined ? addressFromEnv(env, 'the account') : parseAddress(rest[0], 'the address')
      if (!account) throw new CliError("payouts show needs an address (depinfer payouts show 0x…), or DEPINFER_PRIVATE_KEY to show its account's", 2)
      await showPayouts(edge, account)
      return 0
    }
    case 'payouts claim': {
      const account = values.account === undefined ? undefined : parseAddress(values.account, '--account')
      const sender = signerFromEnv(env, 'the account sending the claim (any account with ETH for gas; the earnings go to --account)')
      await claimPayout({ edge, env, sender, account: account ?? sender.address })
      return 0
    }
    case 'escrow deposit': {
      if (rest[0] === undefined) throw new UsageError('escrow deposit needs the amount in ETH (e.g. depinfer escrow deposit 0.5)')
      const amount = parseEthAmount(rest[0], 'the amount')
      const beneficiary = values.for === undefined ? undefined : parseAddress(values.for, '--for')
      const payer = signerFromEnv(env, "the payer's account")
      await deposit(await connect(await chainTarget('escrow', env, edge)), payer, amount, beneficiary)
      return 0
    }
    case 'escrow withdraw': {
      const amount = values.amount === undefined ? undefined : parseEthAmount(values.amount, '--amount')
      const payer = signerFromEnv(env, "the payer's account")
      await withdraw(await connect(await chainTarget('escrow', env, edge)), payer, amount)
      return 0
    }
    case 'escrow cancel-withdrawal': {
      const payer = signerFromEnv(env, "the payer's account")
      await cancelWithdrawal(await connect(await chainTarget('escrow', env, edge)), payer)
      return 0
    }
    case 'contracts deploy': {
      if (!values.submitter) throw new UsageError("contracts deploy needs --submitter <0x…>: the edge's account, whose key goes into the Worker's secrets")
      // The contracts refuse the zero address (ZeroAddress), but only once the ones before are deployed.
      const nonZero = (text: string, what: string) => {
        const address = parseAddress(text, what)
        if (BigInt(address) === 0n) throw new UsageError(`${what} must not be the zero address`)
        return address
      }
      const submitter = nonZero(values.submitter, '--submitter')
      const admin = values.admin === undefined ? undefined : nonZero(values.admin, '--admin')
      let payments
      if (values['attestations-only']) {
        const extra = (['min-stake', 'withdrawal-delay', 'unstake-delay', 'slasher'] as const).find((option) => values[option] !== undefined)
        if (extra) throw new UsageError(`--${extra} is for the Escrow and ProviderRegistry, which --attestations-only does not deploy`)
      } else {
        if (values['min-stake'] === undefined) throw new UsageError("contracts deploy needs --min-stake <eth>: the stake a provider holds for its devices to get jobs (or --attestations-only)")
        payments = {
          minStake: parseEthAmount(values['min-stake'], '--min-stake'),
          withdrawalDelaySeconds: values['withdrawal-delay'] === undefined ? DEFAULT_DELAY_SECONDS : parseDelay(values['withdrawal-delay'], '--withdrawal-delay'),
          unstakeDelaySeconds: values['unstake-delay'] === undefined ? DEFAULT_DELAY_SECONDS : parseDelay(values['unstake-delay'], '--unstake-delay'),
          slashers: (values.slasher ?? []).map((slasher) => nonZero(slasher, '--slasher')),
        }
      }
      const rpcUrl = requireRpcUrl(rpcUrlFromEnv(env))
      const deployer = signerFromEnv(env, 'the deploying account (it pays for the deployments)')
      const rpc = await connectRpc(rpcUrl, 'DEPINFER_RPC_URL')
      await deployContracts({ rpc, rpcUrl, deployer, submitter, admin: admin ?? deployer.address, ...(payments && { payments }) })
      return 0
    }
  }
  throw new UsageError(`unknown command: depinfer ${name}`)
}
