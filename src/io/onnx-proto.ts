/**
 * The part of ONNX's protobuf schema an exported model uses, as a protobufjs reflection root: the bytes
 * are encoded by protobufjs, not by hand. Message and field numbers are onnx/onnx.proto's (IR version 8+,
 * proto2 syntax): ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto,
 * TypeProto(.Tensor), TensorShapeProto(.Dimension), OperatorSetIdProto, StringStringEntryProto. Fields we
 * never write are left out of the descriptor (a reader skips unknown fields; we only write).
 */
import protobuf from "protobufjs/light.js";
import { QuantlabError } from "../core/errors.js";

/** TensorProto.DataType (onnx.proto) */
export const OnnxDataType = { FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, FLOAT8E4M3FN: 17, FLOAT8E4M3FNUZ: 18, FLOAT8E5M2: 19, FLOAT8E5M2FNUZ: 20, UINT4: 21 } as const;
export type OnnxDataType = (typeof OnnxDataType)[keyof typeof OnnxDataType];

/** AttributeProto.AttributeType (onnx.proto) */
export const OnnxAttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

const f = (type: string, id: number, rule?: "repeated") => (rule ? { type, id, rule } : { type, id });

const root = protobuf.Root.fromJSON({
  nested: {
    onnx: {
      nested: {
        StringStringEntryProto: { fields: { key: f("string", 1), value: f("string", 2) } },
        OperatorSetIdProto: { fields: { domain: f("string", 1), version: f("int64", 2) } },
        TensorProto: {
          fields: {
            dims: f("int64", 1, "repeated"),
            dataType: f("int32", 2),
            name: f("string", 8),
            rawData: f("bytes", 9),
            docString: f("string", 12),
            externalData: f("StringStringEntryProto", 13, "repeated"),
            dataLocation: f("int32", 14), // DataLocation: DEFAULT = 0, EXTERNAL = 1
          },
        },
        AttributeProto: {
          fields: {
            name: f("string", 1),
            f: f("float", 2),
            i: f("int64", 3),
            s: f("bytes", 4),
            t: f("TensorProto", 5),
            floats: f("float", 7, "repeated"),
            ints: f("int64", 8, "repeated"),
            type: f("int32", 20),
          },
        },
        NodeProto: {
          fields: {
            input: f("string", 1, "repeated"),
            output: f("string", 2, "repeated"),
            name: f("string", 3),
            opType: f("string", 4),
            attribute: f("AttributeProto", 5, "repeated"),
            domain: f("string", 7),
          },
        },
        TensorShapeProto: {
          fields: { dim: f("Dimension", 1, "repeated") },
          nested: { Dimension: { fields: { dimValue: f("int64", 1), dimParam: f("string", 2) } } },
        },
        TypeProto: {
          fields: { tensorType: f("TensorTypeProto", 1) },
        },
        // TypeProto.Tensor in onnx.proto (a nested message; the name does not reach the wire)
        TensorTypeProto: { fields: { elemType: f("int32", 1), shape: f("TensorShapeProto", 2) } },
        ValueInfoProto: { fields: { name: f("string", 1), type: f("TypeProto", 2) } },
        GraphProto: {
          fields: {
            node: f("NodeProto", 1, "repeated"),
            name: f("string", 2),
            initializer: f("TensorProto", 5, "repeated"),
            docString: f("string", 10),
            input: f("ValueInfoProto", 11, "repeated"),
            output: f("ValueInfoProto", 12, "repeated"),
          },
        },
        ModelProto: {
          fields: {
            irVersion: f("int64", 1),
            producerName: f("string", 2),
            producerVersion: f("string", 3),
            docString: f("string", 6),
            graph: f("GraphProto", 7),
            opsetImport: f("OperatorSetIdProto", 8, "repeated"),
            metadataProps: f("StringStringEntryProto", 14, "repeated"),
          },
        },
      },
    },
  },
});

const ModelProto = root.lookupType("onnx.ModelProto");

export interface OnnxTensor {
  name: string;
  dataType: OnnxDataType;
  dims: number[];
  /** little-endian element bytes (absent when stored externally) */
  rawData?: Uint8Array;
  /** external data: file name relative to the model, offset and length in bytes */
  external?: { location: string; offset: number; length: number };
}

export type OnnxAttr =
  | { name: string; i: number }
  | { name: string; f: number }
  | { name: string; ints: number[] }
  | { name: string; t: OnnxTensor };

export interface OnnxNode {
  opType: string;
  domain?: string;
  name: string;
  input: string[];
  output: string[];
  attribute?: OnnxAttr[];
}

export interface OnnxValueInfo {
  name: string;
  elemType: OnnxDataType;
  /** a number is a fixed size, a string a symbolic dimension (dim_param) */
  shape: (number | string)[];
}

export interface OnnxModel {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graphName: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  metadata: Record<string, string>;
}

function tensorObject(t: OnnxTensor): Record<string, unknown> {
  const o: Record<string, unknown> = { name: t.name, dataType: t.dataType, dims: t.dims };
  if (t.external) {
    o.dataLocation = 1;
    o.externalData = [
      { key: "location", value: t.external.location },
      { key: "offset", value: String(t.external.offset) },
      { key: "length", value: String(t.external.length) },
    ];
  } else o.rawData = t.rawData ?? new Uint8Array(0);
  return o;
}

function attrObject(a: OnnxAttr): Record<string, unknown> {
  if ("i" in a) return { name: a.name, type: OnnxAttrType.INT, i: a.i };
  if ("f" in a) return { name: a.name, type: OnnxAttrType.FLOAT, f: a.f };
  if ("ints" in a) return { name: a.name, type: OnnxAttrType.INTS, ints: a.ints };
  return { name: a.name, type: OnnxAttrType.TENSOR, t: tensorObject(a.t) };
}

function valueInfoObject(v: OnnxValueInfo): Record<string, unknown> {
  return {
    name: v.name,
    type: { tensorType: { elemType: v.elemType, shape: { dim: v.shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** The ModelProto bytes of a model (protobufjs encoding). */
export function encodeOnnxModel(m: OnnxModel): Uint8Array {
  const obj = {
    irVersion: m.irVersion,
    producerName: m.producerName,
    producerVersion: m.producerVersion,
    opsetImport: m.opsets.map((o) => ({ domain: o.domain, version: o.version })),
    metadataProps: Object.entries(m.metadata).map(([key, value]) => ({ key, value })),
    graph: {
      name: m.graphName,
      node: m.nodes.map((n) => ({ opType: n.opType, name: n.name, input: n.input, output: n.output, ...(n.domain ? { domain: n.domain } : {}), attribute: (n.attribute ?? []).map(attrObject) })),
      initializer: m.initializers.map(tensorObject),
      input: m.inputs.map(valueInfoObject),
      output: m.outputs.map(valueInfoObject),
    },
  };
  const err = ModelProto.verify(obj);
  if (err) throw new QuantlabError("E_INTERNAL", `ONNX ModelProto: ${err}`);
  return ModelProto.encode(ModelProto.fromObject(obj)).finish();
}

/** Decodes ModelProto bytes into protobufjs's plain object form (tests: read back what we wrote). */
export function decodeOnnxModel(bytes: Uint8Array): Record<string, unknown> {
  return ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, bytes: Array, defaults: false }) as Record<string, unknown>;
}
