// Package safetensors owns files of the safetensors format: validated headers,
// streamed reads and writes through io.ReaderAt and io.Writer, and float dtype
// conversion (float32, float64, bfloat16, float16) on the way in or out.
//
// A header is checked against the file before any tensor is read: shapes agree
// with byte ranges, and the ranges tile the data section exactly. Writes keep the
// caller's tensor order and go through a temporary file, fsynced and renamed.
//
//	err := safetensors.Write(path, names, ts, map[string]string{"format": "pt"}, "bfloat16")
//	ts, meta, err := safetensors.Read(path) // half floats widened to float32
//
//	f, err := safetensors.Open(path) // header only
//	defer f.Close()
//	for _, e := range f.Entries() {
//		t, err := f.Read(e, dtypes.Float32)
//	}
//
// Errors start with "model: ", as they did when this code was part of package
// model: the tests of model and checkpoint assert that prefix.
package safetensors
