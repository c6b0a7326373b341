package host_test

import (
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
)

// seq is a [rows, cols] tensor holding 0, 1, 2, ... in dtype.
func seq(dtype dtypes.DType, rows, cols int) *tensors.Tensor {
	v := make([]float64, rows*cols)
	for i := range v {
		v[i] = float64(i)
	}
	return host.FromFloat64(dtype, v, rows, cols)
}

func TestRowsAndCols(t *testing.T) {
	for _, dt := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
		x := seq(dt, 4, 3) // rows 0..2, 3..5, 6..8, 9..11
		cases := []struct {
			name string
			got  *tensors.Tensor
			want []float64
			dims []int
		}{
			{"SliceRows", host.SliceRows(x, 1, 3), []float64{3, 4, 5, 6, 7, 8}, []int{2, 3}},
			{"SliceCols", host.SliceCols(x, 1, 3, 4, 2), []float64{1, 2, 4, 5, 7, 8, 10, 11}, []int{4, 2}},
			{"ConcatRows", host.ConcatRows(host.SliceRows(x, 3, 4), host.SliceRows(x, 0, 1)), []float64{9, 10, 11, 0, 1, 2}, []int{2, 3}},
			{"GatherRows", host.GatherRows(x, []int32{2, 0, 2}), []float64{6, 7, 8, 0, 1, 2, 6, 7, 8}, []int{3, 3}},
			{"ReshapeCopy", host.ReshapeCopy(host.SliceRows(x, 0, 2), 3, 2), []float64{0, 1, 2, 3, 4, 5}, []int{3, 2}},
		}
		for _, c := range cases {
			if got := host.ToFloat64(c.got); !slices.Equal(got, c.want) || !slices.Equal(c.got.Shape().Dimensions, c.dims) {
				t.Errorf("%s %s = %v %v, want %v %v", dt, c.name, c.got.Shape().Dimensions, got, c.dims, c.want)
			}
		}
	}
}

func TestInPlace(t *testing.T) {
	x := seq(dtypes.Float32, 3, 2)
	host.SetRows(x, 1, host.FromFloat64(dtypes.Float32, []float64{-1, -2}, 1, 2))
	host.SetCols(x, 1, host.FromFloat64(dtypes.Float32, []float64{7, 8, 9}, 3, 1))
	if got, want := host.ToFloat64(x), []float64{0, 7, -1, 8, 4, 9}; !slices.Equal(got, want) {
		t.Fatalf("SetRows then SetCols: %v, want %v", got, want)
	}
	host.AddInto(x, host.FromFloat64(dtypes.Float32, []float64{1, 1, 1, 1, 1, 1}, 3, 2))
	host.AddRows(x, 2, host.FromFloat64(dtypes.Float32, []float64{10, 10}, 1, 2))
	if got, want := host.ToFloat64(x), []float64{1, 8, 0, 9, 15, 20}; !slices.Equal(got, want) {
		t.Fatalf("AddInto then AddRows: %v, want %v", got, want)
	}
	g := host.NewZeros(dtypes.Float64, 3, 2)
	host.ScatterAddRows(g, []int32{2, 2, 0}, seq(dtypes.Float64, 3, 2))
	if got, want := host.ToFloat64(g), []float64{4, 5, 0, 0, 2, 4}; !slices.Equal(got, want) {
		t.Fatalf("ScatterAddRows: %v, want %v", got, want)
	}
	host.Fill(g, 0.5)
	if got := host.ToFloat64(g); !slices.Equal(got, []float64{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}) {
		t.Fatalf("Fill: %v", got)
	}
}

// TestRowCopiesAnyDType: slicing and stitching are byte copies, so bfloat16
// activations (which the float helpers do not take) move through them intact.
func TestRowCopiesAnyDType(t *testing.T) {
	x := host.NewZeros(dtypes.BFloat16, 4, 2)
	raw := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if err := x.MutableBytes(func(b []byte) { copy(b, raw) }); err != nil {
		t.Fatal(err)
	}
	y := host.ConcatRows(host.SliceRows(x, 2, 4), host.SliceRows(x, 0, 2))
	var got []byte
	if err := y.ConstBytes(func(b []byte) { got = slices.Clone(b) }); err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(raw[8:]), raw[:8]...); !slices.Equal(got, want) {
		t.Fatalf("bfloat16 rows: %v, want %v", got, want)
	}
}

func TestScalarsAndInts(t *testing.T) {
	if v := host.ScalarValue(host.NewScalar(dtypes.Float32, 2.5)); v != 2.5 {
		t.Errorf("ScalarValue(NewScalar(2.5)) = %v", v)
	}
	src := []int32{3, 1, 4}
	ti := host.Int32s(src)
	src[0] = 9 // Int32s copies
	if got := tensors.MustCopyFlatData[int32](ti); !slices.Equal(got, []int32{3, 1, 4}) {
		t.Errorf("Int32s = %v", got)
	}
	if got := host.ToFloat64(host.NewFull(dtypes.Float64, 7, 2)); !slices.Equal(got, []float64{7, 7}) {
		t.Errorf("NewFull = %v", got)
	}
}
