/** Bundles the edge Worker once for every end-to-end suite (as `wrangler deploy` would). */
import { buildEdge } from '../scripts/local/edge.js'

export default async function setup(): Promise<void> {
  await buildEdge()
}
