import { describe, expect, it } from 'vitest'
import { BYTES_PER_ELEMENT, DATATYPES, datatypeFromOrtType, isDatatype, ORT_TYPE_BY_DATATYPE } from './datatypes.js'

describe('datatypes', () => {
  it('carries exactly the twelve numeric/bool v2 datatypes', () => {
    expect([...DATATYPES].sort()).toEqual(['BOOL', 'FP16', 'FP32', 'FP64', 'INT16', 'INT32', 'INT64', 'INT8', 'UINT16', 'UINT32', 'UINT64', 'UINT8'])
  })

  it.each(DATATYPES.map((d) => [d]))('isDatatype(%s) is true', (datatype) => {
    expect(isDatatype(datatype)).toBe(true)
  })

  it.each(['fp32', 'BYTES', 'BF16', 'FP8', '', 'INT', 'toString', 'constructor'])('isDatatype(%j) is false', (value) => {
    expect(isDatatype(value)).toBe(false)
  })

  it.each([
    ['BOOL', 1], ['UINT8', 1], ['INT8', 1], ['UINT16', 2], ['INT16', 2], ['FP16', 2],
    ['UINT32', 4], ['INT32', 4], ['FP32', 4], ['UINT64', 8], ['INT64', 8], ['FP64', 8],
  ] as const)('%s elements take %i bytes', (datatype, size) => {
    expect(BYTES_PER_ELEMENT[datatype]).toBe(size)
  })

  it.each([
    ['bool', 'BOOL'], ['uint8', 'UINT8'], ['int8', 'INT8'], ['uint16', 'UINT16'], ['int16', 'INT16'],
    ['float16', 'FP16'], ['uint32', 'UINT32'], ['int32', 'INT32'], ['float32', 'FP32'],
    ['uint64', 'UINT64'], ['int64', 'INT64'], ['float64', 'FP64'],
  ] as const)('maps onnxruntime type %s to %s and back', (ortType, datatype) => {
    expect(datatypeFromOrtType(ortType)).toBe(datatype)
    expect(ORT_TYPE_BY_DATATYPE[datatype]).toBe(ortType)
  })

  it.each(['string', 'bfloat16', 'float', 'double', 'FP32', ''])('has no datatype for onnxruntime type %j', (ortType) => {
    expect(datatypeFromOrtType(ortType)).toBeUndefined()
  })
})
