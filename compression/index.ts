/** Compression: quantization, bit packing, magnitude pruning and the compressed file format (docs/compression.md). */
export * from './quantize.ts';
export * from './bitpack.ts';
export * from './prune.ts';
export * from './format.ts';
