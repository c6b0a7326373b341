package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	st "github.com/nlpodyssey/safetensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/safetensors"
)

// rawSafetensors assembles a file from a header and a data section, no checks.
func rawSafetensors(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func f32Bytes(vals ...float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// validFile is two float32 tensors, a [2,2] and a [3], with metadata.
func validFile() []byte {
	h := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},` +
		`"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}`
	return rawSafetensors(h, f32Bytes(1, 2, 3, 4, 5, 6, 7))
}

func TestReadValid(t *testing.T) {
	ts, meta, err := safetensors.Read(writeFile(t, "v.safetensors", validFile()))
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || len(meta) != 1 {
		t.Errorf("metadata = %v", meta)
	}
	if got := host.ToFloat64(ts["a"]); fmt.Sprint(got) != "[1 2 3 4]" || fmt.Sprint(ts["a"].Shape().Dimensions) != "[2 2]" {
		t.Errorf("a = %v %v", ts["a"].Shape(), got)
	}
	if got := host.ToFloat64(ts["b"]); fmt.Sprint(got) != "[5 6 7]" {
		t.Errorf("b = %v", got)
	}
}

// mixedTensors covers every kind of tensor the writer keeps as is: floats, half
// floats, ints, bools, a scalar and a zero-size tensor.
func mixedTensors() ([]string, map[string]*tensors.Tensor) {
	ts := map[string]*tensors.Tensor{
		"f32":    tensors.FromFlatDataAndDimensions([]float32{1.5, -2, 3e-8, float32(math.Inf(1))}, 2, 2),
		"f64":    tensors.FromFlatDataAndDimensions([]float64{math.Pi, -1e300}, 2),
		"bf16":   tensors.FromFlatDataAndDimensions(bfloat16.FromFloat32s(1, -0.5, 3), 3, 1),
		"i64":    tensors.FromFlatDataAndDimensions([]int64{-1, 1 << 40}, 2),
		"u8":     tensors.FromFlatDataAndDimensions([]uint8{0, 255, 7}, 3),
		"bool":   tensors.FromFlatDataAndDimensions([]bool{true, false, true}, 3),
		"scalar": tensors.FromScalar(float32(42)),
		"empty":  tensors.FromShape(shapes.Make(dtypes.Float32, 0, 5)),
	}
	return []string{"f64", "u8", "f32", "bf16", "i64", "bool", "scalar", "empty"}, ts
}

func TestRoundTripKeepsDTypes(t *testing.T) {
	names, ts := mixedTensors()
	path := filepath.Join(t.TempDir(), "m.safetensors")
	meta := map[string]string{"format": "pt", "step": "7"}
	if err := safetensors.Write(path, names, ts, meta, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("%s.tmp left behind: %v", path, err)
	}
	got, gotMeta, err := safetensors.ReadRaw(path)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gotMeta) != fmt.Sprint(meta) {
		t.Errorf("metadata = %v, want %v", gotMeta, meta)
	}
	if len(got) != len(ts) {
		t.Errorf("read %d tensors, wrote %d", len(got), len(ts))
	}
	for _, n := range names {
		if !got[n].Shape().Equal(ts[n].Shape()) || !got[n].Equal(ts[n]) {
			t.Errorf("%s: read %v, wrote %v", n, got[n], ts[n])
		}
	}
	// Read widens half floats only.
	wide, _, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if wide["bf16"].DType() != dtypes.Float32 || fmt.Sprint(host.ToFloat64(wide["bf16"])) != "[1 -0.5 3]" {
		t.Errorf("bf16 widened to %v", wide["bf16"])
	}
	if wide["f64"].DType() != dtypes.Float64 || wide["i64"].DType() != dtypes.Int64 {
		t.Errorf("dtypes changed: f64 -> %s, i64 -> %s", wide["f64"].DType(), wide["i64"].DType())
	}
}

// The file we write is accepted by nlpodyssey/safetensors' own validator (which, like
// the Python one, wants the tensors to tile the data section) and lays the tensors out in
// the order asked for.
func TestWriteLayout(t *testing.T) {
	names, ts := mixedTensors()
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := safetensors.Write(path, names, ts, nil, ""); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(b); n%8 != 0 {
		t.Errorf("header length %d not 8-aligned", n)
	}
	parsed, err := st.Deserialize(b)
	if err != nil {
		t.Fatalf("nlpodyssey/safetensors rejects our file: %v", err)
	}
	if got := fmt.Sprint(parsed.Names()); got != fmt.Sprint(names) { // Names() is in offset order
		t.Errorf("data order %s, want %v", got, names)
	}
	v, _ := parsed.Tensor("f32")
	if v.DType() != st.F32 || !bytes.Equal(v.Data(), f32Bytes(1.5, -2, 3e-8, float32(math.Inf(1)))) {
		t.Errorf("f32 as the library reads it: %v %v", v.DType(), v.Data())
	}
}

