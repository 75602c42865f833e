/**
 * A JSON-RPC pass-through in front of the local chain that can fail on command — a fault
 * injector, because a real node cannot be made to fail at exactly these points: `down` drops
 * every connection (RPC unreachable), `lose-send-result` forwards eth_sendRawTransaction (the
 * transaction really lands) but drops the answer, as when the connection dies mid-request;
 * `refuse-send` answers eth_sendRawTransaction with an error without forwarding it (nothing is
 * sent); `behind` answers a call pinned to a block number as a node that has not seen that block
 * yet (behind a load balancer, the node answering need not be the one that gave the number).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export type RpcProxyMode = 'pass' | 'down' | 'lose-send-result' | 'refuse-send' | 'behind'

export interface RpcProxy {
  url: string
  target: string
  mode: RpcProxyMode
  /** JSON-RPC methods forwarded so far, in order. */
  readonly methods: string[]
  close(): Promise<void>
}

interface RpcCall {
  id?: number
  method: string
  params?: unknown[]
}

export async function startRpcProxy(): Promise<RpcProxy> {
  const proxy = { target: '', mode: 'pass' as RpcProxyMode, methods: [] as string[] }
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      if (proxy.mode === 'down') {
        request.socket.destroy()
        return
      }
      const body = Buffer.concat(chunks)
      const calls = [JSON.parse(body.toString('utf8')) as RpcCall | RpcCall[]].flat()
      proxy.methods.push(...calls.map((c) => c.method))
      const pinned = calls.length === 1 && calls[0]!.method === 'eth_call' && /^0x[0-9a-f]+$/i.test(String(calls[0]!.params?.[1]))
      if (proxy.mode === 'refuse-send' && calls.some((c) => c.method === 'eth_sendRawTransaction')) {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: calls[0]!.id, error: { code: -32000, message: 'refused by the test proxy' } }))
        return
      }
      if (proxy.mode === 'behind' && pinned) {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: calls[0]!.id, error: { code: -32000, message: 'header not found' } }))
        return
      }
      fetch(proxy.target, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
        .then(async (upstream) => {
          const text = await upstream.text()
          if (proxy.mode === 'lose-send-result' && calls.some((c) => c.method === 'eth_sendRawTransaction')) {
            request.socket.destroy()
            return
          }
          response.writeHead(upstream.status, { 'content-type': 'application/json' }).end(text)
        })
        .catch(() => request.socket.destroy())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return Object.assign(proxy, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  })
}
