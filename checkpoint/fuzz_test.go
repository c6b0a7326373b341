package checkpoint_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/torusml/torus/checkpoint"
)

// FuzzManifest feeds ParseManifest arbitrary bytes, as they are and resealed (so
// the fuzzer reaches the decoding and validation behind the checksum): it must
// never panic, and what it accepts must marshal to bytes it accepts again and
// that marshal the same (a fixed point).
func FuzzManifest(f *testing.F) {
	dir := save(f, f.TempDir(), 10)
	raw, err := os.ReadFile(filepath.Join(dir, checkpoint.ManifestFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(unsealed(f, raw))
	f.Add([]byte("{\n  "))
	f.Fuzz(func(t *testing.T, b []byte) {
		inputs := [][]byte{b, reseal(b)}
		if i := bytes.LastIndex(b, []byte(`"manifest_crc32c"`)); i >= 0 {
			inputs = append(inputs, reseal(b[:i]))
		}
		for _, in := range inputs {
			m, err := checkpoint.ParseManifest(in)
			if err != nil {
				continue
			}
			again, err := checkpoint.MarshalManifest(m)
			if err != nil {
				t.Fatalf("accepted manifest does not marshal: %v\n%s", err, in)
			}
			m2, err := checkpoint.ParseManifest(again)
			if err != nil {
				t.Fatalf("re-marshaled manifest refused: %v\n%s", err, again)
			}
			third, err := checkpoint.MarshalManifest(m2)
			if err != nil || !bytes.Equal(third, again) {
				t.Fatalf("marshal is not a fixed point (%v):\n%s\n%s", err, again, third)
			}
		}
	})
}
