package checkpoint_test

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// MaxPositions is set: config.json states 2048 for 0, which would not round-trip.
var tinyConfig = model.Config{Vocab: 64, Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 48, RopeTheta: 10000, NormEps: 1e-5, MaxPositions: 256}

// snapshot is a checkpoint of tinyConfig at step: AdamW moments for every
// parameter, plus two tensors of other dtypes that must come back as stored.
func snapshot(t testing.TB, cfg model.Config, step int) *checkpoint.Snapshot {
	t.Helper()
	p, err := model.Init(cfg, dtypes.Float32, 0.02, uint64(step)+1)
	if err != nil {
		t.Fatal(err)
	}
	opt := map[string]*tensors.Tensor{}
	for i, name := range p.Names() {
		v := host.ToFloat64(p.T[name])
		for j := range v {
			v[j] = v[j]*0.5 + float64(i)
		}
		opt[name+".exp_avg"] = host.FromFloat64(dtypes.Float32, v, p.T[name].Shape().Dimensions...)
		for j := range v {
			v[j] *= v[j]
		}
		opt[name+".exp_avg_sq"] = host.FromFloat64(dtypes.Float32, v, p.T[name].Shape().Dimensions...)
	}
	opt["extra.bf16"] = tensors.FromFlatDataAndDimensions([]bfloat16.BFloat16{bfloat16.FromFloat32(1.5), bfloat16.FromFloat32(-3)}, 2)
	opt["extra.i64"] = tensors.FromFlatDataAndDimensions([]int64{1, -2, 1 << 40}, 3)
	return &checkpoint.Snapshot{
		Step: step, TokensSeen: int64(step) * 4096,
		Cursor:     []byte(fmt.Sprintf(`{"epoch":1,"doc":%d}`, step)),
		RNG:        []byte(`{"data_seed":7}`),
		RecipeHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		World:      checkpoint.World{Workers: 4, SP: 2, DP: 2, Strategy: "ring"},
		Params:     p, Optim: opt,
		OptimMeta: map[string]string{"type": "adamw", "steps": fmt.Sprint(step)},
	}
}

// save writes a fresh tiny checkpoint and returns its folder.
func save(t testing.TB, ckptDir string, step int) string {
	t.Helper()
	dir, err := checkpoint.Save(ckptDir, snapshot(t, tinyConfig, step))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// sameBits fails unless got and want hold the same dtype, shape and bytes.
func sameBits(t *testing.T, what string, got, want *tensors.Tensor) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: missing", what)
	}
	if got.DType() != want.DType() || !slices.Equal(got.Shape().Dimensions, want.Shape().Dimensions) {
		t.Fatalf("%s: %s%v, want %s%v", what, got.DType(), got.Shape().Dimensions, want.DType(), want.Shape().Dimensions)
	}
	var a, b []byte
	err1 := got.ConstBytes(func(d []byte) { a = bytes.Clone(d) })
	err2 := want.ConstBytes(func(d []byte) { b = bytes.Clone(d) })
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: %v %v", what, err1, err2)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s: bytes differ", what)
	}
}

// reseal gives JSON text the manifest_crc32c tail Save writes, whatever the text
// says: body is everything before the field's key, ending ",\n  ". It restates the
// format of manifest.json independently of the package.
func reseal(body []byte) []byte {
	sum := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	return fmt.Appendf(bytes.Clone(body), "\"manifest_crc32c\": \"%08x\"\n}\n", sum)
}

// unsealed is manifest.json without its tail (the body reseal takes).
func unsealed(t testing.TB, raw []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(raw, []byte(`"manifest_crc32c"`))
	if i < 0 {
		t.Fatalf("manifest has no manifest_crc32c:\n%s", raw)
	}
	return raw[:i]
}

// writeManifest replaces dir's manifest.json with m, sealed.
func writeManifest(t testing.TB, dir string, m checkpoint.Manifest) {
	t.Helper()
	raw, err := checkpoint.MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, checkpoint.ManifestFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies a checkpoint folder (plain files only).
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

func names(infos []checkpoint.Info) []string {
	var out []string
	for _, in := range infos {
		out = append(out, in.Name)
	}
	return out
}

// crcOf is a checksum as the manifest writes it.
func crcOf(b []byte) string {
	return fmt.Sprintf("%08x", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}
