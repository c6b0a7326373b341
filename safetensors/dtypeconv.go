package safetensors

import (
	"encoding/binary"
	"io"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	st "github.com/nlpodyssey/safetensors"
)

// Element types on disk and the conversions between them, for the safetensors
// reader and writer.

func fromSTDType(s st.DType) (dtypes.DType, bool) {
	for _, p := range stDTypes {
		if p.s == s {
			return p.d, true
		}
	}
	return dtypes.InvalidDType, false
}

func toSTDType(d dtypes.DType) (st.DType, bool) {
	for _, p := range stDTypes {
		if p.d == d {
			return p.s, true
		}
	}
	return 0, false
}

var stDTypes = []struct {
	s st.DType
	d dtypes.DType
}{
	{st.BOOL, dtypes.Bool}, {st.U8, dtypes.Uint8}, {st.I8, dtypes.Int8}, {st.I16, dtypes.Int16},
	{st.U16, dtypes.Uint16}, {st.F16, dtypes.Float16}, {st.BF16, dtypes.BFloat16}, {st.I32, dtypes.Int32},
	{st.U32, dtypes.Uint32}, {st.F32, dtypes.Float32}, {st.F64, dtypes.Float64}, {st.I64, dtypes.Int64},
	{st.U64, dtypes.Uint64},
}

var littleEndianHost = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// readFullAt fills buf from r at off; a full read ending at EOF is a success.
func readFullAt(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// IsFloat reports whether d is one of the float dtypes that Read and Write convert between.
func IsFloat(d dtypes.DType) bool {
	return d == dtypes.Float32 || d == dtypes.Float64 || d == dtypes.BFloat16 || d == dtypes.Float16
}

var floatDTypeByName = map[string]dtypes.DType{
	"float32": dtypes.Float32, "bfloat16": dtypes.BFloat16, "float16": dtypes.Float16, "float64": dtypes.Float64,
}

// FloatDType is the float dtype named name: "float32", "bfloat16", "float16" or
// "float64" (as Write's dtype and a config.json's torch_dtype name them).
func FloatDType(name string) (dtypes.DType, bool) {
	d, ok := floatDTypeByName[name]
	return d, ok
}

// FloatDTypeName is FloatDType's name for d, or "" when d is not a float dtype.
func FloatDTypeName(d dtypes.DType) string {
	for name, fd := range floatDTypeByName {
		if fd == d {
			return name
		}
	}
	return ""
}

// convertStream fills dst (values of dtype to) from r (values of dtype from), a chunk at a time.
func convertStream(r io.Reader, from dtypes.DType, dst []byte, to dtypes.DType) error {
	n := len(dst) / to.Size()
	step := chunkBytes / 8
	src := make([]byte, min(n, step)*from.Size())
	tmp := make([]float64, min(n, step))
	for i := 0; i < n; i += step {
		k := min(step, n-i)
		if _, err := io.ReadFull(r, src[:k*from.Size()]); err != nil {
			return err
		}
		decodeFloats(src[:k*from.Size()], from, tmp[:k])
		encodeFloats(tmp[:k], to, dst[i*to.Size():(i+k)*to.Size()])
	}
	return nil
}

// convertChunks converts src (values of dtype from) to dtype to, handing emit a chunk at a time.
func convertChunks(src []byte, from, to dtypes.DType, emit func([]byte) error) error {
	n := len(src) / from.Size()
	step := chunkBytes / 8
	out := make([]byte, min(n, step)*to.Size())
	tmp := make([]float64, min(n, step))
	for i := 0; i < n; i += step {
		k := min(step, n-i)
		decodeFloats(src[i*from.Size():(i+k)*from.Size()], from, tmp[:k])
		encodeFloats(tmp[:k], to, out[:k*to.Size()])
		if err := emit(out[:k*to.Size()]); err != nil {
			return err
		}
	}
	return nil
}

// decodeFloats reads len(out) little-endian values of a float dtype. float64 holds
// every float32/bfloat16/float16 value exactly.
func decodeFloats(src []byte, from dtypes.DType, out []float64) {
	le := binary.LittleEndian
	switch from {
	case dtypes.Float32:
		for i := range out {
			out[i] = float64(math.Float32frombits(le.Uint32(src[4*i:])))
		}
	case dtypes.Float64:
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(src[8*i:]))
		}
	case dtypes.BFloat16:
		for i := range out {
			out[i] = bfloat16.BFloat16(le.Uint16(src[2*i:])).Float64()
		}
	case dtypes.Float16:
		for i := range out {
			out[i] = float16.Float16(le.Uint16(src[2*i:])).Float64()
		}
	}
}

// encodeFloats writes in as little-endian values of a float dtype, rounding to nearest even.
func encodeFloats(in []float64, to dtypes.DType, dst []byte) {
	le := binary.LittleEndian
	switch to {
	case dtypes.Float32:
		for i, v := range in {
			le.PutUint32(dst[4*i:], math.Float32bits(float32(v)))
		}
	case dtypes.Float64:
		for i, v := range in {
			le.PutUint64(dst[8*i:], math.Float64bits(v))
		}
	case dtypes.BFloat16:
		for i, v := range in {
			le.PutUint16(dst[2*i:], bfloat16.FromFloat64(v).Bits())
		}
	case dtypes.Float16:
		for i, v := range in {
			le.PutUint16(dst[2*i:], float16.FromFloat64(v).Bits())
		}
	}
}