func TestWriteConverts(t *testing.T) {
	vals := []float32{1, -0.1, 3.14159, 1e-3, 65504, 1e-6, 0}
	ts := map[string]*tensors.Tensor{"x": tensors.FromFlatDataAndDimensions(vals, len(vals))}
	for _, c := range []struct {
		dtype   string
		relTol  float64
		absTol  float64
		storeAs dtypes.DType
	}{
		{"float32", 0, 0, dtypes.Float32},
		{"float64", 0, 0, dtypes.Float64},
		{"bfloat16", 1.0 / 256, 0, dtypes.BFloat16},
		{"float16", 1.0 / 2048, 1e-7, dtypes.Float16}, // 1e-6 is subnormal in float16
	} {
		t.Run(c.dtype, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := safetensors.Write(path, []string{"x"}, ts, nil, c.dtype); err != nil {
				t.Fatal(err)
			}
			raw, _, err := safetensors.ReadRaw(path)
			if err != nil {
				t.Fatal(err)
			}
			if raw["x"].DType() != c.storeAs {
				t.Errorf("stored as %s, want %s", raw["x"].DType(), c.storeAs)
			}
			got, _, err := safetensors.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range host.ToFloat64(got["x"]) {
				want := float64(vals[i])
				if d := math.Abs(g - want); d > c.relTol*math.Abs(want)+c.absTol {
					t.Errorf("x[%d] = %g, want %g (diff %g)", i, g, want, d)
				}
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	ts := map[string]*tensors.Tensor{
		"a":            tensors.FromFlatDataAndDimensions([]float32{1}, 1),
		"i":            tensors.FromFlatDataAndDimensions([]int32{1}, 1),
		"__metadata__": tensors.FromFlatDataAndDimensions([]float32{1}, 1),
		"a\xff":        tensors.FromFlatDataAndDimensions([]float32{1}, 1),
	}
	for _, c := range []struct {
		names []string
		dtype string
		want  string
	}{
		{[]string{"a", "b"}, "", `no tensor "b"`},
		{[]string{"a", "a"}, "", `"a" named twice`},
		{[]string{"__metadata__"}, "", "cannot be named __metadata__"},
		{[]string{"a\xff"}, "", "not UTF-8"},
		{[]string{"a"}, "int8", `dtype "int8" not supported`},
		{[]string{"i"}, "bfloat16", "cannot convert"},
	} {
		path := filepath.Join(t.TempDir(), "x.safetensors")
		err := safetensors.Write(path, c.names, ts, nil, c.dtype)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Write(%v, %q) = %v, want an error containing %q", c.names, c.dtype, err, c.want)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%v: a file was written", c.names)
		}
	}
}

func TestReadCorrupt(t *testing.T) {
	valid := validFile()
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, 1<<60)
	beyond := make([]byte, 16)
	binary.LittleEndian.PutUint64(beyond, 9)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "shorter than the 8-byte"},
		{"7 bytes", valid[:7], "shorter than the 8-byte"},
		{"absurd header length 2^60", hugeLen, "over the"},
		{"header length beyond file", beyond, "beyond the file"},
		{"not JSON", rawSafetensors(`{"a": [`, nil), "not JSON"},
		{"JSON but not an object", rawSafetensors(`[1,2]`, nil), "header"},
		{"tensor not an object", rawSafetensors(`{"a": 3}`, nil), "header"},
		{"unknown dtype", rawSafetensors(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, []byte{0}), "F8_E4M3"},
		{"negative dim", rawSafetensors(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, f32Bytes(1)), "shape"},
		{"shape overflow", rawSafetensors(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, f32Bytes(1)), "overflows"},
		{"shape times size overflow", rawSafetensors(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}`, make([]byte, 8)), "needs"},
		{"shape lies about length", rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, f32Bytes(1)), "needs 2 elements"},
		{"offsets reversed", rawSafetensors(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, f32Bytes(1)), "out of order"},
		{"offsets past the end", rawSafetensors(`{"a":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}`, f32Bytes(1)), "beyond the data section"},
		{"header claims 100 GB", hugeHeaderClaim(), "beyond the data section"},
		{"offsets overlap", rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32Bytes(1, 2, 3)), "overlap"},
		{"hole", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32Bytes(1, 2)), "hole of 4 bytes"},
		{"trailing bytes", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, f32Bytes(1, 2)), "cover 4"},
		{"bad metadata", rawSafetensors(`{"__metadata__":{"k":1}}`, nil), "__metadata__"},
	}
	for _, cut := range []int{8, 9, 20, 60, len(valid) - 28, len(valid) - 13, len(valid) - 4, len(valid) - 1} {
		cases = append(cases, struct {
			name string
			file []byte
			want string
		}{fmt.Sprintf("truncated at %d", cut), valid[:cut], "model: "})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "bad.safetensors", c.file)
			ts, _, err := safetensors.Read(path)
			if err == nil {
				t.Fatalf("no error; read %d tensors", len(ts))
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "model: "+path+": ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want prefix %q and %q", err, "model: "+path+": ", c.want)
			}
		})
	}
}

// FuzzRead feeds the reader arbitrary bytes: it must return an error or a
// consistent set of tensors, never panic or allocate more than the input justifies.
func FuzzRead(f *testing.F) {
	f.Add(validFile())
	names, ts := mixedTensors()
	path := filepath.Join(f.TempDir(), "seed.safetensors")
	if err := safetensors.Write(path, names, ts, map[string]string{"k": "v"}, ""); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(hugeHeaderClaim())
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, meta, err := safetensors.ReadFrom("fuzz", bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if ts != nil || meta != nil || !strings.HasPrefix(err.Error(), "model: fuzz: ") {
				t.Errorf("error %q with results", err)
			}
			return
		}
		// Accepted: what was allocated is bounded by the data section (at most doubled,
		// by widening half floats).
		held := 0
		for _, x := range ts {
			held += x.Size() * x.DType().Size()
		}
		if data := len(b) - 8 - int(binary.LittleEndian.Uint64(b)); held > 2*data {
			t.Errorf("tensors hold %d bytes from a %d-byte data section", held, data)
		}
	})
}

// hugeHeaderClaim is a file whose header claims a 100 GB tensor over 4 bytes of data.
func hugeHeaderClaim() []byte {
	return rawSafetensors(`{"a":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,100000000000]}}`, f32Bytes(1))
}
