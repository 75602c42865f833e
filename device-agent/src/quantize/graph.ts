/**
 * Graph bookkeeping for rewrites: where constants live, who consumes a value, fresh names, and
 * node builders.
 *
 * Exporters put weights in two places: graph initializers (PyTorch) or `Constant` nodes
 * (paddle2onnx, i.e. all the bundled PaddleOCR models), so "is this input a constant" looks at
 * both.
 */
import {
  type Attribute,
  type Graph,
  type Model,
  type Node,
  type Tensor,
  type ValueInfo,
} from './onnx-proto.js'

export class GraphIndex {
  readonly graph: Graph
  /** Constant values by name: initializers, and Constant nodes' `value` tensors. */
  readonly constants = new Map<string, Tensor>()
  /** The Constant node that produces a constant (absent for initializers). */
  readonly constantNodes = new Map<string, Node>()
  readonly #names = new Set<string>()
  readonly #graphOutputs: Set<string>

  constructor(graph: Graph) {
    this.graph = graph
    for (const t of graph.initializer) if (t.name !== undefined) this.constants.set(t.name, t)
    for (const node of graph.node) {
      if (node.opType === 'Constant' && (node.domain ?? '') === '' && node.output.length === 1) {
        const value = node.attribute.find((a) => a.name === 'value')?.t
        if (value !== undefined) {
          this.constants.set(node.output[0]!, value)
          this.constantNodes.set(node.output[0]!, node)
        }
      }
      for (const name of [...node.input, ...node.output]) this.#names.add(name)
      if (node.name !== undefined) this.#names.add(node.name)
    }
    for (const name of this.constants.keys()) this.#names.add(name)
    for (const v of [...graph.input, ...graph.output, ...graph.valueInfo]) if (v.name !== undefined) this.#names.add(v.name)
    this.#graphOutputs = new Set(graph.output.map((v) => v.name ?? ''))
  }

  isGraphOutput(name: string): boolean {
    return this.#graphOutputs.has(name)
  }

  /** Nodes reading `name` (subgraphs of If/Loop included: they may capture outer values). */
  consumers(name: string): Node[] {
    return this.graph.node.filter((n) => n.input.includes(name) || n.attribute.some((a) => graphUses(a, name)))
  }

  /** A name no value or node in the graph has yet, derived from `base`. */
  fresh(base: string): string {
    let name = base
    for (let i = 1; this.#names.has(name); i++) name = `${base}_${i}`
    this.#names.add(name)
    return name
  }

  /** Adds an initializer under a fresh name derived from `tensor.name`; returns the name. */
  addInitializer(tensor: Tensor): string {
    const name = this.fresh(tensor.name ?? 'const')
    const t = { ...tensor, name }
    this.graph.initializer.push(t)
    this.constants.set(name, t)
    return name
  }
}

function graphUses(attribute: Attribute, name: string): boolean {
  const graphs = [...(attribute.g ? [attribute.g] : []), ...attribute.graphs]
  return graphs.some((g) => g.node.some((n) => n.input.includes(name) || n.attribute.some((a) => graphUses(a, name))))
}

export function node(opType: string, input: string[], output: string[], name: string, attribute: Attribute[] = [], domain?: string): Node {
  return { input, output, name, opType, attribute, ...(domain !== undefined && { domain }), unknown: [] }
}

/**
 * Drops initializers and Constant nodes nothing reads any more (the fp32 weights a rewrite
 * replaced), so the int8 model does not also carry them.
 */
export function removeUnusedConstants(graph: Graph): void {
  const used = new Set<string>(graph.output.map((v) => v.name ?? ''))
  const collect = (g: Graph) => {
    for (const n of g.node) {
      for (const input of n.input) used.add(input)
      for (const a of n.attribute) for (const sub of [...(a.g ? [a.g] : []), ...a.graphs]) collect(sub)
    }
  }
  collect(graph)
  graph.node = graph.node.filter((n) => !(n.opType === 'Constant' && (n.domain ?? '') === '' && n.output.every((o) => !used.has(o))))
  const inputs = new Set(graph.input.map((v) => v.name))
  graph.initializer = graph.initializer.filter((t) => used.has(t.name ?? '') || inputs.has(t.name))
}

/**
 * Orders nodes so every node comes after the producers of its inputs (ONNX requires it; rewrites
 * append nodes at the end). Stable: already-ordered nodes keep their relative order.
 */
export function topologicalSort(graph: Graph, outerNames: ReadonlySet<string> = new Set()): void {
  const available = new Set<string>(outerNames)
  for (const v of graph.input) if (v.name !== undefined) available.add(v.name)
  for (const t of graph.initializer) if (t.name !== undefined) available.add(t.name)
  available.add('') // an empty input name means "optional input omitted"
  const pending = [...graph.node]
  const ordered: Node[] = []
  while (pending.length > 0) {
    const before = pending.length
    for (let i = 0; i < pending.length; ) {
      const n = pending[i]!
      if (n.input.every((x) => available.has(x))) {
        ordered.push(n)
        for (const o of n.output) available.add(o)
        pending.splice(i, 1)
      } else i++
    }
    if (pending.length === before) {
      // Inputs nobody produces: outer-scope values of a subgraph, or a graph that was not sorted
      // to begin with. Keep the rest in their order rather than lose nodes.
      ordered.push(...pending)
      break
    }
  }
  graph.node = ordered
}

/** The opset version the model imports for `domain` ('' is the default ONNX domain). */
export function opsetVersion(model: Model, domain: string): number | undefined {
  const entry = model.opsetImport.find((o) => (o.domain ?? '') === domain || (domain === '' && o.domain === 'ai.onnx'))
  return entry?.version
}

/** Imports `domain` at `version` unless the model already imports it. */
export function ensureOpset(model: Model, domain: string, version: number): void {
  if (opsetVersion(model, domain) === undefined) model.opsetImport.push({ domain, version, unknown: [] })
}

/** A graph output/input declaration for a float tensor of unknown shape (TypeProto encoded by hand). */
export function floatValueInfo(name: string): ValueInfo {
  // TypeProto { tensor_type (1) { elem_type (1): FLOAT } } = 0a 02 08 01
  return { name, type: new Uint8Array([0x0a, 0x02, 0x08, 0x01]), unknown: [] }
}

/**
 * Drops nodes whose outputs nothing reads and that are not graph outputs (what a rewrite left
 * behind), repeatedly, since removing one can orphan its producers. onnxruntime keeps such nodes
 * and runs them.
 */
export function removeDeadNodes(graph: Graph): void {
  const outputs = new Set(graph.output.map((v) => v.name ?? ''))
  for (;;) {
    const used = new Set<string>(outputs)
    const collect = (g: Graph) => {
      for (const n of g.node) {
        for (const input of n.input) used.add(input)
        for (const a of n.attribute) for (const sub of [...(a.g ? [a.g] : []), ...a.graphs]) collect(sub)
      }
    }
    collect(graph)
    const kept = graph.node.filter((n) => n.output.some((o) => o !== '' && used.has(o)))
    if (kept.length === graph.node.length) return
    graph.node = kept
  }
}
