package host

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
)

type float interface{ float32 | float64 }

// NewZeros makes a zero tensor.
func NewZeros(dtype dtypes.DType, dims ...int) *tensors.Tensor {
	return tensors.FromShape(shapes.Make(dtype, dims...))
}

// NewFull makes a tensor filled with v.
func NewFull(dtype dtypes.DType, v float64, dims ...int) *tensors.Tensor {
	t := NewZeros(dtype, dims...)
	Fill(t, v)
	return t
}

// Int32s makes an int32 tensor [len(v)].
func Int32s(v []int32) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(append([]int32(nil), v...), len(v))
}

// NewScalar makes a scalar of the given dtype.
func NewScalar(dtype dtypes.DType, v float64) *tensors.Tensor {
	if dtype == dtypes.Float64 {
		return tensors.FromScalar(v)
	}
	return tensors.FromScalar(float32(v))
}

// ScalarValue reads a float scalar tensor.
func ScalarValue(t *tensors.Tensor) float64 { return ToFloat64(t)[0] }

// rowSize is the number of scalars in one row of axis 0.
func rowSize(t *tensors.Tensor) int {
	d := t.Shape().Dimensions
	n := 1
	for _, x := range d[1:] {
		n *= x
	}
	return n
}

// SliceRows copies rows [start, end) of axis 0 into a new tensor.
func SliceRows(t *tensors.Tensor, start, end int) *tensors.Tensor {
	dims := append([]int{end - start}, t.Shape().Dimensions[1:]...)
	out := NewZeros(t.DType(), dims...)
	rb := rowSize(t) * t.DType().Size()
	copyBytes(out, t, func(dst, src []byte) { copy(dst, src[start*rb:end*rb]) })
	return out
}

// SetRows copies src into rows [start, start+len) of dst.
func SetRows(dst *tensors.Tensor, start int, src *tensors.Tensor) {
	rb := rowSize(dst) * dst.DType().Size()
	copyBytes(dst, src, func(d, s []byte) { copy(d[start*rb:], s) })
}

// copyBytes gives write access to dst's bytes and read access to src's (same
// dtype): the row and column copies are plain byte copies, whatever the dtype
// (bfloat16 activations and attention operands included).
func copyBytes(dst, src *tensors.Tensor, fn func(d, s []byte)) {
	if dst.DType() != src.DType() {
		panic(fmt.Sprintf("host: dtype mismatch %s vs %s", dst.DType(), src.DType()))
	}
	err := src.ConstBytes(func(s []byte) {
		if err := dst.MutableBytes(func(d []byte) { fn(d, s) }); err != nil {
			panic(fmt.Sprintf("host: write %s: %v", dst.Shape(), err))
		}
	})
	if err != nil {
		panic(fmt.Sprintf("host: read %s: %v", src.Shape(), err))
	}
}

// AddRows adds src into rows [start, start+len) of dst.
func AddRows(dst *tensors.Tensor, start int, src *tensors.Tensor) {
	rs := rowSize(dst)
	read2(dst, src, func(d32, s32 []float32, d64, s64 []float64) {
		if d32 != nil {
			addInto(d32[start*rs:start*rs+len(s32)], s32)
		} else {
			addInto(d64[start*rs:start*rs+len(s64)], s64)
		}
	})
}

// AddInto: dst += src (same shape).
func AddInto(dst, src *tensors.Tensor) {
	if !dst.Shape().Equal(src.Shape()) {
		panic(fmt.Sprintf("host: AddInto %s += %s", dst.Shape(), src.Shape()))
	}
	AddRows(dst, 0, src)
}

// GatherRows: the rows of table [V, D] picked by idx -> [L, D] (an embedding lookup).
func GatherRows(table *tensors.Tensor, idx []int32) *tensors.Tensor {
	d := table.Shape().Dimensions[1]
	out := NewZeros(table.DType(), len(idx), d)
	read2(out, table, func(o32, t32 []float32, o64, t64 []float64) {
		for i, tok := range idx {
			if o32 != nil {
				copy(o32[i*d:(i+1)*d], t32[int(tok)*d:])
			} else {
				copy(o64[i*d:(i+1)*d], t64[int(tok)*d:])
			}
		}
	})
	return out
}

