/**
 * What `depinfer` says of its on-chain commands (chain-commands.ts) in its usage, apart from them:
 * main.ts imports those, and viem with them, only to run one (its models commands start in half
 * the time without: 0.5 s instead of 1.2 s, measured).
 */

export const CHAIN_GROUPS: readonly string[] = ['provider', 'payouts', 'escrow', 'contracts']

export const CHAIN_USAGE = {
  commands: `  depinfer provider register --device-key <path> [--stake <eth>]
  depinfer provider status [--address <0x…>]
  depinfer provider unstake [--amount <eth>]
  depinfer provider cancel-unstake
  depinfer provider unregister <0x…device> | --device-key <path>
  depinfer payouts show [<0x…>]
  depinfer payouts claim [--account <0x…>]
  depinfer escrow deposit <eth> [--for <0x…>]
  depinfer escrow withdraw [--amount <eth>]
  depinfer escrow cancel-withdrawal
  depinfer contracts deploy --submitter <0x…> --min-stake <eth> [--admin <0x…>] [--withdrawal-delay <24h>]
                            [--unstake-delay <24h>] [--slasher <0x…>]… | --submitter <0x…> --attestations-only`,
  options: `  --device-key        the device's key file (from depinfer-agent init): it signs the device's consent
  --stake             the stake to hold, in ETH: tops it up to this (default: the registry's minimum)
  --address, <0x…>    whose stake or earnings to show (default: DEPINFER_PRIVATE_KEY's account)
  --account           whose earnings to claim (default: DEPINFER_PRIVATE_KEY's account); any account
                      may send the claim, the Escrow pays the earner
  --for               deposit into another payer's balance
  --amount            escrow withdraw: request a withdrawal of this much, in ETH (default: the whole
                      balance); provider unstake: request an unstake of this much (default: the whole
                      stake; the provider's devices get no jobs meanwhile). Run the command again once
                      the delay has passed to receive it
  --submitter         contracts deploy: the edge's account (its SUBMITTER_PRIVATE_KEY), which posts attestation
                      batches and settles jobs; not the deployer's, which stays out of the Worker
  --min-stake         contracts deploy: the ProviderRegistry's minimum stake per provider, in ETH
  --admin             contracts deploy: who may grant and revoke the contracts' roles (default: the deployer)
  --withdrawal-delay, --unstake-delay
                      contracts deploy: how long a payer's withdrawal and a provider's unstake wait, at least
                      1h (seconds, or with s, m, h, d; default 24h)
  --slasher           contracts deploy: an account that may slash stakes (repeat for more; default none)
  --attestations-only contracts deploy: the AttestationRegistry alone (every job free, any device routed)`,
  environment: `  DEPINFER_PRIVATE_KEY: the account that signs and pays the chain commands' transactions
  DEPINFER_RPC_URL, DEPINFER_PROVIDER_REGISTRY_ADDRESS, DEPINFER_ESCROW_ADDRESS: default, the edge's GET /api/chain
  (contracts deploy: DEPINFER_RPC_URL is the chain to deploy to, DEPINFER_PRIVATE_KEY the deployer)`,
}
