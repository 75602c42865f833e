/**
 * Tensor datatypes of the Open Inference Protocol (KServe v2 "Tensor Data Types") that depinfer
 * carries, with their element sizes and the onnxruntime type names they map to.
 */

export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
] as const

export type Datatype = (typeof DATATYPES)[number]

export function isDatatype(value: string): value is Datatype {
  return (DATATYPES as readonly string[]).includes(value)
}

export const BYTES_PER_ELEMENT: Record<Datatype, number> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  FP32: 4,
  FP64: 8,
}

/** onnxruntime's tensor type names (`Tensor.type`, `inputMetadata[].type`) by v2 datatype. */
export const ORT_TYPE_BY_DATATYPE: Record<Datatype, string> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
}

const DATATYPE_BY_ORT_TYPE = new Map(
  Object.entries(ORT_TYPE_BY_DATATYPE).map(([datatype, ortType]) => [ortType, datatype as Datatype]),
)

/** The v2 datatype for an onnxruntime type name, or undefined when depinfer cannot carry it. */
export function datatypeFromOrtType(ortType: string): Datatype | undefined {
  return DATATYPE_BY_ORT_TYPE.get(ortType)
}