// FirstNonFinite is the index of t's first NaN or infinite element, or -1
// when every element is finite (any float dtype; -1 for the others).
func FirstNonFinite(t *tensors.Tensor) int {
	at := -1
	t.MustConstFlatData(func(flat any) {
		switch v := flat.(type) {
		case []float32:
			at = firstBad(v, func(x float32) float64 { return float64(x) })
		case []float64:
			at = firstBad(v, func(x float64) float64 { return x })
		case []bfloat16.BFloat16:
			at = firstBad(v, bfloat16.BFloat16.Float64)
		case []float16.Float16:
			at = firstBad(v, func(x float16.Float16) float64 { return float64(x.Float32()) })
		}
	})
	return at
}

func firstBad[T any](v []T, f func(T) float64) int {
	for i, x := range v {
		if y := f(x); math.IsNaN(y) || math.IsInf(y, 0) {
			return i
		}
	}
	return -1
}

// GatherRowsAs is GatherRows with the rows in dtype dt (float32 or float64):
// a table kept in bfloat16 or float16 is widened row by row, never whole.
func GatherRowsAs(table *tensors.Tensor, idx []int32, dt dtypes.DType) *tensors.Tensor {
	if table.DType() == dt {
		return GatherRows(table, idx)
	}
	d := table.Shape().Dimensions[1]
	row := make([]float64, d)
	out := NewZeros(dt, len(idx), d)
	table.MustConstFlatData(func(flat any) {
		mutate(out, func(o32 []float32, o64 []float64) {
			for i, tok := range idx {
				lo := int(tok) * d
				switch v := flat.(type) {
				case []bfloat16.BFloat16:
					for j, x := range v[lo : lo+d] {
						row[j] = x.Float64()
					}
				case []float16.Float16:
					for j, x := range v[lo : lo+d] {
						row[j] = float64(x.Float32())
					}
				case []float32:
					for j, x := range v[lo : lo+d] {
						row[j] = float64(x)
					}
				case []float64:
					copy(row, v[lo:lo+d])
				default:
					panic(fmt.Sprintf("host: GatherRowsAs from %s", table.DType()))
				}
				if o32 != nil {
					for j, x := range row {
						o32[i*d+j] = float32(x)
					}
				} else {
					copy(o64[i*d:(i+1)*d], row)
				}
			}
		})
	})
	return out
}

// ScatterAddRows adds the rows of dh [L, D] into grad [V, D] at the rows idx names
// (an embedding lookup's gradient).
func ScatterAddRows(grad *tensors.Tensor, idx []int32, dh *tensors.Tensor) {
	d := grad.Shape().Dimensions[1]
	read2(grad, dh, func(g32, h32 []float32, g64, h64 []float64) {
		for i, tok := range idx {
			if g32 != nil {
				addInto(g32[int(tok)*d:int(tok+1)*d], h32[i*d:(i+1)*d])
			} else {
				addInto(g64[int(tok)*d:int(tok+1)*d], h64[i*d:(i+1)*d])
			}
		}
	})
}

func addInto[T float](dst, src []T) {
	for i, x := range src {
		dst[i] += x
	}
}

// mutate gives write access to a float tensor's data: exactly one of the slices is non-nil.
func mutate(t *tensors.Tensor, fn func(f32 []float32, f64 []float64)) {
	t.MustMutableFlatData(func(flat any) {
		switch v := flat.(type) {
		case []float32:
			fn(v, nil)
		case []float64:
			fn(nil, v)
		default:
			panic(fmt.Sprintf("host: float tensor expected, got %s", t.DType()))
		}
	})
}

