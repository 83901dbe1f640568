// Package safetensors reads and writes Hugging Face safetensors files and
// model folders.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// UTF-8 JSON, then the data buffer:
//
//	{"name": {"dtype": "BF16", "shape": [4096, 4096], "data_offsets": [begin, end]},
//	 "__metadata__": {"format": "pt"}}
//
// where data_offsets count bytes from the start of the data buffer. See
// https://github.com/huggingface/safetensors for the format.
//
// # Reading
//
// [Open] memory-maps a file read-only and validates its header before any
// tensor is touched; [File.Raw] hands out zero-copy slices of the mapping and
// [File.Float32] converts F32, F16 and BF16 tensors to a new []float32.
// [OpenFolder] opens a model folder as Hugging Face lays it out: either one
// model.safetensors, or model.safetensors.index.json plus the shards it names.
// Shards are opened (and their headers parsed) only when one of their tensors
// is asked for, so a pipeline stage that loads a few layers maps only the
// shards holding them.
//
// Open refuses, with a [*FormatError] naming the file and, where there is one,
// the tensor:
//   - files shorter than 8 bytes, header lengths past the end of the file or
//     over 100 MB (the limit the reference implementation uses),
//   - headers that are not UTF-8, not JSON, not a single JSON object, or that
//     repeat a key,
//   - tensor entries with a missing field, an unknown dtype, a negative
//     dimension, data_offsets that are not [begin, end] with
//     0 <= begin <= end <= data length, or whose byte span differs from
//     shape product × element size,
//   - tensors whose bytes overlap,
//   - __metadata__ that is not an object of strings.
//
// Unlike the reference reader it accepts gaps between tensors and bytes after
// the last one: they are harmless and some writers align tensors that way.
// OpenFolder additionally refuses an index that names a shard missing from the
// folder or a path outside it, and reports a tensor the index places in a
// shard that does not hold it, naming both.
//
// Dtypes: F32, F16 and BF16 convert to float32; F64, the integer types, BOOL
// and the F8 types are recognised (so files holding them open and their raw
// bytes can be read) but [File.Float32] refuses them with
// [ErrUnsupportedDType].
//
// # Writing
//
// [Write] writes one file with tensors laid out in the order given and the
// header padded with spaces to a multiple of 8 bytes, as the reference writer
// does, so tensor data stays 8-byte aligned in the file. [WriteIndex] writes
// model.safetensors.index.json for a sharded folder. Both write to a
// temporary file and rename it, so readers never see a half-written file.
//
// # Lifetime
//
// Slices returned by Raw point into the read-only mapping: writing to them
// faults, and they must not be used after Close. A file truncated by another
// process while mapped makes reads of the lost pages fault (SIGBUS); model
// folders are expected to be immutable while in use.
package safetensors