// read2 gives write access to dst and read access to src (same dtype).
func read2(dst, src *tensors.Tensor, fn func(d32, s32 []float32, d64, s64 []float64)) {
	if dst.DType() != src.DType() {
		panic(fmt.Sprintf("host: dtype mismatch %s vs %s", dst.DType(), src.DType()))
	}
	src.MustConstFlatData(func(sflat any) {
		mutate(dst, func(d32 []float32, d64 []float64) {
			switch s := sflat.(type) {
			case []float32:
				fn(d32, s, nil, nil)
			case []float64:
				fn(nil, nil, d64, s)
			}
		})
	})
}

// Fill sets every element of a float tensor to v, in place.
func Fill(t *tensors.Tensor, v float64) {
	mutate(t, func(f32 []float32, f64 []float64) {
		for i := range f32 {
			f32[i] = float32(v)
		}
		for i := range f64 {
			f64[i] = v
		}
	})
}

// SliceCols copies columns [c0, c1) of t seen as [rows, cols] (cols = the product
// of the dimensions after the first) into a new tensor of dimensions dims.
func SliceCols(t *tensors.Tensor, c0, c1 int, dims ...int) *tensors.Tensor {
	es := t.DType().Size()
	rows, cols := t.Shape().Dimensions[0], rowSize(t)*es
	out := NewZeros(t.DType(), dims...)
	b0, b1 := c0*es, c1*es
	w := b1 - b0
	copyBytes(out, t, func(d, s []byte) {
		for r := range rows {
			copy(d[r*w:(r+1)*w], s[r*cols+b0:r*cols+b1])
		}
	})
	return out
}

// SetCols copies src, seen as [rows, w], into columns [c0, c0+w) of dst seen as
// [rows, cols].
func SetCols(dst *tensors.Tensor, c0 int, src *tensors.Tensor) {
	es := dst.DType().Size()
	rows, cols := dst.Shape().Dimensions[0], rowSize(dst)*es
	w, b0 := rowSize(src)*es, c0*es
	copyBytes(dst, src, func(d, s []byte) {
		for r := range rows {
			copy(d[r*cols+b0:r*cols+b0+w], s[r*w:(r+1)*w])
		}
	})
}

// ConcatRows stacks tensors along axis 0.
func ConcatRows(ts ...*tensors.Tensor) *tensors.Tensor {
	dims := append([]int(nil), ts[0].Shape().Dimensions...)
	dims[0] = 0
	for _, t := range ts {
		dims[0] += t.Shape().Dimensions[0]
	}
	out := NewZeros(ts[0].DType(), dims...)
	row := 0
	for _, t := range ts {
		SetRows(out, row, t)
		row += t.Shape().Dimensions[0]
	}
	return out
}

// FromFloat64 makes a host tensor of the given dtype from float64 values.
func FromFloat64(dtype dtypes.DType, vals []float64, shape ...int) *tensors.Tensor {
	if dtype == dtypes.Float64 {
		return tensors.FromFlatDataAndDimensions(vals, shape...)
	}
	f := make([]float32, len(vals))
	for i, v := range vals {
		f[i] = float32(v)
	}
	return tensors.FromFlatDataAndDimensions(f, shape...)
}

// ToFloat64 copies any float tensor's values into float64.
func ToFloat64(t *tensors.Tensor) []float64 {
	out := make([]float64, t.Size())
	t.MustConstFlatData(func(flat any) {
		switch v := flat.(type) {
		case []float64:
			copy(out, v)
		case []float32:
			for i, x := range v {
				out[i] = float64(x)
			}
		case []bfloat16.BFloat16:
			for i, x := range v {
				out[i] = x.Float64()
			}
		case []float16.Float16:
			for i, x := range v {
				out[i] = float64(x.Float32())
			}
		default:
			panic(fmt.Sprintf("host: ToFloat64 of %s", t.DType()))
		}
	})
	return out
}

// ReshapeCopy copies t into a tensor of new dimensions (same size).
func ReshapeCopy(t *tensors.Tensor, dims ...int) *tensors.Tensor {
	out := NewZeros(t.DType(), dims...)
	copyBytes(out, t, func(d, s []byte) { copy(d, s) })
	return out
}
